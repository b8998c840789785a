"""Config loading: reference keys and defaults, every mistake at once, line numbers, overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from unet_core.config import config_from_dict, load_config
from unet_core.config.export import experiment_json_schema
from unet_core.config.overrides import parse_override
from unet_core.config.yaml_source import YamlSource
from unet_core.errors import ConfigError

CONFIGS = Path(__file__).parent / "configs"
MINIMAL = CONFIGS / "train_minimal.yml"


def write(tmp_path: Path, text: str, name: str = "c.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def minimal_dict() -> dict:
    return yaml.safe_load(MINIMAL.read_text())


def test_reference_style_config_validates_with_reference_defaults():
    cfg = load_config(MINIMAL)
    assert cfg.optimizer.name == "Adam"  # optimizer without name is Adam, as in the reference
    assert cfg.predictor.name == "StandardPredictor"
    assert cfg.trainer.validate_after_iters == 50 and cfg.trainer.num_iterations == 1
    assert cfg.loaders.dataset_params() == {
        "raw_internal_path": "raw",
        "label_internal_path": "label",
    }


def test_typo_in_component_parameter_names_path_line_and_suggestion(tmp_path):
    text = MINIMAL.read_text().replace("  alpha: 1.0", "  alpah: 1.0")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    msg = str(info.value)
    line = text.splitlines().index("  alpah: 1.0") + 1
    assert f"loss.alpah (line {line})" in msg
    assert "unknown key `alpah` for loss BCEDiceLoss (did you mean `alpha`" in msg


def test_optimizer_typo_is_caught_by_its_schema(tmp_path):
    text = MINIMAL.read_text().replace("learning_rate: 0.0002", "learning_rat: 0.1")
    line = text.splitlines().index("  learning_rat: 0.1") + 1
    with pytest.raises(
        ConfigError, match=rf"optimizer.learning_rat \(line {line}\).*`learning_rate`"
    ):
        load_config(write(tmp_path, text))


def test_all_mistakes_are_reported_at_once(tmp_path):
    data = minimal_dict()
    data["loss"]["alpah"] = 1
    data["model"]["f_mapz"] = 3
    data["trainer"]["max_num_iteration"] = 5
    data["loaders"]["train"]["transformer"]["raw"][1]["axis_prob"] = "often"
    data["eval_metric"]["name"] = "DiceCoeficient"
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    msg = str(info.value)
    assert "5 problems found" in msg
    for fragment in (
        "loss.alpah",
        "model.f_mapz",
        "trainer.max_num_iteration",
        "loaders.train.transformer.raw[1].axis_prob",
        "eval_metric.name",
        "did you mean `DiceCoefficient`",
    ):
        assert fragment in msg


def test_unknown_top_level_key_gets_suggestion():
    data = minimal_dict()
    data["optimiser"] = data.pop("optimizer")
    with pytest.raises(ConfigError, match=r"unknown key `optimiser`.*did you mean `optimizer`"):
        config_from_dict(data)


def test_overrides_are_typed_by_the_schema():
    cfg = load_config(
        MINIMAL,
        [
            "trainer.max_num_iterations=10",
            "optimizer.learning_rate=1e-3",
            "loaders.train.slice_builder.patch_shape=[16,64,64]",
        ],
    )
    assert cfg.trainer.max_num_iterations == 10
    assert cfg.optimizer.config.learning_rate == 1e-3
    assert cfg.loaders.train.patch_shape == (16, 64, 64)
    with pytest.raises(
        ConfigError,
        match=r"trainer.max_num_iterations \(from the command line: --set or an option\)",
    ):
        load_config(MINIMAL, ["trainer.max_num_iterations=many"])


def test_override_syntax_errors():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("model_path=/x/y.pytorch") == (["model_path"], "/x/y.pytorch")
    assert parse_override("optimizer.learning_rate=1e-3") == (["optimizer", "learning_rate"], 1e-3)
    # a quoted number is a string (an OME-Zarr level's name, say), as in YAML
    assert parse_override('loaders.raw_internal_path="1"') == (
        ["loaders", "raw_internal_path"],
        "1",
    )
    assert parse_override("a='2e-3'") == (["a"], "2e-3")
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("trainer.max_num_iterations")


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "model:\n  name: UNet3D\n  f_maps: [1, 2\ntrainer: {}\n")
    with pytest.raises(ConfigError, match=r"c.yml, line \d+: not valid YAML"):
        load_config(path)


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path):
    text = "model:\n  name: UNet3D\noptimizer:\n  learning_rate: 0.1\n  learning_rate: 0.5\n"
    with pytest.raises(ConfigError, match=r"c.yml, line 5: the key 'optimizer.learning_rate' "
                       r"appears twice \(lines 4 and 5\)"):  # fmt: skip
        load_config(write(tmp_path, text))
    sections = "trainer:\n  checkpoint_dir: a\nmodel: {name: UNet3D}\ntrainer:\n  x: 1\n"
    with pytest.raises(ConfigError, match=r"'trainer' appears twice \(lines 1 and 4\)"):
        load_config(write(tmp_path, sections))
    # the same key in different sections, and YAML merge keys, are fine
    anchors = "base: &b {a: 1}\none: {<<: *b, c: 2}\ntwo: {<<: *b, c: 3}\n"
    assert YamlSource.from_text(anchors).data["two"] == {"a": 1, "c": 3}


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_device_values():
    for ok in ("cpu", "cuda", "cuda:1", "mps"):
        assert config_from_dict({**minimal_dict(), "device": ok}).device == ok
    with pytest.raises(ConfigError, match="device must be cpu, cuda, cuda:N or mps"):
        config_from_dict({**minimal_dict(), "device": "gpu"})


def test_json_schema_contains_component_schemas(tmp_path):
    schema = experiment_json_schema()
    models = schema["$defs"]["component_models"]["anyOf"]
    unet = next(m for m in models if m["title"] == "UNet3D")
    assert "f_maps" in unet["properties"] and unet["properties"]["name"] == {"const": "UNet3D"}
    optim = {o["title"] for o in schema["$defs"]["component_optimizers"]["anyOf"]}
    assert {"Adam", "SGD", "AdamW"} <= optim
    assert json.loads(json.dumps(schema)) == schema


def test_phase_section_builds_what_the_yaml_would_say(tmp_path):
    from unet_core.config import phase_section

    train = phase_section(
        [tmp_path / "a.h5"],
        (16, 64, 64),
        (8, 32, 32),
        label=[{"name": "BlobsToMask"}, {"name": "ToTensor", "expand_dims": True}],
        threshold=0.1,
        slice_builder="FilterSliceBuilder",
    )
    assert train == {
        "file_paths": [str(tmp_path / "a.h5")],
        "slice_builder": {
            "name": "FilterSliceBuilder",
            "patch_shape": [16, 64, 64],
            "stride_shape": [8, 32, 32],
            "threshold": 0.1,
        },
        "transformer": {
            "raw": [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}],
            "label": [{"name": "BlobsToMask"}, {"name": "ToTensor", "expand_dims": True}],
        },
    }
    test = phase_section([tmp_path / "b.h5"], [16, 64, 64], halo_shape=[4, 8, 8])
    assert test["slice_builder"]["stride_shape"] == [16, 64, 64]  # tiles without overlap
    assert "label" not in test["transformer"]
    cfg = config_from_dict(
        {
            "model": {"name": "UNet3D", "in_channels": 1, "out_channels": 1},
            "loaders": {"train": train, "val": train, "test": test},
        }
    )
    assert cfg.loaders.test.slice_builder.config.halo_shape == (4, 8, 8)


def test_a_section_level_check_reads_as_its_components_sentence():
    """A model validator's message names the component first and does not dump the section."""
    from unet_core.config.validate import check_component

    spec = {"name": "LabelToDistance", "foreground": False, "boundary": False, "distance": False}
    (problem,), _ = check_component(("loaders", "train"), "transforms", spec)
    assert problem.message == (
        "transform LabelToDistance: enable at least one of foreground, boundary, distance"
    )
