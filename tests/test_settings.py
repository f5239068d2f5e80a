"""The typed configuration (gae.settings) and the schema cannot drift apart, and params.yaml alone
is a complete configuration: every default is written there once, no code falls back on its own.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

import gae.settings as settings_module
from gae.config import load_config, schema, updated
from gae.errors import ConfigError
from gae.settings import VARIANTS, Config, GaeSettings, variant_to_dict

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    return defs[ref.rsplit("/", 1)[1]] if ref.startswith("#/$defs/") else node


def _variant_schemas(models: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """kind -> the `then` schema of its `if kind == ...` clause."""
    clauses = models["additionalProperties"]["allOf"]
    return {c["if"]["properties"]["kind"]["const"]: c["then"] for c in clauses}


def _agree(cls: type, node: dict[str, Any], defs: dict[str, Any], path: str) -> None:
    """The dataclass ``cls`` and the object schema ``node`` name the same keys, all required,
    and agree below each key that is itself a mapping."""
    names = [f.name for f in dataclasses.fields(cls)]
    assert sorted(node["properties"]) == sorted(names), path
    assert sorted(node["required"]) == sorted(names), f"{path}: required list incomplete"
    assert node["additionalProperties"] is False, path
    hints = typing.get_type_hints(cls, vars(settings_module))
    for name in names:
        sub = _resolve(node["properties"][name], defs)
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            _agree(hint, sub, defs, f"{path}.{name}")
        elif typing.get_origin(hint) is dict:  # models: one dataclass per kind
            kinds = _variant_schemas(sub)
            assert sorted(kinds) == sorted(VARIANTS), path
            enum = sub["additionalProperties"]["properties"]["kind"]["enum"]
            assert sorted(enum) == sorted(VARIANTS), path
            for kind, then in kinds.items():
                _agree(VARIANTS[kind], then, defs, f"{path}.{name}.<{kind}>")
        else:
            assert "properties" not in sub, f"{path}.{name} is a mapping in the schema only"


def test_the_schema_and_the_dataclasses_name_the_same_keys_at_every_level() -> None:
    full = schema()
    _agree(Config, full, full["$defs"], "(top level)")


def test_params_yaml_alone_loads_into_a_complete_typed_config() -> None:
    cfg = load_config(base=PARAMS, preset=False)
    assert isinstance(cfg, Config) and cfg.overlays == ()
    assert cfg.train.lr_decay_epochs == 2 and cfg.model.init == "xavier"
    slides = cfg.models["gae-slides"]
    assert isinstance(slides, GaeSettings)
    assert (slides.prior_variance, slides.e_step, slides.candidates) == (
        "posterior",
        "sampled",
        "batch",
    )
    assert slides.warmup_epochs == 0 and slides.exemplar_gradient is False
    # the plain dict has today's shape: lists, nested mappings, every key
    plain = cfg.to_dict()
    assert plain["runs"] == list(cfg.runs) and isinstance(plain["evaluate"]["parzen"], list)
    assert plain["models"]["gae-slides"] == variant_to_dict(slides)
    assert Config.from_dict(plain) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 1  # type: ignore[misc]


def test_every_preset_loads_and_updated_revalidates() -> None:
    for preset in sorted((ROOT / "config").glob("*.yaml")):
        assert load_config([preset], base=PARAMS).overlays == (str(preset),)
    cfg = load_config(base=PARAMS)
    assert updated(cfg, {"train": {"epochs": 3}}).train.epochs == 3
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        updated(cfg, {"train": {"epochs": 0}})


def test_a_variant_in_an_overlay_lacking_keys_of_its_kind_names_them_and_the_file(
    tmp_path: Path,
) -> None:
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("models:\n  gae-mine: {kind: gae, e_step: posterior, candidates: knn}\n")
    with pytest.raises(ConfigError) as err:
        load_config([overlay], base=PARAMS)
    message = str(err.value)
    assert message.startswith(str(overlay)) and "'gae-mine'" in message
    for key in ("n_candidates", "leave_one_out", "prior_variance", "warmup_epochs"):
        assert key in message
    assert "e_step" not in message.split("lacks", 1)[1]


def test_a_key_of_another_kind_is_an_unknown_key(tmp_path: Path) -> None:
    overlay = tmp_path / "vamp.yaml"
    overlay.write_text("models: {vamp: {candidates: knn}}\n")
    match = r"models\.vamp\.candidates is 'knn', but it is a key of kind gae"
    with pytest.raises(ConfigError, match=match):
        load_config([overlay], base=PARAMS)


# params.yaml's variants before every key was required (commit c626848): what their runs'
# checkpoint fingerprints hash as `settings`
OLD_VARIANTS: dict[str, dict[str, Any]] = {
    "vae": {"kind": "vae", "warmup_epochs": 5, "n_z": 4},
    "gae": {
        "kind": "gae",
        "e_step": "posterior",
        "candidates": "knn",
        "n_candidates": 32,
        "neighbour_refresh_epochs": 1,
        "neighbour_search": "exact",
        "leave_one_out": True,
        "prior_variance": "unit",
        "lambda_mu": 0.0,
        "lambda_sigma": 0.0,
        "n_z": 4,
        "warmup_epochs": 5,
    },
    "gae-exemplar": {
        "kind": "gae",
        "e_step": "posterior",
        "candidates": "knn",
        "n_candidates": 10,
        "neighbour_refresh_epochs": 1,
        "leave_one_out": True,
        "exemplar_gradient": True,
        "prior_variance": "learned_scalar",
        "lambda_mu": 0.0,
        "lambda_sigma": 0.0,
        "n_z": 4,
        "warmup_epochs": 5,
    },
    "vamp": {
        "kind": "vamp",
        "n_pseudo_inputs": 500,
        "pseudo_inputs_init": "random",
        "pseudo_inputs_mean": 0.05,
        "pseudo_inputs_std": 0.01,
        "warmup_epochs": 5,
        "n_z": 4,
    },
    "gae-slides": {
        "kind": "gae",
        "e_step": "sampled",
        "candidates": "batch",
        "leave_one_out": False,
        "lambda_mu": 0.001,
        "lambda_sigma": 1.0,
        "n_z": 1,
    },
}


@pytest.mark.parametrize("preset", [None, *sorted((ROOT / "config").glob("*.yaml"))])
def test_the_variants_fingerprinted_settings_are_those_of_before(preset: Path | None) -> None:
    """Every key listed explicitly must not change a run's fingerprint: the settings a
    checkpoint records are, for each variant of params.yaml under every preset, the merged
    variant dict of before (so trained runs still resume)."""
    import gae.training as training
    from gae.config import load_yaml, merge

    cfg = load_config([preset] if preset else [], base=PARAMS, preset=False)
    overlay = load_yaml(preset).get("models", {}) if preset else {}
    old = merge(OLD_VARIANTS, overlay)
    for name, settings in cfg.models.items():
        parts = {"kind": settings.kind, "settings": variant_to_dict(settings)}
        shimmed = training.old_run_fingerprint_shims({**parts, "optimizer": "x", "lr_decay": 1})
        want = old[name]
        if settings.kind == "vae" and want["n_z"] == 1:
            want = {k: v for k, v in want.items() if k != "n_z"}  # the VAE's own n_z shim
        assert shimmed["settings"] == want, (preset, name)
