"""What the benchmark scripts share: where the data is and the standard network of WORKLOADS.md.

The scripts run as ``python benchmarks/<name>.py``, so this module is imported by its bare name.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"
#: The standard workloads' network (reference defaults: 4 levels from 32 feature maps, gcr).
STANDARD_UNET = {
    "name": "UNet3D",
    "in_channels": 1,
    "out_channels": 1,
    "f_maps": 32,
    "layer_order": "gcr",
    "num_groups": 8,
    "num_levels": 4,
}
