"""Load, merge and validate the one configuration (``params.yaml`` plus overlay presets).

The effective configuration is ``params.yaml``, then each file of its ``overlays`` list, then
each ``--config FILE`` of the command line, then each ``--set KEY.PATH=VALUE``, merged in that
order: mappings merge key by key, every other value (lists included) is replaced. The result is
validated against ``gae/schemas/params.schema.yaml`` (every key required: params.yaml writes
each default once), read as the typed ``gae.settings.Config`` and checked by the cross-key rules
of the training code, so a bad value fails before any work, in every ``gae`` command and in
Snakemake alike.
Every error names the file (or ``--set``) that set the offending value, because with overlays
"params.yaml" is often not where the mistake is.

YAML: files are read as YAML 1.1 (PyYAML) with two changes: a key given twice is an error, and
exponent floats without a dot or a signed exponent (``1e-4``, ``1e3``, ``1.0e3``) are numbers,
as in YAML 1.2 (and in DVC's reader), rather than strings.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gae.errors import ConfigError
from gae.settings import DATASETS, VARIANTS, Config, GaeSettings, Variant

DEFAULT_CONFIG = Path("params.yaml")
RUN_PATTERN = re.compile(
    r"^(?P<dataset>mnist|bmnist|frey|tfd)-(?P<model>[a-z][a-z0-9-]*?)-L(?P<depth>[1-4])"
    r"-z(?P<latent_dim>[1-9][0-9]*)$"
)


@dataclass(frozen=True)
class RunSpec:
    """One trained model, parsed from its name ``{dataset}-{model}-L{depth}-z{latent_dim}``."""

    name: str
    dataset: str
    model: str
    depth: int
    latent_dim: int


def parse_run_name(name: str) -> RunSpec:
    match = RUN_PATTERN.match(name)
    if not match:
        raise ConfigError(
            f"run name {name!r} is not of the form "
            f"{{dataset}}-{{model}}-L{{depth}}-z{{latent_dim}} with dataset in {DATASETS} "
            f"and depth 1-4, e.g. 'bmnist-gae-L2-z50'"
        )
    return RunSpec(
        name=name,
        dataset=match["dataset"],
        model=match["model"],
        depth=int(match["depth"]),
        latent_dim=int(match["latent_dim"]),
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a second `train:` in an overlay would silently
    drop the first one's settings, so a repeated key is an error here."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice; merge the two entries into one",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 reads `1e-4`, `1e3` and `1.0e3` as floats; YAML 1.1 (PyYAML) needs a dot and a signed
# exponent and reads them as strings, so `lr: 1e-4` failed with "'1e-4' is not of type 'number'".
# Only exponent forms are added: every other scalar resolves as before.
_YAML12_EXPONENT_FLOAT = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"
)
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _YAML12_EXPONENT_FLOAT, list("-+0123456789.")
)


def parse_yaml_text(text: str, what: str) -> Any:
    """``text`` read by the project's YAML loader (unique keys, YAML 1.2 exponent floats)."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {exc}") from exc


def _read_config_text(path: Path) -> str:
    """The file's text, or one ConfigError saying what is wrong with the path (no traceback)."""
    try:
        return path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"configuration file {path} does not exist; run from the project root or pass "
            f"--config with an existing file"
        ) from exc
    except IsADirectoryError as exc:
        raise ConfigError(
            f"configuration file {path} is a folder, not a YAML file; pass one file, e.g. "
            f"--config config/cpu.yaml"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not a text (YAML) file") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}") from exc


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    data = parse_yaml_text(_read_config_text(path), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, not {type(data).__name__}")
    return data


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``overlay``: mappings merge recursively, the rest is replaced."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Which file set each key: (key, subkey, ...) -> "params.yaml", "config/cpu.yaml", "--set ...".
Sources = dict[tuple[str, ...], str]


def note_sources(
    layer: dict[str, Any], source: str, sources: Sources, prefix: tuple[str, ...] = ()
) -> None:
    """Record ``source`` as the origin of every key of ``layer`` (merged on top of the rest)."""
    for key, value in layer.items():
        path = (*prefix, str(key))
        if not isinstance(value, dict):  # a replaced mapping's old keys are gone
            for stale in [p for p in sources if len(p) > len(path) and p[: len(path)] == path]:
                del sources[stale]
        sources[path] = source
        if isinstance(value, dict):
            note_sources(value, source, sources, path)


def source_of(sources: Sources, path: Iterable[Any], default: str) -> str:
    """The file that set ``path`` (or its nearest ancestor that some file set)."""
    parts = tuple(str(p) for p in path)
    for end in range(len(parts), 0, -1):
        if parts[:end] in sources:
            return sources[parts[:end]]
    return default


def parse_set(text: str) -> dict[str, Any]:
    """``KEY.PATH=VALUE`` (the command line's ``--set``) as a nested overlay mapping.

    VALUE is read as YAML, so ``--set train.lr=1e-4`` is a number, ``--set data.mirror=null``
    is null and ``--set evaluate.latent=[]`` an empty list, exactly as in an overlay file.
    """
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(
            f"--set {text!r}: expected KEY.PATH=VALUE, e.g. --set train.lr=1e-4 or "
            f"--set models.gae.n_candidates=64"
        )
    if parts[0] == "overlays":
        raise ConfigError(f"--set {text!r}: give overlay files with --config FILE instead")
    layer: Any = parse_yaml_text(value, f"--set {text!r}: the value")
    for part in reversed(parts):
        layer = {part: layer}
    return layer


def _overlay_list(cfg: dict[str, Any], source: str) -> list[Any]:
    overlays = cfg["overlays"] if "overlays" in cfg else []  # a base file may leave it out
    if not isinstance(overlays, list) or not all(isinstance(o, str) for o in overlays):
        raise ConfigError(
            f"{source}: key 'overlays' must be a list of file names, e.g. "
            f"[config/cpu.yaml], not {overlays!r}"
        )
    return overlays


def load_config(
    overlays: Sequence[str | Path] = (),
    base: str | Path = DEFAULT_CONFIG,
    overrides: dict[str, Any] | None = None,
    sets: Sequence[str] = (),
    preset: bool = True,
) -> Config:
    """The effective configuration: ``base``, its own ``overlays``, then ``overlays``, then
    ``overrides`` (a mapping, for tests and scripts), then each ``--set`` text, validated and
    typed (``gae.settings.Config``; ``Config.to_dict()`` is the merged dict).

    ``preset=False`` ignores ``base``'s own ``overlays`` line (the preset ``make run`` writes
    there): the study's jobs use it, so a study row means the same whatever preset is active.
    """
    cfg = load_yaml(base)
    sources: Sources = {}
    note_sources(cfg, str(base), sources)
    applied: list[str] = []
    own = _overlay_list(cfg, str(base)) if preset else []
    for path in [*own, *overlays]:
        layer = load_yaml(path)  # relative paths: relative to the current folder
        cfg = merge(cfg, layer)
        note_sources(layer, str(path), sources)
        applied.append(str(path))
    layers = [(parse_set(text), f"--set {text}") for text in sets]
    if overrides:
        layers.insert(0, (overrides, "overrides"))
    for layer, label in layers:
        cfg = merge(cfg, layer)
        note_sources(layer, label, sources)
    cfg["overlays"] = applied
    return validate_config(cfg, source=str(base), sources=sources)


def updated(cfg: Config, overrides: dict[str, Any]) -> Config:
    """``cfg`` with ``overrides`` merged on top (as ``load_config(overrides=...)`` does),
    validated again: the way to change a loaded, frozen configuration by nested keys."""
    return validate_config(merge(cfg.to_dict(), overrides), source="overrides")


def schema() -> dict[str, Any]:
    text = resources.files("gae").joinpath("schemas/params.schema.yaml").read_text()
    return yaml.safe_load(text)


def _unknown_key_message(err: Any, where: Any) -> str:
    """An ``additionalProperties: false`` error as: file, full key path, the closest valid name."""
    parent = [str(p) for p in err.absolute_path]
    valid = sorted(err.schema.get("properties", {}))
    unknown = [k for k in err.instance if k not in valid]
    key = str(unknown[0]) if unknown else "?"
    full = ".".join([*parent, key])
    other = _kinds_with_key(key) if len(parent) == 2 and parent[0] == "models" else []
    if other and isinstance(err.instance, dict) and "kind" in err.instance:
        return (
            f"{where([*parent, key])}: {full} is {err.instance[key]!r}, but it is a key of kind "
            f"{' and '.join(other)}, and models.{parent[1]} is a {err.instance['kind']} (valid "
            f"keys: {', '.join(valid)}); remove it"
        )
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean '{'.'.join([*parent, close[0]])}'?" if close else ""
    return (
        f"{where([*parent, key])}: unknown key '{full}'{hint} "
        f"(valid keys under '{'.'.join(parent) or '(top level)'}': {', '.join(valid)})"
    )


def _kinds_with_key(key: str) -> list[str]:
    """The variant kinds whose settings have ``key`` (gae.settings: one dataclass per kind)."""
    return [kind for kind, cls in VARIANTS.items() if key in {f.name for f in fields(cls)}]


def _validator(jsonschema: Any) -> Any:
    """Draft 2020-12, except that 1000.0 is not an integer: JSON Schema counts it as one, but the
    code would then get a float where it counts (``range(1000.0)`` fails mid-run), and
    ``n_importance: 1e3`` reads as the float 1000.0."""
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return jsonschema.validators.extend(base, type_checker=checker)(schema())


def validate_config(
    cfg: dict[str, Any], source: str = "configuration", sources: Sources | None = None
) -> Config:
    """The typed ``Config`` of the merged dict ``cfg``; else a ConfigError naming the file, the
    key and the bad value, with what is allowed.

    ``sources`` (from ``load_config``) says which file set each key; without it every error
    names ``source``.
    """
    import jsonschema

    def where(path: Iterable[Any]) -> str:
        return source_of(sources or {}, path, source)

    errors = sorted(
        _validator(jsonschema).iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path]
    )
    if errors:
        raise ConfigError(_error_message(errors[0], where))
    typed = Config.from_dict(cfg)
    _check_runs(typed, where)
    _check_model(typed, where)
    _check_validation_interval(typed, where)
    for name, settings in typed.models.items():
        if isinstance(settings, GaeSettings):
            _check_gae_variant(typed, name, settings, where)
    return typed


def _error_message(err: Any, where: Any) -> str:
    """One schema error as the message the user reads: the file, the full key, what to do."""
    if err.validator == "additionalProperties" and err.schema.get("additionalProperties") is False:
        return _unknown_key_message(err, where)
    key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "required" and isinstance(err.instance, dict):
        return _missing_keys_message(err, key, where)
    hint = ""
    if err.validator == "type" and isinstance(err.instance, float):
        hint = f" (a count: write it as a whole number, e.g. {int(err.instance)})"
    return f"{where(err.absolute_path)}: key '{key}': {err.message}{hint}"


def _missing_keys_message(err: Any, key: str, where: Any) -> str:
    """Every key is required (its default is params.yaml's): name all the missing ones."""
    missing = [k for k in err.validator_value if k not in err.instance]
    path = [str(p) for p in err.absolute_path]
    if len(path) == 2 and path[0] == "models" and "kind" in err.instance:
        return (
            f"{where(path)}: variant '{path[1]}' (models.{path[1]}, kind "
            f"{err.instance['kind']}) lacks {', '.join(missing)}: a variant lists every key of "
            f"its kind (params.yaml's models.* show each with its meaning)"
        )
    return (
        f"{where(path)}: key '{key}' lacks {', '.join(missing)}: every key is required "
        f"(params.yaml holds each one's default)"
    )


def _check_runs(cfg: Config, where: Any) -> None:
    for name in cfg.runs:
        spec = parse_run_name(name)
        if spec.model not in cfg.models:
            raise ConfigError(
                f"{where(['runs'])}: run '{name}' uses model '{spec.model}', which is not "
                f"defined under 'models' (defined: {', '.join(sorted(cfg.models))})"
            )
    for evaluation, names in evaluate_lists(cfg).items():
        missing = [n for n in names if n not in cfg.runs]
        if missing:
            raise ConfigError(
                f"{where(['evaluate', evaluation])}: 'evaluate.{evaluation}' lists {missing}, "
                f"which are not in 'runs'; add them to 'runs' or remove them here"
            )


def evaluate_lists(cfg: Config) -> dict[str, list[str]]:
    """``evaluate`` as evaluation name -> its runs (parzen, loglik, diagnostics, latent)."""
    return {f.name: list(getattr(cfg.evaluate, f.name)) for f in fields(cfg.evaluate)}


def _check_validation_interval(cfg: Config, where: Any) -> None:
    """A plateau schedule judges validated epochs only: its lr_decay_epochs must be a whole
    number of validation intervals (``gae.schedules.make_scheduler``)."""
    every, decay = cfg.train.validate_every, cfg.train.lr_decay_epochs
    if every > 1 and cfg.train.lr_schedule == "plateau" and decay % every:
        raise ConfigError(
            f"{where(['train', 'lr_decay_epochs'])}: train.lr_decay_epochs ({decay}) must be a "
            f"multiple of train.validate_every ({every}, {where(['train', 'validate_every'])}) "
            f"with lr_schedule: plateau, which judges validated epochs only; change either"
        )


def _check_model(cfg: Config, where: Any) -> None:
    model = cfg.model
    if model.logvar_min >= model.logvar_max:
        raise ConfigError(
            f"{where(['model', 'logvar_min'])}: 'model.logvar_min' must be below "
            f"'model.logvar_max' ({where(['model', 'logvar_max'])})"
        )
    std_min, std_init = model.gaussian_std_min, model.gaussian_std_init
    if std_init <= std_min:
        raise ConfigError(
            f"{where(['model', 'gaussian_std_init'])}: model.gaussian_std_init ({std_init}) must "
            f"exceed model.gaussian_std_min ({std_min}, {where(['model', 'gaussian_std_min'])}); "
            f"raise it or lower the floor"
        )


def _check_gae_variant(cfg: Config, name: str, settings: GaeSettings, where: Any) -> None:
    """The cross-key rules of one GAE variant ``models.NAME``, checked at training start too
    (``gae.training.make_objective``, ``GenerativeModel``); here they fail before any job.
    (A key of another kind on a VAE or VampPrior variant is an unknown key of the schema.)"""
    e_step, variance = settings.e_step, settings.prior_variance

    def key(sub: str) -> str:
        return f"models.{name}.{sub} ({where(['models', name, sub])})"

    if e_step == "posterior" and not settings.leave_one_out:
        raise ConfigError(
            f"{key('leave_one_out')} must be true with {key('e_step')} 'posterior': with its "
            f"own component in the prior an image pays at most log n for any code and the "
            f"encoder collapses; set models.{name}.leave_one_out: true"
        )
    if variance != "posterior" and e_step != "posterior":
        raise ConfigError(
            f"{key('prior_variance')} {variance!r} needs {key('e_step')} "
            f"'posterior' (the sampled E-step draws z from each q(z|x_j) itself); set "
            f"models.{name}.e_step: posterior or prior_variance: posterior"
        )
    if settings.warmup_epochs and e_step != "posterior":
        raise ConfigError(
            f"{key('warmup_epochs')} applies to the VAE and to the GAE's posterior E-step (its "
            f"bound has a KL part to scale), not to {key('e_step')} {e_step!r}; set "
            f"models.{name}.warmup_epochs: 0 or e_step: posterior"
        )
    if settings.exemplar_gradient and (e_step != "posterior" or settings.candidates != "knn"):
        raise ConfigError(
            f"{key('exemplar_gradient')} applies to a GAE with e_step: posterior and "
            f"candidates: knn ({key('candidates')} is {settings.candidates!r}, e_step "
            f"{e_step!r}); set models.{name}.exemplar_gradient: false"
        )
    _check_candidates(cfg, settings, key)


def _check_candidates(cfg: Config, settings: GaeSettings, key: Any) -> None:
    """k nearest exemplars need k + 2 training images (the image itself is left out)."""
    n_train, k = cfg.data.subset.train, settings.n_candidates
    if settings.candidates == "knn" and n_train is not None and k > n_train - 2:
        raise ConfigError(
            f"{key('n_candidates')} = {k} nearest exemplars needs at least n_candidates + 2 "
            f"training images, but data.subset.train is {n_train}; lower n_candidates or raise "
            f"the subset"
        )


def run_spec(cfg: Config, name: str) -> RunSpec:
    """Parse ``name`` and check that the configuration defines it."""
    spec = parse_run_name(name)
    if name not in cfg.runs:
        runs = cfg.runs
        raise ConfigError(
            f"run '{name}' is not listed under 'runs' in the configuration; add it there "
            f"(known runs: {', '.join(runs[:5])}{', ...' if len(runs) > 5 else ''})"
        )
    return spec


def model_settings(cfg: Config, spec: RunSpec) -> Variant:
    """The variant settings of ``spec.model`` (``models.MODEL``)."""
    return cfg.models[spec.model]


# ---- paths (the layout of ../shared/spec.md) -------------------------------------------------


def data_dir(cfg: Config) -> Path:
    return Path(cfg.paths.data)


def prepared_path(cfg: Config, dataset: str, suffix: str = "npz") -> Path:
    return data_dir(cfg) / "prepared" / f"{dataset}.{suffix}"


def results_dir(cfg: Config) -> Path:
    return Path(cfg.paths.results)


def run_dir(cfg: Config, run: str) -> Path:
    return results_dir(cfg) / "runs" / run
