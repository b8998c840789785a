"""``unet demo``: generate data, train, predict, segment, score and draw — in about a minute."""

#: Training iterations of ``unet demo``: about 45 s end to end on 2 CPU cores, where the
#: validation Dice has levelled off (0.94; 100 iterations gain nothing on the test volume).
DEFAULT_ITERATIONS = 60
