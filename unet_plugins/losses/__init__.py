"""Built-in losses (entry-point group ``unet.losses``); the shared behaviour is in ``base``.

Each loss is an ``nn.Module`` called as ``loss(logits, target, weight=None)``. It declares the
target layout it expects (``target_layout``: "masks", "indices" or "dense") and whether the
dataset must load a per-voxel weight map (``needs_weight``).
"""
