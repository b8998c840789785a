"""No command writes into its inputs or over a file it did not create (issue 13, class 3).

Every command that reads user files runs with its outputs placed next to its inputs, the
inputs made read-only (chmod, which root ignores, so the proof is the content hash, mtime,
inode and ctime of every file that existed before) and unrelated files with the default
output names lying in wait.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import yaml
from cli_support import run_here
from predict_support import config, save_weights, tiny_unet, write_volume

Snapshot = dict[str, tuple[str, int, int, int]]


def snapshot(root: Path) -> Snapshot:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(root))] = (digest, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    return out


def assert_only_new(root: Path, before: Snapshot, allowed_new: set[str]) -> None:
    after = snapshot(root)
    changed = [name for name, state in before.items() if after.get(name) != state]
    assert changed == [], f"touched: {changed}"
    assert set(after) - set(before) <= allowed_new, set(after) - set(before) - allowed_new


def _workspace(tmp_path: Path, shape=(12, 20, 20)) -> tuple[Path, Path]:
    """tmp/data/vol.h5 (raw + label) with a user's unrelated files beside it; a config whose
    outputs go next to the inputs."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    label = np.zeros(shape, np.uint16)
    label[2:8, 3:9, 3:9] = 1
    write_volume(data / "vol.h5", rng.random(shape).astype(np.float32), label=label)
    (data / "notes.txt").write_text("my notes\n")
    (data / "vol_predictions_evaluation.csv").write_text("sample,volume\nA,3\n")  # unrelated
    (data / "evaluation.json").write_text('{"owner": "me"}\n')  # unrelated
    model, spec = tiny_unet(out_channels=1, final_sigmoid=True)
    ckpt = save_weights(model, tmp_path / "best.pytorch")
    cfg = config(spec, ckpt, [data], None, eval_metric={"name": "MeanIoU"})
    del cfg["loaders"]["output_dir"]
    cfg_path = tmp_path / "predict.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    for path in (*data.iterdir(), ckpt, cfg_path):
        path.chmod(0o444)
    return data, cfg_path


def test_every_command_leaves_inputs_and_unrelated_files_alone(tmp_path, capsys):
    data, cfg = _workspace(tmp_path)
    before = snapshot(tmp_path)

    assert run_here(capsys, "data", "check", "--config", str(cfg))[0] in (0, 1)
    assert run_here(capsys, "config", "validate", str(cfg))[0] == 0
    assert run_here(capsys, "models", "summary", "--config", str(cfg))[0] == 0
    assert_only_new(tmp_path, before, set())

    code, _, err = run_here(capsys, "predict", "--config", str(cfg), "--preview")
    assert code == 0, err
    new = {"data/vol_predictions.h5", "data/vol_predictions_preview.png"}
    assert_only_new(tmp_path, before, new)
    before = snapshot(tmp_path)

    pred, gt = data / "vol_predictions.h5", data / "vol.h5"
    direct = ["evaluate", "--prediction", str(pred), "--ground-truth", str(gt)]
    direct += ["--dataset", "predictions", "--metric", "MeanIoU"]
    # the default CSV name belongs to an unrelated file: refused, nothing written
    code, _, err = run_here(capsys, *direct)
    assert code == 1 and "vol_predictions_evaluation.csv" in err and "--csv" in err
    # a report named after one of the scored files: refused
    code, _, err = run_here(capsys, *direct, "--csv", str(gt), "--json", str(data / "s.json"))
    assert code == 2 and "one of the files being scored" in err
    # the config's default evaluation.json is someone else's file: refused
    code, _, err = run_here(capsys, "evaluate", "--config", str(cfg))
    assert code == 1 and "evaluation.json" in err
    assert_only_new(tmp_path, before, set())
    # named outputs are written, and only they
    code, _, err = run_here(
        capsys, *direct, "--csv", str(data / "s.csv"), "--json", str(data / "s.json")
    )
    assert code == 0, err
    assert json.loads((data / "s.json").read_text())["scores"][0]["metric"] == "MeanIoU"
    assert_only_new(tmp_path, before, {"data/s.csv", "data/s.json"})
    # an earlier report of ours is replaced by a rerun (it is recognised by its content)
    code, _, err = run_here(
        capsys, *direct, "--csv", str(data / "s.csv"), "--json", str(data / "s.json")
    )
    assert code == 0, err

    before = snapshot(tmp_path)
    schema = tmp_path / "schema.json"
    assert run_here(capsys, "config", "schema", "-o", str(schema))[0] == 0
    assert_only_new(tmp_path, before, {"schema.json"})


def test_demo_refuses_data_inside_its_output_folder(tmp_path, capsys):
    data, _ = _workspace(tmp_path, shape=(80, 64, 64))  # big enough for the demo to run
    volume = data / "vol.h5"
    os.link(volume, data / "train.h5")  # the user's file under the very name the demo writes
    before = snapshot(tmp_path)
    for given in (data / "train.h5", volume):
        code, _, err = run_here(
            capsys, "demo", "--data", str(given), "-o", str(tmp_path), "--iterations", "1"
        )
        assert code == 2 and str(given) in err and "-o" in err, err
        assert_only_new(tmp_path, before, set())


def test_train_export_and_convert_leave_inputs_alone(tmp_path, capsys):
    """Training with its run folder beside the inputs, then export and convert from them."""
    import shutil

    from test_train_support import DATA, reference_config, tiny

    data = tmp_path / "data"
    data.mkdir()
    for name in ("nuclei3d_train_a.h5", "nuclei3d_train_b.h5"):
        shutil.copy(DATA / name, data / name)
    (data / "notes.txt").write_text("my notes\n")
    cfg = tiny(reference_config(data / "run"), iterations=2, every=2)
    cfg["loaders"]["train"]["file_paths"] = [str(data / "nuclei3d_train_a.h5")]
    cfg["loaders"]["val"]["file_paths"] = [str(data / "nuclei3d_train_b.h5")]
    cfg["loaders"]["num_workers"] = 0
    cfg_path = data / "train.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    for path in data.iterdir():
        path.chmod(0o444)
    before = snapshot(tmp_path)

    code, _, err = run_here(capsys, "train", "-c", str(cfg_path))
    assert code == 0, err
    after = snapshot(tmp_path)
    new = set(after) - set(before)
    assert new and all(name.startswith("data/run/") for name in new), new
    assert_only_new(tmp_path, before, new)
    before = after

    checkpoint = data / "run" / "last_checkpoint.pytorch"
    exported = data / "model.pt"
    code, _, err = run_here(
        capsys, "export", str(checkpoint), "--format", "torchscript", "-o", str(exported)
    )
    assert code == 0, err
    assert_only_new(tmp_path, before, {"data/model.pt"})
    before = snapshot(tmp_path)

    target = data / "nuclei3d_train_a.ome.zarr"
    code, _, err = run_here(
        capsys, "data", "convert", str(data / "nuclei3d_train_a.h5"), str(target)
    )
    assert code == 0, err
    new = set(snapshot(tmp_path)) - set(before)
    assert new and all(n.startswith("data/nuclei3d_train_a.ome.zarr/") for n in new), new
    assert_only_new(tmp_path, before, new)
    # converting again never writes over the first conversion (no --overwrite)
    before = snapshot(tmp_path)
    code, _, err = run_here(
        capsys, "data", "convert", str(data / "nuclei3d_train_a.h5"), str(target)
    )
    assert code != 0 and str(target) in err
    # the advice is convert's own, not prediction's (loaders.output_dir means nothing here)
    assert "Choose another output name, or pass --overwrite" in err
    assert "output_dir" not in err and "predictions" not in err
    assert_only_new(tmp_path, before, set())
