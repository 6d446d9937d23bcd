import copy
import json
from pathlib import Path

import pytest
import yaml
from forward_models import config
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def default():
    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return config.resolve_presets(raw, ROOT / "config" / "models")


def test_schema_file_is_generated_from_the_typed_config():
    on_disk = json.loads((ROOT / "workflow" / "schemas" / "config.schema.json").read_text())
    assert on_disk == config.json_schema(), (
        "regenerate: forward-models schema > workflow/schemas/config.schema.json"
    )


def test_default_and_test_configs_validate(default):
    cfg = config.load(default)
    assert "pong" in cfg.envs and "rnn_deconv" in cfg.models
    overlay = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    from forward_models.config import deep_merge

    merged = copy.deepcopy(default)
    deep_merge(merged, overlay)
    tiny = config.load(merged, ROOT / "config" / "models")
    assert tiny.models["rnn_deconv"].train.steps < cfg.models["rnn_deconv"].train.steps


def test_every_field_is_documented():
    def walk(schema, path="$"):
        for name, prop in schema.get("properties", {}).items():
            if "$ref" not in prop and name != "arch":
                assert prop.get("description"), f"{path}.{name} has no docstring"
        for name, sub in schema.get("$defs", {}).items():
            walk(sub, name)

    walk(config.json_schema())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda d: d["models"]["rnn_deconv"].update(hiden=3),
            r"models\.rnn_deconv\..*hiden\s+Extra inputs",
        ),
        (lambda d: d.update(sedes=[1]), r"sedes\s+Extra inputs"),
        (
            lambda d: d["envs"]["pong"].update(id="forward_models/TwoPlayerPong-v9"),
            r"unknown Gymnasium env id 'forward_models/TwoPlayerPong-v9'; did you mean",
        ),
        (
            lambda d: d["models"]["rnn_deconv"].update(arch="rnn_deconf"),
            r"'rnn_deconf'.*expected tags",
        ),
        (lambda d: d["envs"]["pong"]["splits"]["test"].update(seed=0), r"share seed 0"),
        (lambda d: d["envs"]["pong"].update(size=0), r"envs\.pong\.size"),
    ],
)
def test_bad_config_names_the_key(default, mutate, message):
    bad = copy.deepcopy(default)
    mutate(bad)
    with pytest.raises(ValidationError, match=message):
        config.load(bad)


def test_config_reference_is_generated_from_the_typed_config():
    from forward_models.cli import config_docs

    assert (ROOT / "config" / "README.md").read_text() == config_docs(), (
        "regenerate: forward-models docs > config/README.md"
    )


def test_default_config_covers_every_preset(default):
    archs = {m.arch for m in config.load(default).models.values()}
    presets = (ROOT / "config" / "models").glob("*.yaml")
    assert archs == {yaml.safe_load(p.read_text())["arch"] for p in presets}


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"models.m.preset: no preset 'rnn_deconf'.*known: \['asset_stn'"
    ):
        config.resolve_presets(
            {"models": {"m": {"preset": "rnn_deconf"}}}, ROOT / "config" / "models"
        )


def test_sweep_expands_a_grid_into_named_models():
    raw = {
        "models": {"base": {"preset": "copy_last"}},
        "sweeps": {
            "rnn": {
                "model": {"preset": "rnn_deconv", "dilated_layers": 1},
                "grid": {"hidden": [16, 64], "skip": [1, 8], "train.lr": [0.002]},
            }
        },
    }
    models = config.resolve_presets(raw, ROOT / "config" / "models")["models"]
    assert sorted(models) == [
        "base",
        "rnn-hidden16-skip1-lr0p002",
        "rnn-hidden16-skip8-lr0p002",
        "rnn-hidden64-skip1-lr0p002",
        "rnn-hidden64-skip8-lr0p002",
    ]
    m = models["rnn-hidden64-skip8-lr0p002"]
    assert (m["hidden"], m["skip"], m["dilated_layers"], m["train"]["lr"]) == (64, 8, 1, 0.002)
    assert m["train"]["seq_len"] == 67  # the rest of the preset is kept
    assert "rnn" not in raw["models"] and "rnn-hidden16-skip1-lr0p002" not in raw["models"]


def test_thesis_sweep_config_is_sixteen_runs():
    cfg = config.load_yaml(ROOT / "config" / "sweep.yaml")
    assert len(cfg.envs) * len(cfg.models) * len(cfg.seeds) == 16
    archs = {m.arch for m in cfg.models.values()}
    assert archs == {"rnn_deconv", "rnn_dense", "rnn_spatial_transformer", "asset_stn"}
    assert {m.skip for m in cfg.models.values()} == {1, 8}


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"model": {"arch": "rnn_deconv"}, "grid": {"hiden": [8]}}, "hiden"),
        ({"model": {"arch": "rnn_deconv"}, "grid": {"hidden": []}}, "grid.hidden"),
        ({"model": {"arch": "rnn_deconv"}, "grid": {"arch": ["base"]}}, "already defined"),
    ],
)
def test_bad_sweeps_are_named(default, sweep, message):
    raw = {
        **copy.deepcopy(default),
        "models": {"base": {"arch": "copy_last"}},
        "sweeps": {"s": sweep},
    }
    if message == "already defined":
        raw["models"] = {"s-base": {"arch": "copy_last"}}
    with pytest.raises((ValueError, ValidationError), match=message):
        config.load(raw, ROOT / "config" / "models")


OVERLAYS = {"test.yaml"}  # read over the default config; every other file stands alone
SHIPPED = sorted(p.name for p in (ROOT / "config").glob("*.yaml") if p.name not in OVERLAYS)


@pytest.mark.parametrize(
    "files",
    [[name] for name in SHIPPED] + [["config.yaml", overlay] for overlay in sorted(OVERLAYS)],
    ids=lambda f: "+".join(f),
)
def test_every_shipped_config_validates(files):
    """Each config the README tells people to run is valid as it is used (overlays on the
    default, the others with --replace-workflow-config)."""
    cfg = config.load_yaml(*(ROOT / "config" / f for f in files))
    assert cfg.models and cfg.envs


@pytest.mark.parametrize(
    ("acting", "message"),
    [
        ({"models": ["conv_gru_residul"]}, "'conv_gru_residul' is not a model"),
        ({"models": ["floor"]}, "'floor' is a floor"),
        ({"models": ["copy_last"], "envs": ["png"]}, "'png' is not an env"),
        ({"models": ["copy_last"], "references": ["random"]}, r"lacks \['real'\]"),
        ({"models": ["copy_last"], "references": ["randm"]}, "randm"),
        ({"ppo": {"n_stack": 0}}, "n_stack"),
    ],
)
def test_bad_agent_settings_are_named(acting, message):
    raw = {**config.read_yaml(ROOT / "config" / "config.yaml"), "acting": acting}
    with pytest.raises((ValueError, ValidationError), match=message):
        config.load(raw, ROOT / "config" / "models")
