"""bioimageio.core for the tests: the check the bioimage.io website runs, and its predictions.

bioimageio.core 0.11.0 (the newest) pins bioimageio.spec==0.5.12.0, whose package serialisation
fails with the pydantic resolved here; with the bioimageio.spec 0.5.14.3 of our ``dev`` extra
beside it, it works. pip refuses that pair in one environment, so the extra cannot list it.
Instead, the first test that needs it installs it once with ``pip install --no-deps --target``
into pytest's cache folder (`.pytest_cache`, so a clean clone and CI need nothing but the
README's command and the package registry), and runs it in a subprocess with that folder on
PYTHONPATH: the test session itself never imports it. Where bioimageio.core is already
importable (``pip install --no-deps bioimageio.core==0.11.0`` by hand), that one is used.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

CORE = "bioimageio.core==0.11.0"
MARK = "RESULT:"

_TEST = f"""
import json, sys
from bioimageio.core import test_model
result = {{}}
for weights in sys.argv[2:]:
    summary = test_model(sys.argv[1], weight_format=weights)
    failed = [[d.name, [e.msg for e in d.errors]] for d in summary.details if d.errors]
    result[weights] = [summary.status, failed]
print("{MARK}" + json.dumps(result))
"""

_PREDICT = """
import sys
import numpy as np
from bioimageio.core import create_prediction_pipeline, load_description
from bioimageio.core.digest_spec import create_sample_for_model
model = load_description(sys.argv[1], format_version="latest")
pipeline = create_prediction_pipeline(model)
sample = create_sample_for_model(model, inputs=np.load(sys.argv[2]), sample_id="sample")
output = pipeline.predict_sample_without_blocking(
    sample, skip_input_padding=True, skip_output_cropping=True
)
[tensor] = output.members.values()
np.save(sys.argv[3], np.asarray(tensor.data, dtype=np.float32))
"""


def install_core(cache: Path) -> Path | None:
    """The folder holding bioimageio.core (installed now if needed), or None when the venv
    has it already."""
    if importlib.util.find_spec("bioimageio.core") is not None:
        return None
    target = cache / CORE.replace("==", "-")
    if (target / "bioimageio" / "core" / "__init__.py").is_file():
        return target
    stage = Path(tempfile.mkdtemp(prefix=".install-", dir=cache))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target"]
    done = subprocess.run([*command, str(stage), CORE], capture_output=True, text=True, timeout=600)
    if done.returncode:
        shutil.rmtree(stage, ignore_errors=True)
        pytest.fail(f"could not install {CORE} (needs the package registry):\n{done.stderr}")
    try:
        os.replace(stage, target)
    except OSError:  # another session installed it meanwhile
        shutil.rmtree(stage, ignore_errors=True)
    return target


class CoreRunner:
    """Runs bioimageio.core in a subprocess of this interpreter."""

    def __init__(self, folder: Path | None) -> None:
        self.env = dict(os.environ)
        if folder is not None:
            parts = [str(folder), self.env.get("PYTHONPATH", "")]
            self.env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)

    def _run(self, code: str, *args: str | Path) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code, *map(str, args)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def test_model(self, package: Path, *weight_formats: str) -> dict[str, tuple[str, list]]:
        """Per weight format: (status, [(check, [errors]) of the failed checks]) of
        bioimageio.core's ``test_model``, all in one subprocess."""
        out = self._run(_TEST, package, *weight_formats)
        line = next(li for li in out.splitlines() if li.startswith(MARK))
        return {k: (v[0], v[1]) for k, v in json.loads(line[len(MARK) :]).items()}

    def predict(self, package: Path, x: np.ndarray, folder: Path) -> np.ndarray:
        """bioimageio.core's prediction of the whole of ``x`` with the package's pre- and
        postprocessing. Without its border handling: ``predict`` would pad the input by the
        output halo (and crop it off again), a border strategy of its own, like unet-core's
        patch halo; what is compared here is the processing."""
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "core_input.npy", x)
        self._run(_PREDICT, package, folder / "core_input.npy", folder / "core_output.npy")
        return np.load(folder / "core_output.npy")
