"""Built-in inference backends (``unet.backends``): torch, onnxruntime, openvino."""
