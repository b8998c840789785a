"""``unet demo``: generate data, train, predict, segment, score and draw — in about a minute."""
