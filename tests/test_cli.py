"""The `unet` CLI as a user runs it: subprocesses, exit codes, no traceback, no torch at start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unet_core.cli.aliases import translate

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "tests" / "configs" / "train_minimal.yml"
UNET = [sys.executable, "-m", "unet_core.cli.main"]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*UNET, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


PROBE = """
import sys
sys.argv = ["unet", *{args!r}]
from unet_core.cli.main import cli
try:
    cli.main(standalone_mode=False)
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith("unet_plugins."))
print("HEAVY:", heavy)
"""


@pytest.mark.parametrize(
    "args", [("--help",), ("plugins", "list"), ("plugins", "list", "-k", "models")]
)
def test_help_and_plugin_list_import_neither_torch_nor_plugins(args):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=list(args))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("HEAVY: []"), out.stdout[-500:]


def test_version():
    out = run("--version")
    assert out.returncode == 0 and "0.1.0" in out.stdout


def test_plugins_list_shows_builtins_with_status():
    out = run("plugins", "list", "--kind", "optimizers", "--long")
    assert out.returncode == 0, out.stderr
    for name in ("Adam", "AdamW", "SGD", "RMSprop"):
        assert name in out.stdout
    assert out.stdout.splitlines()[0].split() == [
        "NAME",
        "KIND",
        "DISTRIBUTION",
        "VERSION",
        "STATUS",
    ]
    assert re.search(r"^Adam\s+optimizers\s+unet-core\s+\S+\s+ok$", out.stdout, re.M)
    assert "0 broken" in out.stdout
    sched = run("plugins", "list", "*LR*", "--check")
    assert "ReduceLROnPlateau" in sched.stdout and "MultiStepLR" in sched.stdout
    assert "0 broken" in sched.stdout


def test_plugins_list_shows_a_one_line_description():
    """The default listing: name, kind and the first sentence of the component's docstring,
    read from its source file (the listing imports neither torch nor plugins, see above)."""
    out = run("plugins", "list", "-k", "losses")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "DESCRIPTION"]
    assert "unet-core" not in out.stdout and "0.1.0" not in out.stdout  # --long only
    rows = {line.split()[0]: line for line in lines[1:-1]}
    from unet_plugins.losses.bce import BCEWithLogitsLoss

    first = BCEWithLogitsLoss.__doc__.strip().splitlines()[0]
    assert re.fullmatch(
        rf"BCEWithLogitsLoss\s+losses\s+{re.escape(first)}", rows["BCEWithLogitsLoss"]
    )
    # an entry point naming a light Deferred stand-in still shows the class's own docstring
    assert "3D U-Net: DoubleConv blocks" in run("plugins", "list", "UNet3D").stdout
    assert all(len(line.split(None, 2)) == 3 for line in lines[1:-1]), out.stdout  # none empty


def test_description_reader_handles_signatures_and_sentences(tmp_path, monkeypatch):
    from unet_core.descriptions import describe, first_sentence

    (tmp_path / "descr_probe.py").write_text(
        'X = 1\n\nclass Thing(\n    object,\n):\n    """Does a thing (see Lin et al. 2017). '
        'More.\n\n    Details."""\n\n\ndef helper():\n    pass\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert describe("descr_probe:Thing") == "Does a thing (see Lin et al. 2017)."
    assert describe("descr_probe:helper") == "" and describe("descr_probe:Missing") == ""
    assert describe("no_such_module_xyz:Thing") == ""
    assert first_sentence("Uses ``x``, e.g. a b. Then") == "Uses `x`, e.g. a b."
    assert len(first_sentence("word " * 40)) == 90


def test_plugins_show_lists_parameters():
    out = run("plugins", "show", "Adam")
    assert out.returncode == 0, out.stderr
    assert "learning_rate" in out.stdout and "0.001" in out.stdout and "betas" in out.stdout
    bad = run("plugins", "show", "Adma")
    assert bad.returncode == 2 and "did you mean" in bad.stderr and "`Adam`" in bad.stderr


def test_config_validate_ok_and_typo(tmp_path):
    ok = run("config", "validate", str(MINIMAL))
    assert ok.returncode == 0, ok.stderr
    bad_cfg = tmp_path / "bad.yml"
    bad_cfg.write_text(MINIMAL.read_text().replace("learning_rate: 0.0002", "learning_rat: 0.1"))
    bad = run("config", "validate", str(bad_cfg))
    assert bad.returncode == 2
    line = bad_cfg.read_text().splitlines().index("  learning_rat: 0.1") + 1
    assert f"optimizer.learning_rat (line {line})" in bad.stderr and "`learning_rate`" in bad.stderr
    assert "Traceback" not in bad.stderr
    debug = run("--debug", "config", "validate", str(bad_cfg))
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_config_validate_with_set_override():
    out = run("config", "validate", str(MINIMAL), "--set", "trainer.max_num_iterations=oops")
    assert out.returncode == 2 and "(from the command line: --set or an option)" in out.stderr


def test_config_schema_written_to_file(tmp_path):
    target = tmp_path / "schema.json"
    out = run("config", "schema", "-o", str(target))
    assert out.returncode == 0, out.stderr
    assert '"UNet3D"' in target.read_text()


def test_reference_aliases_translate_flags():
    argv = [
        "--config",
        "c.yml",
        "--model_path",
        "/m/best.pytorch",
        "--loaders.test.file_paths",
        "a.h5",
        "b.h5",
        "--loaders.test.slice_builder.patch_shape",
        "32",
        "64",
        "64",
        "--loaders.output_dir",
        "/out",
    ]
    assert translate(argv) == [
        "--config",
        "c.yml",
        "--set",
        "model_path=/m/best.pytorch",
        "--set",
        "loaders.test.file_paths=[a.h5, b.h5]",
        "--set",
        "loaders.test.slice_builder.patch_shape=[32, 64, 64]",
        "--set",
        "loaders.output_dir=/out",
    ]


def test_documented_shell_completion_works(tmp_path):
    """docs/getting-started.md's completion command yields a bash script that completes."""
    guide = (ROOT / "docs" / "getting-started.md").read_text()
    assert "_UNET_COMPLETE=bash_source unet" in guide
    env = {**os.environ, "_UNET_COMPLETE": "bash_source"}
    script = subprocess.run([*UNET], capture_output=True, text=True, env=env, timeout=60)
    assert script.returncode == 0 and "_unet_completion()" in script.stdout, script.stderr
    env.update(_UNET_COMPLETE="bash_complete", COMP_WORDS="unet plugins list --l", COMP_CWORD="3")
    words = subprocess.run([*UNET], capture_output=True, text=True, env=env, timeout=60)
    assert words.stdout.split() == ["plain,--long"], words.stdout


@pytest.mark.parametrize(
    ("alias", "subcommand", "flags"),
    [
        ("predict3dunet", "predict", ["--model_path", "--loaders.test.file_paths", "--config"]),
        ("train3dunet", "train", ["--config"]),
    ],
)
def test_alias_help_shows_its_own_name_and_the_reference_flags(alias, subcommand, flags):
    script = Path(sys.executable).with_name(alias)
    command = [str(script)] if script.is_file() else [
        sys.executable, "-c", f"from unet_core.cli.aliases import {alias}; {alias}()"
    ]  # fmt: skip
    out = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Usage: {alias} [OPTIONS]"), out.stdout[:200]
    assert "unet predict [" not in out.stdout and "Usage: unet" not in out.stdout
    section = out.stdout.split("Reference flags (pytorch-3dunet's")[1]
    for flag in flags:
        assert re.search(rf"^\s+{re.escape(flag)} ", section, re.M), section
    assert f"`unet {subcommand}`" in section


def test_config_validate_takes_dash_c_like_every_command(tmp_path):
    """`-c/--config FILE` as in train/predict; the positional form keeps working."""
    for args in (["-c", str(MINIMAL)], ["--config", str(MINIMAL)], [str(MINIMAL)]):
        ok = run("config", "validate", *args)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == f"{MINIMAL}: valid (model, loss, eval_metric, optimizer, " \
            "lr_scheduler, trainer, loaders (train, val); files checked)."  # fmt: skip
    typo = tmp_path / "typo.yml"
    typo.write_text(MINIMAL.read_text().replace("f_maps:", "f_map:"))
    bad = run("config", "validate", "-c", str(typo))
    assert bad.returncode == 2 and "f_map" in bad.stderr and "typo.yml" in bad.stderr
    none = run("config", "validate")
    assert none.returncode == 2 and "unet config validate -c FILE" in none.stderr
    both = run("config", "validate", str(MINIMAL), "-c", str(typo))
    assert both.returncode == 2 and "give one" in both.stderr and "Traceback" not in both.stderr
