"""Built-in models: the reference's U-Net family (entry points in ``unet.models``).

``unet.py`` holds the shared encoder/decoder, ``blocks.py`` its building blocks, ``config.py``
the validated parameters and ``plan.py`` the torch-free architecture arithmetic; each
registered model is a small module of its own.
"""
