"""Load, merge and validate the one configuration (``params.yaml`` plus overlay presets).

The effective configuration is ``params.yaml``, then each file of its ``overlays`` list, then
each ``--config FILE`` of the command line, merged in that order: mappings merge key by key,
every other value (lists included) is replaced. The result is validated against
``gae/schemas/params.schema.yaml`` (also used by the Snakefile) plus cross-key checks.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gae.errors import ConfigError

DEFAULT_CONFIG = Path("params.yaml")
DATASETS = ("mnist", "bmnist", "frey", "tfd")
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


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"configuration file {path} does not exist; run from the project root or pass "
            f"--config with an existing file"
        ) from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
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


def load_config(
    overlays: list[str | Path] | tuple[str | Path, ...] = (),
    base: str | Path = DEFAULT_CONFIG,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The effective configuration: ``base``, its own ``overlays``, then ``overlays``, validated."""
    cfg = load_yaml(base)
    applied: list[str] = []
    for path in [*cfg.get("overlays", []), *overlays]:
        cfg = merge(cfg, load_yaml(path))  # relative paths: relative to the current folder
        applied.append(str(path))
    if overrides:
        cfg = merge(cfg, overrides)
    cfg["overlays"] = applied
    validate_config(cfg, source=str(base))
    return cfg


def schema() -> dict[str, Any]:
    text = resources.files("gae").joinpath("schemas/params.schema.yaml").read_text()
    return yaml.safe_load(text)


def validate_config(cfg: dict[str, Any], source: str = "configuration") -> None:
    """Raise ConfigError naming the key and the bad value, with what is allowed."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"{source}: key '{key}': {err.message}")
    runs = cfg["runs"]
    for name in runs:
        spec = parse_run_name(name)
        if spec.model not in cfg["models"]:
            raise ConfigError(
                f"{source}: run '{name}' uses model '{spec.model}', which is not defined under "
                f"'models' (defined: {', '.join(sorted(cfg['models']))})"
            )
    for evaluation, names in cfg["evaluate"].items():
        missing = [n for n in names if n not in runs]
        if missing:
            raise ConfigError(
                f"{source}: 'evaluate.{evaluation}' lists {missing}, which are not in 'runs'; "
                f"add them to 'runs' or remove them here"
            )
    model = cfg["model"]
    if model.get("logvar_min", -6.0) >= model.get("logvar_max", 2.0):
        raise ConfigError(f"{source}: 'model.logvar_min' must be below 'model.logvar_max'")


def run_spec(cfg: dict[str, Any], name: str) -> RunSpec:
    """Parse ``name`` and check that the configuration defines it."""
    spec = parse_run_name(name)
    if name not in cfg["runs"]:
        raise ConfigError(
            f"run '{name}' is not listed under 'runs' in the configuration; add it there "
            f"(known runs: {', '.join(cfg['runs'][:5])}{', ...' if len(cfg['runs']) > 5 else ''})"
        )
    return spec


def model_settings(cfg: dict[str, Any], spec: RunSpec) -> dict[str, Any]:
    """The variant settings of ``spec.model`` (``cfg['models'][model]``)."""
    return dict(cfg["models"][spec.model])


# ---- paths (the layout of ../shared/spec.md) -------------------------------------------------


def data_dir(cfg: dict[str, Any]) -> Path:
    return Path(cfg["paths"]["data"])


def prepared_path(cfg: dict[str, Any], dataset: str, suffix: str = "npz") -> Path:
    return data_dir(cfg) / "prepared" / f"{dataset}.{suffix}"


def results_dir(cfg: dict[str, Any]) -> Path:
    return Path(cfg["paths"]["results"])


def run_dir(cfg: dict[str, Any], run: str) -> Path:
    return results_dir(cfg) / "runs" / run
