"""Write pytorch3dunet_forward.json: the reference's forward outputs at fixed weights and input.

Run once, in a separate virtual environment that has the reference and is never a dependency of
this project (the tests read only the JSON this writes)::

    python3 -m venv /work/refvenv
    /work/refvenv/bin/pip install torch==2.13.0
    /work/refvenv/bin/pip install --no-deps pytorch3dunet==1.9.6
    /work/refvenv/bin/pip install h5py scikit-image scipy pyyaml tqdm
    /work/refvenv/bin/python tests/compat/generate_forward_record.py

For each case the reference's model class is built with the case's keyword arguments, every
state-dict entry is overwritten by ``deterministic_weights.deterministic_state`` (a formula of the
key name and shape), the model is put in eval mode and run on ``deterministic_input``; the
probabilities and the logits (``return_logits=True``) are summarised by ``summarise``.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import torch
from deterministic_weights import deterministic_input, deterministic_state, summarise

HERE = Path(__file__).resolve().parent
OUT = HERE / "pytorch3dunet_forward.json"

#: (model name, constructor keyword arguments, input shape); two or more settings per model
CASES: list[tuple[str, dict[str, object], list[int]]] = [
    ("UNet3D", {"in_channels": 1, "out_channels": 1, "f_maps": 4, "num_groups": 2,
                "num_levels": 3}, [1, 1, 8, 16, 16]),
    ("UNet3D", {"in_channels": 2, "out_channels": 3, "final_sigmoid": False,
                "f_maps": [4, 8, 16], "layer_order": "bcr"}, [2, 2, 8, 12, 16]),
    ("UNet3D", {"in_channels": 1, "out_channels": 2, "f_maps": 4, "layer_order": "cr",
                "num_levels": 2, "is_segmentation": False, "upsample": "deconv"},
     [1, 1, 6, 10, 12]),
    ("ResidualUNet3D", {"in_channels": 1, "out_channels": 1, "f_maps": 4, "num_groups": 2,
                        "num_levels": 3}, [1, 1, 8, 16, 16]),
    ("ResidualUNet3D", {"in_channels": 1, "out_channels": 2, "final_sigmoid": False,
                        "f_maps": 8, "num_groups": 4, "num_levels": 3,
                        "layer_order": "gce"}, [1, 1, 8, 16, 16]),
    ("ResidualUNetSE3D", {"in_channels": 1, "out_channels": 1, "f_maps": 4, "num_groups": 2,
                          "num_levels": 3}, [1, 1, 8, 16, 16]),
    ("ResidualUNetSE3D", {"in_channels": 2, "out_channels": 1, "f_maps": [4, 8],
                          "layer_order": "bcr"}, [2, 2, 4, 8, 8]),
    ("UNet2D", {"in_channels": 1, "out_channels": 1, "f_maps": 4, "num_groups": 2,
                "num_levels": 3}, [1, 1, 32, 32]),
    ("UNet2D", {"in_channels": 3, "out_channels": 2, "final_sigmoid": False,
                "f_maps": [4, 8, 16], "layer_order": "bcr"}, [2, 3, 24, 20]),
    ("ResidualUNet2D", {"in_channels": 1, "out_channels": 1, "f_maps": 4, "num_groups": 2,
                        "num_levels": 3, "layer_order": "cge"}, [1, 1, 32, 32]),
    ("ResidualUNet2D", {"in_channels": 1, "out_channels": 3, "final_sigmoid": False,
                        "f_maps": 8, "num_groups": 4, "num_levels": 3}, [1, 1, 24, 24]),
]  # fmt: skip


def main() -> None:
    from pytorch3dunet.unet3d import model as reference_models

    torch.set_num_threads(1)
    records = []
    for name, kwargs, shape in CASES:
        model = getattr(reference_models, name)(**kwargs)
        model.load_state_dict(deterministic_state(model.state_dict()))
        model.eval()
        with torch.no_grad():
            probs, logits = model(deterministic_input(tuple(shape)), return_logits=True)
        records.append(
            {
                "model": name,
                "kwargs": kwargs,
                "input_shape": shape,
                "output": summarise(probs),
                "logits": summarise(logits),
            }
        )
    header = {
        "produced_by": "tests/compat/generate_forward_record.py",
        "reference": f"pytorch3dunet {metadata.version('pytorch3dunet')}",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    OUT.write_text(json.dumps({"about": header, "cases": records}, indent=1) + "\n")
    print(f"wrote {len(records)} cases to {OUT}")


if __name__ == "__main__":
    main()
