"""Built-in volume formats (``unet.formats``): HDF5 and TIFF."""
