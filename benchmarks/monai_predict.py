"""MONAI's sliding-window inference as a whole process, for the MONAI column of predict.py.

Run by the python of a side environment that has torch, monai and h5py (never unet-core's):

    /work/monaivenv/bin/python benchmarks/monai_predict.py MODEL.pt IN.h5 OUT.h5 \
        [--bf16] [--threads 2]

MODEL.pt is the same network traced to TorchScript by predict.py (so this process needs no
unet-core). Reads ``raw``, standardises it over the volume, runs ``sliding_window_inference``
(roi 64^3, overlap 0.25, gaussian, batch 2; the traced network applies its own final
activation) and writes float32 ``predictions`` with gzip, as our prediction does. Prints the
process's seconds and those of the windows alone.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    start = time.perf_counter()
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--roi", type=int, default=64)
    args = parser.parse_args()

    import h5py
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference

    torch.set_num_threads(args.threads)
    model = torch.jit.load(args.model).eval()
    with h5py.File(args.input, "r") as f:
        raw = f["raw"][...].astype(np.float32)
    raw = (raw - raw.mean()) / max(float(raw.std()), 1e-10)
    x = torch.from_numpy(raw)[None, None]
    roi = (args.roi,) * 3
    windows = time.perf_counter()
    with torch.inference_mode():
        if args.bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = sliding_window_inference(x, roi, 2, model, overlap=0.25, mode="gaussian")
        else:
            y = sliding_window_inference(x, roi, 2, model, overlap=0.25, mode="gaussian")
    windows = time.perf_counter() - windows
    probs = y.float()[0].numpy()  # the traced model applies its final activation in eval
    with h5py.File(args.output, "w") as f:
        f.create_dataset("predictions", data=probs, compression="gzip", compression_opts=4)
    print(f"{time.perf_counter() - start:.3f} {windows:.3f}")


if __name__ == "__main__":
    main()
