"""Validation of the effective configuration: unknown keys with the closest valid name, the
cross-key rules of the training code, YAML 1.2 exponent floats, the file behind every bad value,
`--set` and a folder given as `--config`. Every check runs in `load_config`, so it fails before
any work in every `gae` command and, through the Snakefile, before any job."""

from __future__ import annotations

from pathlib import Path

import pytest

from gae.cli import main
from gae.config import load_config, load_yaml, parse_set
from gae.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def overlay(tmp_path: Path, text: str, name: str = "overlay.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- unknown keys ----------------------------------------------------------------------------


def test_a_typo_under_models_is_refused_with_its_path_file_and_closest_name(tmp_path):
    typo = overlay(tmp_path, "models:\n  gae: {n_candiates: 64}\n")
    with pytest.raises(ConfigError) as err:
        load_config([typo], base=PARAMS)
    message = str(err.value)
    assert message.startswith(str(typo))
    assert "unknown key 'models.gae.n_candiates'" in message
    assert "did you mean 'models.gae.n_candidates'" in message


@pytest.mark.parametrize(
    ("text", "path", "suggestion"),
    [
        ("trian: {epochs: 3}\n", "trian", "train"),
        ("evaluation: {n_sample: 10}\n", "evaluation.n_sample", "evaluation.n_samples"),
        ("evaluation: {loglik: {n_importnce: 10}}\n", "evaluation.loglik.n_importnce", None),
        ("model: {likelihood: {mnistt: bernoulli}}\n", "model.likelihood", None),
    ],
)
def test_unknown_keys_anywhere_are_refused(tmp_path, text, path, suggestion):
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")) as err:
        load_config([overlay(tmp_path, text)], base=PARAMS)
    if suggestion:
        assert f"did you mean '{suggestion}'" in str(err.value)


# ---- the file behind the value -----------------------------------------------------------------


def test_errors_name_the_file_that_set_the_value(tmp_path):
    first = overlay(tmp_path, "train: {epochs: 3}\n", "first.yaml")
    second = overlay(tmp_path, "train: {lr: -1.0}\n", "second.yaml")
    with pytest.raises(ConfigError, match=r"^.*second\.yaml: key 'train\.lr'"):
        load_config([first, second], base=PARAMS)
    bad_base = tmp_path / "params.yaml"
    bad_base.write_text(PARAMS.read_text().replace("  epochs: 300", "  epochs: 0"))
    with pytest.raises(ConfigError, match=r"params\.yaml: key 'train\.epochs'"):
        load_config(base=bad_base)
    # a later file that fixes the value takes the blame away from params.yaml
    assert load_config([first], base=bad_base).train.epochs == 3
    with pytest.raises(ConfigError, match=r"^--set train\.lr=-2: key 'train\.lr'"):
        load_config(base=PARAMS, sets=["train.lr=-2"])


# ---- YAML 1.2 exponent floats ------------------------------------------------------------------


def test_exponent_floats_are_numbers_and_nothing_else_changes(tmp_path):
    data = load_yaml(
        overlay(
            tmp_path,
            "a: 1e-4\nb: 1e3\nc: 1.0e3\nd: -2E+2\ne: 1.5\nf: 12\ng: e3\nh: 1e\ni: 1.2.3\n"
            "j: 0x1F\nk: '1e3'\n",
        )
    )
    assert data["a"] == 1e-4 and isinstance(data["a"], float)
    assert data["b"] == 1000.0 and data["c"] == 1000.0 and data["d"] == -200.0
    assert data["e"] == 1.5 and data["f"] == 12 and isinstance(data["f"], int)
    assert [data[k] for k in "ghik"] == ["e3", "1e", "1.2.3", "1e3"]  # strings stay strings
    assert data["j"] == 31
    cfg = load_config([overlay(tmp_path, "train: {lr: 1e-4}\n", "lr.yaml")], base=PARAMS)
    assert cfg.train.lr == 1e-4


def test_a_count_written_as_a_float_is_refused_with_what_to_write(tmp_path):
    with pytest.raises(ConfigError, match=r"n_importance.*whole number, e\.g\. 1000"):
        load_config([overlay(tmp_path, "evaluation: {loglik: {n_importance: 1e3}}\n")], PARAMS)


# ---- cross-key rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("models: {gae: {leave_one_out: false}}\n", r"models\.gae\.leave_one_out .*overlay"),
        (
            "models: {gae: {e_step: sampled, candidates: batch, warmup_epochs: 0}}\n",
            r"models\.gae\.prior_variance .*'unit' needs .*e_step",
        ),
        (
            "models: {gae: {e_step: sampled, candidates: batch, prior_variance: posterior}}\n",
            r"models\.gae\.warmup_epochs",
        ),
        ("models: {vae: {prior_variance: unit}}\n", r"models\.vae\.prior_variance"),
        ("data: {subset: {train: 20}}\n", r"models\.gae\.n_candidates .*data\.subset\.train"),
        ("model: {gaussian_std_init: 0.01}\n", r"gaussian_std_init"),
        (
            "models: {gae: {exemplar_gradient: true, candidates: batch}}\n",
            r"models\.gae\.exemplar_gradient",
        ),
    ],
)
def test_cross_key_rules_fail_at_validation(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config([overlay(tmp_path, text)], base=PARAMS)


def test_every_gae_command_validates_before_any_work(tmp_path, capsys):
    typo = overlay(tmp_path, "models:\n  gae: {n_candiates: 64}\n")
    for argv in (["train", "bmnist-gae-L1-z50"], ["loglik", "bmnist-gae-L1-z50"], ["tables"]):
        assert main([*argv, "--params", str(PARAMS), "--config", str(typo)]) == 1
        err = capsys.readouterr().err
        assert "models.gae.n_candiates" in err and "Traceback" not in err


# ---- --set and --config ------------------------------------------------------------------------


def test_set_applies_yaml_values_after_the_overlays(tmp_path, capsys):
    lr = overlay(tmp_path, "train: {lr: 5.0e-4}\n")
    sets = ["train.lr=1e-4", "models.gae.n_candidates=64", "evaluate.latent=[]"]
    cfg = load_config([lr], base=PARAMS, sets=sets)
    assert cfg.train.lr == 1e-4
    assert cfg.models["gae"].n_candidates == 64 and cfg.evaluate.latent == ()
    assert main(["config", "--params", str(PARAMS), "--set", "models.gae.n_candidates=48"]) == 0
    assert "n_candidates: 48" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["train.lr", "=3", "train..lr=3", "overlays=[a.yaml]"])
def test_a_malformed_set_is_one_clear_error(text):
    with pytest.raises(ConfigError, match="--set"):
        parse_set(text)


def test_a_folder_given_as_config_is_one_message(tmp_path, capsys):
    assert main(["config", "--params", str(PARAMS), "--config", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "is a folder, not a YAML file" in err and len(err.splitlines()) == 1
