"""Models out of and into unet-core: TorchScript, ONNX and bioimage.io model packages.

Each format lives in its own module and is imported on use (torch, onnx and bioimageio.spec
are heavy and optional); ``unet export`` and the ``model_path`` seam in the prediction engine
are the two ways in.
"""
