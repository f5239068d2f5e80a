"""Configuration: merge semantics, schema validation with messages that name the key."""

from pathlib import Path

import pytest
import yaml

from gae.cli import main
from gae.config import load_config, merge, parse_run_name, run_spec
from gae.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_is_valid_and_every_preset_overlays_cleanly():
    base = load_config(base=ROOT / "params.yaml")
    assert base.runs, "params.yaml must list runs"
    for preset in sorted((ROOT / "config").glob("*.yaml")):
        cfg = load_config([preset], base=ROOT / "params.yaml")
        assert cfg.overlays == (str(preset),)


def test_a_repeated_key_is_an_error_naming_file_key_and_line(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("train: {epochs: 5}\nseed: 3\ntrain: {lr: 3.0e-4}\n")
    with pytest.raises(ConfigError, match=r"(?s)overlay\.yaml.*'train' twice.*line 3"):
        load_config([overlay], base=ROOT / "params.yaml")
    overlay.write_text("models:\n  vae: {kind: vae}\n  vae: {warmup_epochs: 0}\n")
    with pytest.raises(ConfigError, match="'vae' twice"):
        load_config([overlay], base=ROOT / "params.yaml")


def test_merge_is_recursive_for_dicts_and_replaces_lists():
    out = merge({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}, "e": 2})
    assert out == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}


def test_run_name_parsing():
    spec = parse_run_name("bmnist-gae-slides-L3-z50")
    parsed = (spec.dataset, spec.model, spec.depth, spec.latent_dim)
    assert parsed == ("bmnist", "gae-slides", 3, 50)
    with pytest.raises(ConfigError, match="L5"):
        parse_run_name("bmnist-gae-L5-z50")


def _write(tmp_path, cfg):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_bad_value_names_the_key(tmp_path):
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["train"]["lr"] = -1
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_config(base=_write(tmp_path, cfg))
    cfg["train"]["lr"] = 1e-3
    cfg["train"]["lr_decay_factor"] = 1.5  # a "decay" that grows the rate
    with pytest.raises(ConfigError, match=r"train\.lr_decay_factor"):
        load_config(base=_write(tmp_path, cfg))
    cfg["train"]["lr_decay_factor"] = 0.5
    cfg["train"]["lr_schedule"] = "cosine"
    with pytest.raises(ConfigError, match=r"train\.lr_schedule.*'cosine'"):
        load_config(base=_write(tmp_path, cfg))


def test_unknown_model_and_evaluate_not_in_runs(tmp_path):
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["runs"].append("mnist-nope-L1-z2")
    with pytest.raises(ConfigError, match="model 'nope'"):
        load_config(base=_write(tmp_path, cfg))
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["evaluate"]["parzen"] = ["mnist-gae-L4-z7"]
    with pytest.raises(ConfigError, match="evaluate.parzen"):
        load_config(base=_write(tmp_path, cfg))


def test_run_not_listed_is_refused():
    cfg = load_config(base=ROOT / "params.yaml")
    with pytest.raises(ConfigError, match="not listed under 'runs'"):
        run_spec(cfg, "mnist-vae-L4-z3")


def test_cli_reports_missing_config_with_exit_1(tmp_path, capsys):
    assert main(["config", "--params", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert "missing.yaml" in err and "does not exist" in err
