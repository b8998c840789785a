"""`unet predict` (+ --preview, --overwrite, the predict3dunet alias) and `unet evaluate`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from cli_support import run_here
from predict_support import config, read, save_weights, tiny_unet, write_volume

UNET = [sys.executable, "-m", "unet_core.cli.main"]


def run(*args, cwd=None):
    return subprocess.run([*UNET, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def _setup(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.random((12, 20, 20)).astype(np.float32)
    label = np.zeros((12, 20, 20), np.uint16)
    label[2:8, 3:9, 3:9], label[4:10, 11:17, 10:18] = 1, 2
    path = write_volume(tmp_path / "vol.h5", raw, label=label)
    model, spec = tiny_unet(out_channels=1, final_sigmoid=True)
    ckpt = save_weights(model, tmp_path / "best.pytorch")
    cfg = config(
        spec,
        ckpt,
        [path],
        tmp_path / "out",
        postprocessor={"name": "ConnectedComponents", "threshold": 0.5},
    )
    cfg_path = tmp_path / "test_config.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    return cfg_path, label


def test_predict_preview_overwrite_and_alias(tmp_path):
    cfg_path, _ = _setup(tmp_path)
    out = run(
        "predict", "--config", str(cfg_path), "--preview", "--set", "predictor.output_dtype=float16"
    )
    assert out.returncode == 0, out.stderr
    result = tmp_path / "out" / "vol_predictions.h5"
    assert read(result).dtype == np.float16 and read(result, "segmentation").shape == (12, 20, 20)
    png = tmp_path / "out" / "vol_predictions_preview.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run("predict", "--config", str(cfg_path))
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    alias = subprocess.run(
        [
            sys.executable,
            "-c",
            "from unet_core.cli.aliases import predict3dunet; predict3dunet()",
            "--config",
            str(cfg_path),
            "--model_path",
            str(tmp_path / "best.pytorch"),
            "--overwrite",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert alias.returncode == 0, alias.stderr
    assert read(result).dtype == np.float32  # rewritten without the float16 override


def test_evaluate_writes_json_and_csv(tmp_path, capsys):
    cfg_path, label = _setup(tmp_path)
    assert run_here(capsys, "predict", "--config", str(cfg_path))[0] == 0
    pred = tmp_path / "out" / "vol_predictions.h5"
    # direct mode: the segmentation against itself and the label volume
    code, stdout, stderr = run_here(
        capsys,
        "evaluate",
        "--prediction",
        str(pred),
        "--dataset",
        "segmentation",
        "--ground-truth",
        str(tmp_path / "vol.h5"),
        "--gt-dataset",
        "label",
        "--metric",
        "{name: InstanceF1, iou_threshold: 0.5}",
        "--metric",
        "AdaptedRandError",
        "--json",
        str(tmp_path / "scores.json"),
    )
    assert code == 0, stderr
    assert "InstanceF1" in stdout and "AdaptedRandError" in stdout
    scores = json.loads((tmp_path / "scores.json").read_text())["scores"]
    assert [s["metric"] for s in scores] == ["InstanceF1", "AdaptedRandError"]
    assert scores[0]["higher_is_better"] is True and scores[1]["higher_is_better"] is False
    assert all(0 <= s["value"] <= 1 for s in scores)
    csv_lines = (tmp_path / "out" / "vol_predictions_evaluation.csv").read_text().splitlines()
    assert csv_lines[0].startswith("prediction,dataset,ground_truth,metric,value")
    assert len(csv_lines) == 3
    # config mode: the predictions through the val label pipeline, perfect when gt = prediction
    cfg = yaml.safe_load(cfg_path.read_text())
    seg = read(pred, "segmentation")
    write_volume(tmp_path / "vol.h5", read(tmp_path / "vol.h5", "raw"), label=seg)
    cfg["eval_metric"] = {"name": "InstanceF1"}
    cfg_path.write_text(yaml.safe_dump(cfg))
    code, _, stderr = run_here(
        capsys, "evaluate", "--config", str(cfg_path), "--dataset", "segmentation"
    )
    assert code == 0, stderr
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())["scores"]
    assert report[0]["metric"] == "InstanceF1" and report[0]["value"] == 1.0


def test_evaluate_usage_errors(tmp_path, capsys):
    code, _, err = run_here(capsys, "evaluate", "--prediction", str(tmp_path / "missing.h5"))
    assert code == 2 and "--config FILE" in err
    code, _, err = run_here(
        capsys,
        "evaluate",
        "--prediction",
        str(tmp_path / "missing.h5"),
        "--ground-truth",
        str(tmp_path / "x.h5"),
        "--metric",
        "MeanIoU",
    )
    assert code == 1 and "does not exist" in err and "Traceback" not in err
    # YAML typed on the command line: a syntax error is one paragraph naming the option
    for option, text in (
        ("--metric", "{name: MeanIoU"),
        ("--gt-transform", "[{name: BlobsToMask}"),
    ):
        code, _, err = run_here(
            capsys, "evaluate", "--prediction", "p.h5", "--ground-truth", "g.h5",
            "--metric", "MeanIoU", option, text,
        )  # fmt: skip
        assert code != 0 and f"{option} {text!r}, line 1: not valid YAML" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_export_metadata_errors_are_one_paragraph(tmp_path):
    from unet_core.errors import ExportError
    from unet_core.exchange.metadata import read_metadata

    broken = tmp_path / "meta.yml"
    broken.write_text("authors: [{name: a}\nlicense: MIT\n")
    with pytest.raises(ExportError, match=r"meta.yml', line 2: not valid YAML.*line 1"):
        read_metadata(broken, default_name="m", dims=3)
    listed = tmp_path / "list.yml"
    listed.write_text("- a\n- b\n")  # not a mapping: was an AttributeError
    with pytest.raises(ExportError, match="lacks authors, license"):
        read_metadata(listed, default_name="m", dims=3)
