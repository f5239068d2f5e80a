"""The typed configuration: one frozen dataclass per section of ``params.yaml``.

Why typed: every module used to read the merged dict with a fallback of its own, and the
defaults disagreed (``lr_decay_epochs`` 5 in one place, 2 in params.yaml). Here no field has a
default: **params.yaml is the one place a default is written**, every key is required after
merging (``gae/schemas/params.schema.yaml`` lists them all under ``required``) and a missing or
misspelt key fails in ``gae.config.load_config`` before any job. ``tests/test_settings.py``
checks that these classes and the schema name the same keys at every level.

Bottom layer: imports only the standard library and ``gae.errors`` (Snakemake parses the
workflow, which loads the configuration, without torch). ``Config.to_dict`` gives back the plain
nested dict (lists, not tuples), for fingerprints, JSON, YAML and Snakemake rule params.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from gae.errors import ConfigError

DATASETS = ("mnist", "bmnist", "frey", "tfd")
Device = Literal["auto", "cpu", "cuda"]
Likelihood = Literal["bernoulli", "gaussian"]


@dataclass(frozen=True)
class Paths:
    """Where data and results live (relative to the current folder)."""

    data: str
    results: str


@dataclass(frozen=True)
class FreySplit:
    """Frey faces have no official split: a fixed seeded permutation of all 1,965 images, then
    ``valid`` and ``test`` images held out."""

    seed: int
    valid: int
    test: int


@dataclass(frozen=True)
class Subset:
    """Rows kept of each split (None: all), a seeded random sample (gae.data.subsets)."""

    train: int | None
    valid: int | None
    test: int | None


@dataclass(frozen=True)
class DataSettings:
    """``data.*``: where the raw files come from and which rows are used."""

    mirror: str | None
    download: bool
    tfd_path: str | None
    tfd_fold: int
    bmnist_source: Literal["auto", "larochelle", "bernoulli"]
    bmnist_seed: int
    frey_split: FreySplit
    subset: Subset
    subset_seed: int


@dataclass(frozen=True)
class LikelihoodSettings:
    """The decoder's likelihood for each data set."""

    mnist: Likelihood
    bmnist: Likelihood
    frey: Likelihood
    tfd: Likelihood


@dataclass(frozen=True)
class ModelSettings:
    """``model.*``: the architecture every run shares (depth and latent size: the run name)."""

    hidden_units: int
    activation: Literal["tanh", "relu", "softplus", "elu"]
    init: Literal["xavier", "torch", "he"]
    layer: Literal["dense", "gated"]
    logvar_min: float
    logvar_max: float
    likelihood: LikelihoodSettings
    gaussian_variance: Literal["learned", "fixed"]
    gaussian_std_min: float
    gaussian_std_init: float


@dataclass(frozen=True)
class VaeSettings:
    """A ``kind: vae`` variant: N(0, I) prior, analytic KL."""

    kind: Literal["vae"]
    warmup_epochs: int
    n_z: int


@dataclass(frozen=True)
class GaeSettings:
    """A ``kind: gae`` variant: the exemplar-mixture prior, trained by (variational) EM."""

    kind: Literal["gae"]
    e_step: Literal["sampled", "posterior"]
    candidates: Literal["batch", "knn"]
    n_candidates: int
    neighbour_refresh_epochs: int
    neighbour_search: Literal["exact", "ivf", "cells"]
    leave_one_out: bool
    exemplar_gradient: bool
    prior_variance: Literal["posterior", "unit", "learned", "learned_scalar"]
    lambda_mu: float
    lambda_sigma: float
    n_z: int
    warmup_epochs: int


@dataclass(frozen=True)
class VampSettings:
    """A ``kind: vamp`` variant: the VampPrior over learned pseudo-inputs."""

    kind: Literal["vamp"]
    n_pseudo_inputs: int
    pseudo_inputs_init: Literal["random", "training"]
    pseudo_inputs_mean: float
    pseudo_inputs_std: float
    warmup_epochs: int
    n_z: int


Variant = Union[VaeSettings, GaeSettings, VampSettings]  # noqa: UP007 (resolved at runtime)
# the discriminator: models.NAME.kind -> the variant's dataclass
VARIANTS: dict[str, type] = {"vae": VaeSettings, "gae": GaeSettings, "vamp": VampSettings}


@dataclass(frozen=True)
class TrainSection:
    """``train.*``: the optimisation loop (gae.training, gae.schedules)."""

    epochs: int
    batch_size: int
    lr: float
    grad_clip_norm: float | None
    lr_schedule: Literal["constant", "step", "plateau"]
    lr_decay_factor: float
    lr_decay_epochs: int
    optimizer: Literal["adam", "adam_normgrad"]
    patience: int
    validate_every: int
    num_threads: int | None
    compile: bool | Literal["reduce-overhead"]


@dataclass(frozen=True)
class SigmaGrid:
    """Parzen bandwidths: ``num`` points log-spaced from 10^log10_min to 10^log10_max."""

    log10_min: float
    log10_max: float
    num: int


@dataclass(frozen=True)
class ParzenSettings:
    sigma_grid: SigmaGrid
    refine: int
    n_valid: int
    n_test: int | None
    chunk_size: int


@dataclass(frozen=True)
class LoglikSettings:
    n_importance: int
    n_prior: int
    n_test: int | None
    chunk_size: int
    prior_components: int | None


@dataclass(frozen=True)
class DiagnosticsSettings:
    n_samples: int | None
    n_train: int | None


@dataclass(frozen=True)
class EvaluationSettings:
    """``evaluation.*``: samples, Parzen, log-likelihood and memorisation diagnostics."""

    n_samples: int
    batch_size: int
    parzen: ParzenSettings
    loglik: LoglikSettings
    diagnostics: DiagnosticsSettings


@dataclass(frozen=True)
class Evaluate:
    """Which runs each evaluation covers (each a subset of ``runs``)."""

    parzen: tuple[str, ...]
    loglik: tuple[str, ...]
    diagnostics: tuple[str, ...]
    latent: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    """The effective configuration (params.yaml + overlays + --set), validated."""

    overlays: tuple[str, ...]
    seed: int
    device: Device
    paths: Paths
    data: DataSettings
    model: ModelSettings
    models: dict[str, Variant]
    train: TrainSection
    evaluation: EvaluationSettings
    runs: tuple[str, ...]
    evaluate: Evaluate

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build from a merged, schema-validated dict; a missing or unknown key is a
        ConfigError (the schema reports it first, with the file that set it)."""
        return _build(cls, data, ())

    def to_dict(self) -> dict[str, Any]:
        """The plain nested dict of today's shape (tuples as lists), for hashing and JSON."""
        return _plain(self)

    def variant(self, model: str) -> Variant:
        """The settings of variant ``model`` (``models.MODEL``)."""
        return self.models[model]


def variant_to_dict(settings: Variant) -> dict[str, Any]:
    """One variant's settings as a plain dict (``models.NAME`` of ``Config.to_dict``)."""
    return _plain(settings)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[__name__]))


def _build(cls: type, data: Any, path: tuple[str, ...]) -> Any:
    where = ".".join(path) or "(top level)"
    if not isinstance(data, dict):
        raise ConfigError(f"key '{where}' must be a mapping, not {data!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in data]
    unknown = [k for k in data if k not in names]
    if missing or unknown:
        raise ConfigError(
            f"key '{where}': missing {missing or 'nothing'}, unknown {unknown or 'nothing'}"
        )
    hints = _hints(cls)
    return cls(**{n: _convert(hints[n], data[n], (*path, n)) for n in names})


def _convert(hint: Any, value: Any, path: tuple[str, ...]) -> Any:
    """``value`` as the field type ``hint`` asks: a dataclass, a tuple, the variants' mapping;
    scalars are kept as given (an int stays an int where a float is allowed: the fingerprint
    records ``train.lr`` and ``grad_clip_norm`` as configured)."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple(value)
    if origin is dict:
        return {name: _build_variant(v, (*path, name)) for name, v in value.items()}
    return value


def _build_variant(value: Any, path: tuple[str, ...]) -> Variant:
    kind = value["kind"] if isinstance(value, dict) and "kind" in value else None
    if kind not in VARIANTS:
        raise ConfigError(f"key '{'.'.join(path)}.kind' must be one of {', '.join(VARIANTS)}")
    return _build(VARIANTS[kind], value, path)
