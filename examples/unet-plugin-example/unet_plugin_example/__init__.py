"""An example unet-core plugin package.

Nothing here is imported by unet-core directly: each component is found through the entry points
in ``pyproject.toml`` and its module is imported only when a config names it.
"""

__version__ = "0.2.0"
