"""The training loop shared by every variant: Adam, validation, early stopping, checkpoints, resume.

Each epoch ends with an atomically written checkpoint (model, optimizer, scheduler, every RNG
state, best weights, log rows), so a run killed at any moment (even by SIGKILL) resumes from its
last finished epoch and reaches the SAME final weights as an uninterrupted run of the same seed.

Validation is the Monte-Carlo ELBO on x_valid under each model's OWN prior: N(0, I) for the VAE,
the VampPrior for ``vamp`` and, for the GAE, the exact mixture over the encodings of ALL training
images (recomputed every epoch). All are lower bounds on log p(x), hence comparable; early
stopping keeps the best.

Layout, in the order a run meets it:

- ``VariantObjective`` and its subclasses, one per variant behind ``OBJECTIVES`` (``vae``,
  ``vamp``, ``gae-posterior``, ``gae-sampled``): each binds its settings to one function of
  ``gae.objectives``.
- ``Trainer``: ``__init__`` (setup), ``restore``, ``train_epoch`` / ``train_step``,
  ``validate`` (with the divergence guard), ``schedule`` (best epoch, early stopping, the
  learning rate: ``gae.schedules``), ``save_checkpoint`` and ``finalise``.
- ``old_run_fingerprint_shims``: the one place that keeps the fingerprints of older runs.

A ``--restart`` is a transaction: it trains under ``checkpoint.restart.pt`` and
``train_log.restart.csv`` and renames them onto the real names only after the new ``model.pt``
is written, so a restart that fails (diverges, is killed) leaves the previous run's
``model.pt``, ``checkpoint.pt`` and ``train_log.csv`` as they were.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Generator, Tensor
from tqdm import tqdm

from gae.config import model_settings, parse_run_name, run_dir, run_spec
from gae.errors import GaeError, StaleCheckpointError, TrainingError
from gae.io import atomic_torch_save, atomic_write_text, file_sha256, folder_lock, make_folder
from gae.models import (
    GenerativeModel,
    architecture_from_config,
    build_model,
    load_model,
    load_trained_weights,
    save_model,
    trained_weights,
)
from gae.objectives import (
    ObjectiveTerms,
    batch_exemplar_log_prior,
    cell_nearest_exemplars,
    elbo_with_prior,
    gae_knn_objective,
    gae_objective,
    gae_posterior_objective,
    ivf_nearest_exemplars,
    nearest_exemplars,
    neighbour_exemplar_log_prior,
    shared_variance_neighbour_log_prior,
    trivial_log_likelihood,
    vae_objective,
    vamp_objective,
)
from gae.ops import gather_rows
from gae.paths import CHECKPOINT_FILE, MODEL_FILE, TRAIN_LOG_FILE
from gae.schedules import make_scheduler, restore_scheduler, schedule_settings, step_scheduler
from gae.settings import (
    Config,
    GaeSettings,
    TrainSection,
    VampSettings,
    Variant,
    variant_to_dict,
)

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
# the run's files (gae.paths); the old names stay for the modules and tests that import them
CHECKPOINT_NAME, MODEL_NAME, LOG_NAME = CHECKPOINT_FILE, MODEL_FILE, TRAIN_LOG_FILE
# a --restart trains under these names until its model.pt is written (see the module docstring)
RESTART_CHECKPOINT_NAME = "checkpoint.restart.pt"
RESTART_LOG_NAME = "train_log.restart.csv"

# The divergence guard: a validation bound below the trivial model's (every pixel independent,
# gae.objectives.trivial_log_likelihood) by more than this many nats PER PIXEL stops the run.
# Wide on purpose: honest but poor models (2 smoke epochs, about -500 nats on 784 pixels, i.e.
# 0.4 nats per pixel below the mean image) pass; a diverged run (lr 1e3: -6.9e8) does not.
DIVERGENCE_MARGIN = 10.0


def derive_seed(seed: int, *names: str) -> int:
    """A seed for one purpose of one run: stable across processes (unlike ``hash``)."""
    digest = hashlib.sha256("/".join([str(seed), *names]).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def resolve_device(cfg: Config) -> torch.device:
    """``device: auto`` -> CUDA when available, else CPU."""
    wanted = cfg.device
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise GaeError("device: cuda is set but no CUDA device is available; use device: auto")
    return torch.device(wanted)


def load_training_data(cfg: Config, dataset: str) -> dict[str, np.ndarray]:
    """x_train / x_valid (float32 in [0, 1]) via ``gae.data.prepare.load_prepared``."""
    from gae.data.prepare import load_prepared

    data = load_prepared(cfg, dataset)
    for key in ("x_train", "x_valid"):
        if key not in data or len(data[key]) == 0:
            raise GaeError(f"prepared data set {dataset!r} has no {key}; re-run gae prepare")
    return data


def _rng_states(noise_gen: torch.Generator, perm_gen: torch.Generator) -> dict[str, Any]:
    states = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (global state, saved for resume)
        "python": random.getstate(),
        "noise": noise_gen.get_state(),
        "perm": perm_gen.get_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(
    states: dict[str, Any], noise_gen: torch.Generator, perm_gen: torch.Generator
) -> None:
    # generator states must be CPU byte tensors, whatever map_location moved the checkpoint to
    torch.set_rng_state(states["torch"].cpu())
    np.random.set_state(states["numpy"])  # noqa: NPY002
    random.setstate(states["python"])
    noise_gen.set_state(states["noise"].cpu())
    perm_gen.set_state(states["perm"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """train_log.csv: one row per epoch, written atomically."""
    if not rows:
        return
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _batches(perm: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split a permutation into minibatches; a last batch of one image joins the previous one
    (the in-batch GAE objective needs at least two candidates)."""
    batches = list(perm.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches = [*batches[:-2], torch.cat(batches[-2:])]
    return batches


# ---- the objectives, one class per variant ----------------------------------------------------


class VariantObjective:
    """One variant's training objective: its settings bound to a function of ``gae.objectives``.

    ``start_epoch`` runs before each epoch (warm-up weight, exemplar caches); calling the object
    gives one minibatch's ``ObjectiveTerms``. Settings that contradict each other are refused
    here with the key to change: ``load_config`` checks the same rules earlier, this is the guard
    for callers that build settings by hand. (A key of another kind cannot reach here: each
    kind's settings are their own dataclass, ``gae.settings``.)
    """

    kind = ""

    def __init__(self, settings: Variant, n_train: int, run: str) -> None:
        if settings.kind != self.kind:
            raise GaeError(f"run {run}: {self.kind} objective given {settings.kind} settings")
        self.run = run
        self.n_train = n_train
        self.n_z = int(settings.n_z)
        # warm-up: the KL part of the bound is scaled by epoch / warmup_epochs until it is whole
        self.warmup = int(settings.warmup_epochs)
        self.prior_weight = 1.0
        self.neighbours: torch.Tensor | None = None  # knn lists, kept in the checkpoint

    def variant_key(self, key: str) -> str:
        """``models.<variant>.<key>``, the setting a message tells the user to change."""
        return f"models.{parse_run_name(self.run).model}.{key}"

    def start_epoch(self, model: GenerativeModel, x_train: torch.Tensor, epoch: int) -> None:
        """Set the warm-up weight beta = min(1, epoch / warmup_epochs)."""
        self.prior_weight = min(1.0, epoch / self.warmup) if self.warmup else 1.0

    def __call__(
        self, model: GenerativeModel, x_train: Tensor, index: Tensor, generator: Generator
    ) -> ObjectiveTerms:
        raise NotImplementedError


class ElboObjective(VariantObjective):
    """An ELBO under the prior the model holds, ``n_z`` draws; ``elbo`` is its function
    (``gae.objectives.vae_objective`` or ``vamp_objective``)."""

    elbo: Callable[..., ObjectiveTerms]

    def __call__(
        self, model: GenerativeModel, x_train: Tensor, index: Tensor, generator: Generator
    ) -> ObjectiveTerms:
        return self.elbo(
            model,
            gather_rows(x_train, index),
            generator=generator,
            prior_weight=self.prior_weight,
            n_z=self.n_z,
        )


class VaeObjective(ElboObjective):
    """The VAE's ELBO with the N(0, I) prior (analytic KL)."""

    kind = "vae"
    elbo = staticmethod(vae_objective)


class VampObjective(ElboObjective):
    """The ELBO under the VampPrior (Monte-Carlo KL; the pseudo-inputs get its gradient)."""

    kind = "vamp"
    elbo = staticmethod(vamp_objective)


class GaeObjective(VariantObjective):
    """What both GAE E-steps share: the regulariser, leave-one-out and, with ``candidates:
    knn``, each image's k nearest exemplars (searched every ``neighbour_refresh_epochs``
    epochs) and the epoch's exemplar codes."""

    kind = "gae"

    def __init__(self, settings: GaeSettings, n_train: int, run: str) -> None:
        super().__init__(settings, n_train, run)
        self.candidates = settings.candidates
        self.leave_one_out = bool(settings.leave_one_out)
        self.lambda_mu = float(settings.lambda_mu)
        self.lambda_sigma = float(settings.lambda_sigma)
        self.exemplar_gradient = bool(settings.exemplar_gradient)
        self.cached: tuple[torch.Tensor, torch.Tensor] | None = None
        self.refuse_settings(settings)
        if self.candidates == "knn":
            self.k = int(settings.n_candidates)
            # the all-pairs search dominates a CPU epoch; the codes themselves are re-encoded
            # every epoch, only the neighbour lists may be reused for a few epochs
            self.refresh_every = int(settings.neighbour_refresh_epochs)
            self.search = settings.neighbour_search
            if not 1 <= self.k <= n_train - 2:
                raise GaeError(
                    f"run {run}: {self.variant_key('n_candidates')} = {self.k} nearest "
                    f"exemplars needs 1 <= n_candidates <= n_train - 2 = {n_train - 2}; lower it"
                )

    def refuse_settings(self, settings: GaeSettings) -> None:
        """Raise GaeError for a setting this E-step cannot honour."""

    def start_epoch(self, model: GenerativeModel, x_train: torch.Tensor, epoch: int) -> None:
        """The warm-up weight; knn: re-encode the exemplars and, every ``refresh_every`` epochs
        (1, 1 + E, 1 + 2E, ...), search every image's nearest exemplars by encoder mean."""
        super().start_epoch(model, x_train, epoch)
        if self.candidates == "knn":
            means, logvars = model.encode_all(x_train)
            if self.neighbours is None or (epoch - 1) % self.refresh_every == 0:
                self.neighbours = self.search_neighbours(means, epoch)
            # posterior E-step: the prior's components for this epoch (the M-step of p(z))
            self.cached = (means, logvars)

    def search_neighbours(self, means: torch.Tensor, epoch: int) -> torch.Tensor:
        """Every image's k nearest exemplars by encoder mean: all pairs, or, on a CPU, within
        k-means cells seeded by the epoch: a FAISS inverted file (``ivf``) or cell by cell
        with matrix products (``cells``)."""
        if self.search == "ivf" and means.device.type == "cpu":
            return ivf_nearest_exemplars(means, self.k, seed=epoch)
        if self.search == "cells" and means.device.type == "cpu":
            return cell_nearest_exemplars(means, self.k, seed=epoch)
        return nearest_exemplars(means, self.k)


class GaeSampledObjective(GaeObjective):
    """The slides' Monte-Carlo EM: z drawn from every candidate's q(z|x_j), responsibilities
    over the candidates (the minibatch, or the minibatch plus each image's k neighbours)."""

    def refuse_settings(self, settings: GaeSettings) -> None:
        if self.warmup:
            raise GaeError(
                f"run {self.run}: warmup_epochs applies to the VAE and to the GAE's posterior "
                f"E-step (its bound has a KL part to scale); set "
                f"{self.variant_key('warmup_epochs')}: 0 or e_step: posterior"
            )
        if settings.prior_variance != "posterior":
            raise GaeError(
                f"run {self.run}: prior_variance {settings.prior_variance!r} needs a GAE with "
                f"e_step: posterior (the sampled E-step draws z from each q(z|x_j) itself); "
                f"set {self.variant_key('prior_variance')}: posterior"
            )
        if self.exemplar_gradient:
            _refuse_exemplar_gradient(self)

    def __call__(
        self, model: GenerativeModel, x_train: Tensor, index: Tensor, generator: Generator
    ) -> ObjectiveTerms:
        x = gather_rows(x_train, index)
        options = {
            "n_z": self.n_z,
            "leave_one_out": self.leave_one_out,
            "lambda_mu": self.lambda_mu,
            "lambda_sigma": self.lambda_sigma,
        }
        if self.candidates == "knn":
            nb = gather_rows(self.neighbours, index)  # (B, k)
            in_batch = (nb[:, :, None] == index[None, None, :]).any(dim=1)  # (B, B)
            return gae_knn_objective(
                model,
                x,
                gather_rows(x_train, nb),
                in_batch,
                self.n_train,
                generator=generator,
                **options,
            )
        return gae_objective(model, x, self.n_train, generator=generator, **options)


class GaePosteriorObjective(GaeObjective):
    """Variational EM: z from the image's own q(z|x_i), the leave-one-out exemplar prior over
    the minibatch or the k nearest exemplars (``gae.objectives.gae_posterior_objective``)."""

    def refuse_settings(self, settings: GaeSettings) -> None:
        if self.exemplar_gradient and self.candidates != "knn":
            _refuse_exemplar_gradient(self)
        if not self.leave_one_out:
            raise GaeError(
                f"run {self.run}: e_step 'posterior' is always leave-one-out (with its own "
                f"component in the prior an image pays at most log n for any code, and the "
                f"encoder collapses); set {self.variant_key('leave_one_out')}: true"
            )

    def _log_prior(self, model: GenerativeModel, x_train: torch.Tensor, index: torch.Tensor):
        """log p(z) for the posterior E-step: in-batch or nearest exemplars, with the model's
        component variances (the encoder's own, or the shared unit / learned one). The nearest
        exemplars' encodings come from the epoch's cache (no gradient) or, with
        ``exemplar_gradient`` (Exemplar VAE, Norouzi et al. 2020), from encoding their images
        now, so that the prior's gradient reaches the encoder through the exemplars too."""
        if self.candidates != "knn":
            return lambda z, mu, logvar: batch_exemplar_log_prior(
                z, mu, model.component_logvar(logvar)
            )
        nb = gather_rows(self.neighbours, index)  # (B, k)
        if self.exemplar_gradient:
            mu_nb, logvar_nb = model.encode(gather_rows(x_train, nb.reshape(-1)))
            means_nb = mu_nb.reshape(*nb.shape, -1)
        else:
            means, logvars = self.cached
            means_nb = gather_rows(means, nb)
        n_train = self.n_train
        shared = model.shared_component_logvar(means_nb)
        if shared is not None:  # unit or learned shared variance: the d-wide kernel
            return lambda z, mu, logvar: shared_variance_neighbour_log_prior(
                z, means_nb, shared, n_train
            )
        # the slides' components: each exemplar's own encoder variance
        if self.exemplar_gradient:
            logvars_nb = logvar_nb.reshape(*nb.shape, -1)
        else:
            logvars_nb = gather_rows(logvars, nb)
        return lambda z, mu, logvar: neighbour_exemplar_log_prior(z, means_nb, logvars_nb, n_train)

    def __call__(
        self, model: GenerativeModel, x_train: Tensor, index: Tensor, generator: Generator
    ) -> ObjectiveTerms:
        return gae_posterior_objective(
            model,
            gather_rows(x_train, index),
            self._log_prior(model, x_train, index),
            n_z=self.n_z,
            lambda_mu=self.lambda_mu,
            lambda_sigma=self.lambda_sigma,
            generator=generator,
            prior_weight=self.prior_weight,
        )


# kind, or "gae-" + e_step for the GAE -> its objective
OBJECTIVES: dict[str, type[VariantObjective]] = {
    "vae": VaeObjective,
    "vamp": VampObjective,
    "gae-sampled": GaeSampledObjective,
    "gae-posterior": GaePosteriorObjective,
}


def make_objective(kind: str, settings: Variant, n_train: int, run: str) -> VariantObjective:
    """The registered objective of a variant (``OBJECTIVES``): its kind, and a GAE's e_step."""
    key = f"gae-{settings.e_step}" if isinstance(settings, GaeSettings) else kind
    if key not in OBJECTIVES:
        raise GaeError(
            f"run {run}: no training objective for kind {kind!r} with these settings ({key}); "
            f"use one of {', '.join(OBJECTIVES)} (models.<variant>.kind and e_step)"
        )
    return OBJECTIVES[key](settings, n_train, run)


def _refuse_exemplar_gradient(objective: GaeObjective) -> None:
    raise GaeError(
        f"run {objective.run}: exemplar_gradient: true applies to a GAE with e_step: posterior "
        f"and candidates: knn (in-batch exemplars and the sampled E-step's neighbours are "
        f"encoded with gradient already); set {objective.variant_key('exemplar_gradient')}: "
        f"false"
    )


def initialise_pseudo_inputs(
    model: GenerativeModel, settings: VampSettings, x_train: torch.Tensor, seed: int
) -> None:
    """The VampPrior's pseudo-inputs before the first step, by ``pseudo_inputs_init``:
    ``random``: N(pseudo_inputs_mean, pseudo_inputs_std^2) per pixel (the recipe's default for
    static MNIST, 0.05 and 0.01); ``training``: K distinct training images drawn at random, plus
    N(0, pseudo_inputs_std^2) noise (the recipe's alternative; it takes the first K images)."""
    how = settings.pseudo_inputs_init
    std = float(settings.pseudo_inputs_std)
    gen = torch.Generator().manual_seed(derive_seed(seed, "pseudo-inputs"))
    prior = model.prior
    if how == "random":
        prior.initialise(float(settings.pseudo_inputs_mean), std, generator=gen)
        return
    if prior.n_pseudo_inputs > x_train.shape[0]:
        raise GaeError(
            f"pseudo_inputs_init: training needs n_pseudo_inputs ({prior.n_pseudo_inputs}) <= "
            f"the number of training images ({x_train.shape[0]}); lower it or use random"
        )
    pick = torch.randperm(x_train.shape[0], generator=gen)[: prior.n_pseudo_inputs]
    prior.initialise(std=std, images=x_train[pick.to(x_train.device)], generator=gen)


@torch.no_grad()
def validation_elbo(
    model: GenerativeModel,
    x_train: torch.Tensor,
    x_valid: torch.Tensor,
    generator: torch.Generator,
    batch_size: int = 500,
) -> float:
    """Mean ELBO on x_valid under the model's own prior (GAE: exact over all of x_train)."""
    was_training = model.training
    model.eval()
    if model.kind == "gae":
        model.set_exemplar_prior(x_train)
    total = 0.0
    for start in range(0, x_valid.shape[0], batch_size):
        xb = x_valid[start : start + batch_size]
        total += elbo_with_prior(model, xb, model.prior, generator=generator).sum().item()
    model.train(was_training)
    return total / x_valid.shape[0]


def _normalise_gradients(model: torch.nn.Module) -> None:
    """Each parameter tensor's gradient divided by its L2 norm (+ 1e-7): the VampPrior recipe's
    AdamNormGrad, which feeds Adam unit-norm gradients per tensor (``train.optimizer:
    adam_normgrad``), so that every step weighs the same in Adam's moment estimates whatever the
    size of its gradient (a rare huge gradient cannot dominate them)."""
    for param in model.parameters():
        if param.grad is not None:
            param.grad.div_(param.grad.norm() + 1e-7)


# ---- the run's identity ----------------------------------------------------------------------


def _file_sha256(path: Path, run: str) -> str:
    if not path.is_file():
        raise GaeError(f"run {run}: --init-from {path} does not exist; train that run first")
    return file_sha256(path)


def _fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def old_run_fingerprint_shims(parts: dict[str, Any]) -> dict[str, Any]:
    """``parts`` (every setting a checkpoint must match) in the form runs trained before three
    settings existed recorded it, so that their checkpoints still resume.

    Each shim leaves a field out at the one value those runs had, and only there:
    - the GAE variant keys of ``_old_gae_settings``;
    - ``settings.n_z`` of a VAE at 1: VAEs ignored ``n_z`` until it applied to them;
    - ``optimizer`` at ``adam``: runs from before ``train.optimizer``;
    - ``lr_decay`` at None (a constant rate): runs from before ``train.lr_schedule``.
    (Likewise, ``architecture`` holds ``prior_variance`` and ``model.layer`` only when they are
    not the slides' ``posterior`` and ``dense``; that dict is also what model.pt stores, so it is
    built that way in ``Trainer._architecture`` and ``gae.models.architecture_from_config``.)
    Removing a shim refuses those runs' checkpoints ("made with other settings") until they are
    retrained with --restart; nothing else depends on them.
    """
    out = dict(parts)
    if parts["kind"] == "vae" and int(parts["settings"]["n_z"]) == 1:
        out["settings"] = {k: v for k, v in parts["settings"].items() if k != "n_z"}
    if parts["kind"] == "gae":
        out["settings"] = _old_gae_settings(parts["settings"])
    if parts["optimizer"] == "adam":
        del out["optimizer"]
    if parts["lr_decay"] is None:
        del out["lr_decay"]
    return out


# with the sampled E-step / batch candidates these keys do nothing (warmup_epochs must be 0)
_SAMPLED_ONLY_ZERO = ("warmup_epochs",)
_KNN_ONLY = ("n_candidates", "neighbour_refresh_epochs", "neighbour_search")


def _old_gae_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A GAE variant's settings as its fingerprint recorded them when a variant could leave keys
    out (params.yaml's gae-slides listed 7 of its 13 keys, gae-exemplar had no
    neighbour_search, gae no exemplar_gradient): each key below is left out at the value the
    code then fell back on, where it was absent, so those runs' checkpoints still resume:
    - ``exemplar_gradient`` false and ``prior_variance`` posterior (as in the architecture);
    - with ``candidates: batch``, the knn-only keys (they do nothing there);
    - with ``e_step: sampled``, ``warmup_epochs`` (it must be 0 there);
    - with ``exemplar_gradient`` true, ``neighbour_search`` exact (gae-exemplar's runs)."""
    drop = set()
    if not settings["exemplar_gradient"]:
        drop.add("exemplar_gradient")
    elif settings["neighbour_search"] == "exact":
        drop.add("neighbour_search")
    if settings["prior_variance"] == "posterior":
        drop.add("prior_variance")
    if settings["candidates"] == "batch":
        drop.update(_KNN_ONLY)
    if settings["e_step"] == "sampled" and not settings["warmup_epochs"]:
        drop.update(_SAMPLED_ONLY_ZERO)
    return {k: v for k, v in settings.items() if k not in drop}


@dataclass(frozen=True)
class TrainSettings:
    """The ``train.*`` keys the loop reads, converted (``lr`` and ``grad_clip_norm`` also as
    configured: the fingerprint records them unconverted)."""

    epochs: int
    batch_size: int
    patience: int
    lr: float
    lr_setting: Any  # train.lr as configured (the fingerprint records it unconverted)
    clip_norm: Any  # train.grad_clip_norm as configured (None: no clipping)
    optimizer: str
    lr_decay: dict[str, Any] | None
    validate_every: int  # the validation bound every V epochs and at the last
    # train.compile: False (eager), True (torch.compile, mode "default") or "reduce-overhead"
    # (CUDA graphs); see ``_compile_model``
    compile: bool | str

    @classmethod
    def from_config(cls, train: TrainSection) -> TrainSettings:
        return cls(
            epochs=int(train.epochs),
            batch_size=int(train.batch_size),
            patience=int(train.patience),
            lr=float(train.lr),
            lr_setting=train.lr,
            clip_norm=train.grad_clip_norm,
            optimizer=train.optimizer,
            lr_decay=schedule_settings(train),
            validate_every=int(train.validate_every),
            compile=train.compile,
        )

    @property
    def clip_limit(self) -> float | None:
        return None if self.clip_norm is None else float(self.clip_norm)


@dataclass(frozen=True)
class RunFiles:
    """Where one training writes: the run's own names, or a restart's temporary ones."""

    checkpoint: Path
    log: Path
    model: Path

    @classmethod
    def in_folder(cls, folder: Path, restart: bool) -> RunFiles:
        if restart:
            return cls(
                folder / RESTART_CHECKPOINT_NAME, folder / RESTART_LOG_NAME, folder / MODEL_NAME
            )
        return cls(folder / CHECKPOINT_NAME, folder / LOG_NAME, folder / MODEL_NAME)

    @property
    def is_restart(self) -> bool:
        return self.checkpoint.name == RESTART_CHECKPOINT_NAME


# ---- the GPU path: no per-step host synchronisation, fused Adam, opt-in compile ---------------


class StepLog:
    """One epoch's per-step numbers, kept on the device until the epoch ends.

    Row ``s - 1`` of ``rows`` holds step s's loss, its pre-clip gradient norm (with clipping
    only) and the minibatch sums of the objective and of each logged part, in the dtype they
    were computed in (float32), so that ``read`` returns exactly what a per-step ``.item()``
    returned. ``sums`` then adds them up in step order in Python floats (float64), the
    arithmetic the per-step loop did, so the logged means are bit-identical to it.
    """

    def __init__(self, n_steps: int) -> None:
        self.n_steps = n_steps
        self.rows: Tensor | None = None  # allocated at the first step (its columns, device, dtype)
        self.names: list[str] = []  # the sums' names after the loss (and norm) columns
        self.sizes: list[int] = []  # minibatch sizes (host-side: shapes need no sync)
        self.clipped = False

    def add(
        self,
        step: int,
        size: int,
        loss: Tensor,
        norm: Tensor | None,
        terms: ObjectiveTerms,
    ) -> None:
        """Write step ``step``'s row (device-side copies only)."""
        values = [loss.detach()] + ([norm] if norm is not None else [])
        values += [terms.objective.sum(), *(value.sum() for value in terms.parts.values())]
        row = torch.stack(values)
        if self.rows is None:
            self.rows = row.new_empty((self.n_steps, row.shape[0]))
            self.names = ["train_objective", *terms.parts]
            self.clipped = norm is not None
        self.rows[step - 1] = row
        self.sizes.append(size)

    def read(self, upto: int | None = None) -> list[list[float]]:
        """The rows of the first ``upto`` steps (all by default) as Python floats: ONE
        device-to-host copy."""
        if self.rows is None:
            return []
        return self.rows[: self.n_steps if upto is None else upto].tolist()

    def sums(self, rows: list[list[float]], limit: float | None) -> dict[str, float]:
        """Per-image sums over the epoch (``Trainer.record`` divides by n): ``grad_norm`` and
        ``clipped_share`` (with clipping), ``train_objective`` and the parts, in that order
        (train_log.csv's columns)."""
        sums: dict[str, float] = {}
        for row, size in zip(rows, self.sizes, strict=True):
            values = iter(row[1:])
            if self.clipped:
                norm = next(values)
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + norm * size
                sums["clipped_share"] = sums.get("clipped_share", 0.0) + float(norm > limit) * size
            for name, value in zip(self.names, values, strict=True):
                sums[name] = sums.get(name, 0.0) + value
        return sums


def _make_adam(params: Any, lr: float) -> torch.optim.Adam:
    """Adam, fused: one kernel for all parameters, on CUDA and on the CPU alike.

    On one idle CPU thread torch's default (a loop over the tensors) took 3.1-10.1 ms per
    step for the VAE's parameters at depths 1-4, the fused kernel 0.9-2.6 ms: 11-14 % of the
    step (``benchmarks/bench_optimizer.py``). The same update, rounded differently
    (parameters within 9e-8 after 151 identical steps), so CPU runs trained before
    2026-12-02 are not bit-identical to new ones. A resumed run keeps the variant its
    checkpoint was made with (``load_state_dict`` restores the param group's ``fused``), so a
    resume is bit-identical on the device that made the checkpoint."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def _normalise_gradients_foreach(model: torch.nn.Module) -> None:
    """``_normalise_gradients`` in three multi-tensor kernels instead of two per tensor (CUDA:
    the per-tensor loop is launch-bound). The same arithmetic, grad / (||grad|| + 1e-7); the
    norms' reduction order may differ from ``Tensor.norm`` in the last bit."""
    grads = [param.grad for param in model.parameters() if param.grad is not None]
    if not grads:
        return
    norms = torch._foreach_norm(grads)
    torch._foreach_add_(norms, 1e-7)
    torch._foreach_div_(grads, norms)


COMPILE_RECOMPILE_LIMIT = 64  # static shapes: one graph per input shape and grad mode


def _compile_model(model: GenerativeModel, setting: bool | str, device: torch.device) -> bool:
    """``train.compile``: torch.compile the networks every objective calls, in place
    (``nn.Module.compile``: parameters, state_dict keys, checkpoints and model.pt unchanged).

    Compiled: the encoder (the VampPrior encodes its pseudo-inputs with it too) and the
    decoder's MLP, forward and backward. Eager: the noise draws (they use the run's generator,
    which dynamo does not trace) and the objectives' arithmetic. ``True`` is mode "default";
    ``"reduce-overhead"`` adds CUDA graphs (on CUDA; on the CPU it is the default mode).
    Shapes are static (``dynamic=False``): every input shape gets its own graph, whatever order
    the shapes come in, so a resumed process compiles the same graphs as an uninterrupted one.
    Numerics: Inductor fuses and vectorises elementwise ops (tanh, softplus, exp), which round
    differently from eager kernels, so a compiled run is not bit-identical to an eager one (the
    fingerprint records ``compile``). Returns whether steps must be marked for CUDA graphs."""
    if not setting:
        return False
    mode = "reduce-overhead" if setting == "reduce-overhead" else "default"
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the name differs across versions
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), COMPILE_RECOMPILE_LIMIT))
    model.encoder.compile(mode=mode, dynamic=False)
    net = getattr(model.decoder, "net", None)
    if isinstance(net, torch.nn.Module):
        net.compile(mode=mode, dynamic=False)
    return mode == "reduce-overhead" and device.type == "cuda"


# ---- the trainer -------------------------------------------------------------------------------


class Trainer:
    """One run's training, in steps: setup (here), ``restore``, ``train_epoch`` (of
    ``train_step``), ``validate``, ``schedule``, ``save_checkpoint`` and ``finalise``;
    ``train`` runs them. Build one per run and call ``train`` once."""

    def __init__(
        self, cfg: Config, run: str, restart: bool = False, init_from: Path | None = None
    ) -> None:
        self.cfg, self.run, self.restart = cfg, run, restart
        self.init_from = None if init_from is None else Path(init_from)
        self.spec = run_spec(cfg, run)
        self.settings = model_settings(cfg, self.spec)
        self.kind = self.settings.kind
        self.train_cfg = TrainSettings.from_config(cfg.train)
        if cfg.train.num_threads:
            torch.set_num_threads(int(cfg.train.num_threads))
        self.device = resolve_device(cfg)
        self.eval_batch = int(cfg.evaluation.batch_size)
        self._load_data()
        self.folder = run_dir(cfg, run)
        self.files = RunFiles.in_folder(self.folder, restart)
        self.seed = derive_seed(cfg.seed, run)
        self.architecture = self._architecture()
        self.fingerprint = _fingerprint(old_run_fingerprint_shims(self._fingerprint_parts()))
        self.objective = make_objective(self.kind, self.settings, self.n_train, run)
        self.baseline = trivial_log_likelihood(  # once, on the CPU (float64: 2x the data)
            *(torch.as_tensor(np.asarray(self.data[k])) for k in ("x_train", "x_valid")),
            self.architecture["likelihood"],
            self.architecture["gaussian_std_min"],
        )
        self._build()

    def _load_data(self) -> None:
        self.data = load_training_data(self.cfg, self.spec.dataset)
        self.x_train, self.x_valid = (
            torch.as_tensor(np.asarray(self.data[key], dtype=np.float32), device=self.device)
            for key in ("x_train", "x_valid")
        )
        self.n_train = self.x_train.shape[0]
        if self.kind == "gae" and self.n_train < 2:
            raise GaeError(
                f"run {self.run}: the GAE needs at least 2 training images, got {self.n_train}"
            )

    def _architecture(self) -> dict[str, Any]:
        spec, settings = self.spec, self.settings
        architecture = architecture_from_config(
            self.cfg, spec.dataset, spec.depth, spec.latent_dim, self.x_train.shape[1]
        )
        if isinstance(settings, GaeSettings) and settings.prior_variance != "posterior":
            architecture["prior_variance"] = settings.prior_variance  # posterior: the slides'
        if isinstance(settings, VampSettings):  # load_model rebuilds the prior from this
            architecture["n_pseudo_inputs"] = int(settings.n_pseudo_inputs)
        return architecture

    def _fingerprint_parts(self) -> dict[str, Any]:
        """Everything a resumed checkpoint must have been made with (``validate_every`` only
        when it is not 1, so that the runs made before it existed keep their fingerprints)."""
        train = self.train_cfg
        parts = {
            "kind": self.kind,
            "architecture": self.architecture,
            "settings": variant_to_dict(self.settings),
            "seed": self.cfg.seed,
            "lr": train.lr_setting,
            "grad_clip_norm": train.clip_norm,
            "optimizer": train.optimizer,
            "batch_size": train.batch_size,
            "lr_decay": train.lr_decay,
            "data_sha256": [
                hashlib.sha256(np.ascontiguousarray(self.data[key]).tobytes()).hexdigest()
                for key in ("x_train", "x_valid")
            ],
        }
        if train.validate_every != 1:
            parts["validate_every"] = train.validate_every
        if train.compile:  # Inductor's kernels round differently from eager ones (_compile_model)
            parts["compile"] = train.compile
        if self.init_from is not None:  # a continuation is made from these exact weights
            parts["init_from_sha256"] = _file_sha256(self.init_from, self.run)
        return parts

    def _build(self) -> None:
        """Fresh state: seeds, model, optimizer, scheduler and the loop's generators (a resumed
        run then replaces them from its checkpoint). The order fixes every random draw."""
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)  # noqa: NPY002
        torch.manual_seed(self.seed)
        self.model = build_model(self.kind, self.architecture, meta={}).to(self.device)
        if self.kind == "vamp":  # before the optimizer and any resume, which then overwrites it
            initialise_pseudo_inputs(self.model, self.settings, self.x_train, self.seed)
        self.optimizer = _make_adam(self.model.parameters(), self.train_cfg.lr)
        self.scheduler = make_scheduler(
            self.optimizer, self.train_cfg.lr_decay, self.train_cfg.validate_every
        )
        self.noise_gen = torch.Generator(device=self.device).manual_seed(
            derive_seed(self.seed, "noise")
        )
        self.perm_gen = torch.Generator().manual_seed(derive_seed(self.seed, "permutation"))
        self.state: dict[str, Any] = {
            "epoch": 0,
            "best": None,  # {"epoch", "valid", "weights"}
            "epochs_since_best": 0,
            "stopped": False,
            "log_rows": [],
        }
        # train.compile: after the optimizer (compiling changes no parameter); CUDA graphs need
        # each step marked as a new iteration (train_step)
        self.cudagraphs = _compile_model(self.model, self.train_cfg.compile, self.device)

    # ---- restore ----

    def restore(self) -> None:
        """Resume from the run's checkpoint, if any. A restart starts afresh (dropping the files
        of an earlier, unfinished restart); a plain run first resumes an unfinished restart of
        the same settings, then the run's own checkpoint, refusing one of other settings."""
        pending = RunFiles.in_folder(self.folder, restart=True)
        if self.restart:
            pending.checkpoint.unlink(missing_ok=True)
            pending.log.unlink(missing_ok=True)
            return
        if pending.checkpoint.exists():
            ckpt = self._read_checkpoint(pending.checkpoint)
            if self._matches(ckpt):
                self.files = pending
                self._load_checkpoint(ckpt)
                return
        if self.files.checkpoint.exists():
            ckpt = self._read_checkpoint(self.files.checkpoint)
            if not self._matches(ckpt):
                raise StaleCheckpointError(
                    f"run {self.run}: checkpoint {self.files.checkpoint} was made with other "
                    f"settings (architecture, variant, seed, lr or its schedule, batch size or "
                    f"data); re-run with --restart to start afresh"
                )
            self._load_checkpoint(ckpt)

    def _read_checkpoint(self, path: Path) -> dict[str, Any]:
        try:
            return torch.load(path, map_location=self.device, weights_only=False)
        except Exception as exc:
            raise StaleCheckpointError(
                f"run {self.run}: checkpoint {path} is unreadable ({exc}); "
                f"re-run with --restart to start afresh"
            ) from exc

    def _matches(self, ckpt: Any) -> bool:
        return (
            isinstance(ckpt, dict)
            and ckpt.get("version") == CHECKPOINT_VERSION
            and ckpt.get("fingerprint") == self.fingerprint
        )

    def _load_checkpoint(self, ckpt: dict[str, Any]) -> None:
        load_trained_weights(self.model, ckpt["weights"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        _set_rng_states(ckpt["rng"], self.noise_gen, self.perm_gen)
        self.state = ckpt["state"]
        best = self.state["best"]
        restore_scheduler(
            self.scheduler,
            ckpt.get("scheduler"),  # absent in checkpoints from before the torch schedulers
            self.state["epoch"],
            None if best is None else best["valid"],
            self.state["epochs_since_best"],
        )
        if ckpt.get("neighbours") is not None:  # the lists a refresh interval is still reusing
            self.objective.neighbours = ckpt["neighbours"].to(self.device)
        log.info(
            "run %s: resuming after epoch %d from %s",
            self.run,
            self.state["epoch"],
            self.files.checkpoint,
        )

    def start_from(self, path: Path) -> None:
        """A continuation (``gae train --init-from``): this run starts from another run's trained
        weights (more epochs, another schedule) with a fresh optimizer, schedule and early
        stopping. The model must be of this run and of the same architecture."""
        source = load_model(path, device=self.device)
        made_for = (source.kind, source.meta.get("run"))  # meta: what `gae train` wrote
        if made_for != (self.kind, self.run):
            raise GaeError(
                f"run {self.run}: --init-from {path} is a {made_for[0]} model of run "
                f"{made_for[1]!r}, not a {self.kind} model of {self.run!r}"
            )
        if source.architecture != self.architecture:
            differ = sorted(
                key
                for key in {*source.architecture, *self.architecture}
                if source.architecture.get(key) != self.architecture.get(key)
            )
            raise GaeError(
                f"run {self.run}: --init-from {path} has another architecture ({', '.join(differ)} "
                f"differ); a continuation changes the training, not the model"
            )
        load_trained_weights(self.model, trained_weights(source, device=self.device))
        log.info("run %s: starting from the weights of %s", self.run, path)

    # ---- one epoch ----

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set in a fresh random order; the per-image sums of the
        objective and its logged parts.

        No step waits for the device: each writes its loss, gradient norm and term sums into a
        row of a device tensor (``StepLog``), read back ONCE at the end of the epoch. There the
        non-finite guard finds the first bad step (the epoch is then never recorded, so the last
        checkpoint stays) and the sums are added on the host in step order, exactly as a
        per-step ``.item()`` loop added them, so train_log.csv is bit-identical to it.
        x_train, x_valid and the knn lists live on the device for the whole run; the permutation
        is drawn by the CPU generator ``perm_gen`` (the same order on every device; its state is
        in the checkpoint) and copied to the device once per epoch, with its minibatches."""
        self.objective.start_epoch(self.model, self.x_train, epoch)
        self.model.train()
        perm = torch.randperm(self.n_train, generator=self.perm_gen).to(self.device)
        batches = _batches(perm, self.train_cfg.batch_size)
        steps = StepLog(len(batches))
        bar = tqdm(batches, desc=f"{self.run} epoch {epoch}/{self.train_cfg.epochs}", leave=False)
        step = 0
        try:
            for step, index in enumerate(bar, start=1):
                self.train_step(index, epoch, step, steps)
        except Exception:
            # a step that failed after a non-finite one (NaN weights): report the first cause
            self._raise_if_non_finite(steps.read(upto=step - 1), epoch)
            raise
        finally:
            bar.close()
        rows = steps.read()  # the epoch's one host synchronisation
        self._raise_if_non_finite(rows, epoch)
        return steps.sums(rows, self.train_cfg.clip_limit)

    def train_step(self, index: torch.Tensor, epoch: int, step: int, steps: StepLog) -> None:
        """One optimiser step on minibatch ``index``; its loss, pre-clip gradient norm and term
        sums go to row ``step`` of ``steps``, on the device: nothing here waits for it (the
        guard and the sums are read once per epoch, ``train_epoch``)."""
        if self.cudagraphs:  # train.compile: reduce-overhead, one CUDA-graph iteration per step
            torch.compiler.cudagraph_mark_step_begin()
        terms = self.objective(self.model, self.x_train, index, self.noise_gen)
        loss = -terms.surrogate.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        limit = self.train_cfg.clip_limit
        norm = None
        if limit is not None:  # logged: the mean pre-clip norm and the share clipped
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit)
        if self.train_cfg.optimizer == "adam_normgrad":
            if self.device.type == "cuda":
                _normalise_gradients_foreach(self.model)
            else:  # the CPU keeps the per-tensor loop (its numerics)
                _normalise_gradients(self.model)
        self.optimizer.step()
        steps.add(step, index.shape[0], loss, norm, terms)

    def _raise_if_non_finite(self, rows: list[list[float]], epoch: int) -> None:
        """TrainingError naming the epoch, the FIRST step whose objective was not finite and its
        value, if any (rows from ``StepLog.read``; column 0 is the step's loss)."""
        for step, row in enumerate(rows, start=1):
            if not math.isfinite(row[0]):
                raise TrainingError(
                    f"run {self.run}: the training objective became {row[0]} at epoch {epoch}, "
                    f"step {step}; {self._kept()}; lower train.lr or check the data"
                )

    def _kept(self) -> str:
        """What a failed epoch leaves behind, for its error message."""
        if self.files.is_restart:
            so_far = (
                f" (this restart's log so far: {self.files.log})" if self.state["epoch"] else ""
            )
            return (
                f"the previous run's {MODEL_NAME}, {CHECKPOINT_NAME} and {LOG_NAME} in "
                f"{self.folder} are kept as they were{so_far}"
            )
        if self.state["epoch"] == 0:
            return "no checkpoint or model was written"
        return (
            f"the last good checkpoint ({self.files.checkpoint}, epoch {self.state['epoch']}) "
            f"is kept"
        )

    # ---- validate ----

    def validates(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` computes the validation bound: every ``validate_every``
        epochs and always the last one, so the final model is chosen among validated epochs."""
        return epoch % self.train_cfg.validate_every == 0 or epoch == self.train_cfg.epochs

    def validate(self, epoch: int) -> float:
        """The epoch's validation ELBO; stops a run whose bound is non-finite or implausible.

        Implausible (the divergence guard): more than ``DIVERGENCE_MARGIN`` nats per pixel
        below the trivial model of the training set (``gae.objectives.trivial_log_likelihood``:
        the per-pixel mean image for Bernoulli decoders, per-pixel mean and std for Gaussian
        ones). Clipping and Adam keep a diverged run's objective finite (lr 1e3 gave -6.9e8
        nats on MNIST), so finiteness alone would save it as a model.
        """
        valid_gen = torch.Generator(device=self.device).manual_seed(
            derive_seed(self.seed, "valid", str(epoch))
        )
        valid = validation_elbo(self.model, self.x_train, self.x_valid, valid_gen, self.eval_batch)
        if not math.isfinite(valid):
            raise TrainingError(
                f"run {self.run}: the validation ELBO became {valid} at epoch {epoch}; "
                f"{self._kept()}; lower train.lr"
            )
        pixels = self.x_valid.shape[1]
        if self.baseline is not None and valid < self.baseline - DIVERGENCE_MARGIN * pixels:
            raise TrainingError(
                f"run {self.run}: the validation ELBO {valid:.2f} at epoch {epoch} is "
                f"implausible: worse than the trivial model's {self.baseline:.2f} (each pixel "
                f"independent, at its training-set mean) by more than {DIVERGENCE_MARGIN:g} nats "
                f"per pixel ({pixels} pixels), so training has diverged and no model is saved; "
                f"{self._kept()}. Lower train.lr (now {self.train_cfg.lr:g}) and re-run with "
                f"--restart"
            )
        return valid

    def record(
        self, epoch: int, valid: float | None, sums: dict[str, float], seconds: float
    ) -> None:
        """Append the epoch's row to the log (train_log.csv's columns; an epoch that was not
        validated leaves valid_objective empty)."""
        n = self.n_train
        row: dict[str, Any] = {"epoch": epoch, "train_objective": sums["train_objective"] / n}
        row["valid_objective"] = valid
        row["seconds"] = round(seconds, 3)
        if self.scheduler is not None:
            row["lr"] = self.optimizer.param_groups[0]["lr"]
        if self.objective.warmup:
            row["prior_weight"] = self.objective.prior_weight
        row.update({k: v / n for k, v in sums.items() if k != "train_objective"})
        if self.model.prior_logvar is not None:  # the learned components' width, mean over dims
            prior_std = self.model.component_logvar(self.model.prior_logvar.detach())
            row["prior_std"] = prior_std.mul(0.5).exp().mean().item()
        self.state["log_rows"].append(row)
        log.info(
            "run %s epoch %d: %s",
            self.run,
            epoch,
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            ),
        )

    # ---- schedule ----

    def schedule(self, epoch: int, valid: float | None) -> None:
        """After validation: keep the best epoch's weights, stop after ``patience`` epochs
        without improvement, and let the learning-rate scheduler judge the epoch. An epoch
        without validation (``valid`` None) only counts for a fixed schedule; a validation
        without improvement adds its whole interval to the epochs since the best."""
        state = self.state
        if valid is None:
            pass
        elif state["best"] is None or valid > state["best"]["valid"]:
            state["best"] = {"epoch": epoch, "valid": valid, "weights": trained_weights(self.model)}
            state["epochs_since_best"] = 0
        else:
            state["epochs_since_best"] += self._since_last_validation(epoch)
            if state["epochs_since_best"] >= self.train_cfg.patience:
                state["stopped"] = True
                log.info(
                    "run %s: early stop after epoch %d (best %d)",
                    self.run,
                    epoch,
                    state["best"]["epoch"],
                )
        step_scheduler(self.scheduler, valid)  # the rate of the next epoch
        state["epoch"] = epoch

    def _since_last_validation(self, epoch: int) -> int:
        """Epochs since the previous validated epoch (the last epoch may come early)."""
        every = self.train_cfg.validate_every
        return epoch - (epoch - 1) // every * every

    # ---- checkpoint ----

    def save_checkpoint(self) -> None:
        """Everything a resume needs, atomically, then the log so far."""
        atomic_torch_save(
            self.files.checkpoint,
            {
                "version": CHECKPOINT_VERSION,
                "fingerprint": self.fingerprint,
                "run": self.run,
                "weights": trained_weights(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "rng": _rng_states(self.noise_gen, self.perm_gen),
                "state": self.state,
                "neighbours": self.objective.neighbours,
            },
        )
        _write_log(self.files.log, self.state["log_rows"])

    # ---- finalise ----

    def finalise(self) -> Path:
        """Save the best epoch's model as model.pt; a restart then renames its checkpoint and
        log onto the run's own names (the commit of the restart transaction)."""
        state, model = self.state, self.model
        if state["best"] is None:
            raise TrainingError(f"run {self.run}: no epoch finished; nothing to save")
        load_trained_weights(model, state["best"]["weights"])
        model.eval()
        if self.kind == "gae":
            model.set_exemplar_prior(self.x_train)
        model.meta = {
            "run": self.run,
            "config": self.cfg.to_dict(),
            "dataset": self.spec.dataset,
            "model_settings": variant_to_dict(self.settings),
            "n_train": self.n_train,
            "best_epoch": state["best"]["epoch"],
            "best_valid_elbo": state["best"]["valid"],
            "epochs_trained": state["epoch"],
        }
        save_model(model, self.files.model)
        _write_log(self.files.log, state["log_rows"])
        if self.files.is_restart:
            os.replace(self.files.log, self.folder / LOG_NAME)
            os.replace(self.files.checkpoint, self.folder / CHECKPOINT_NAME)
        log.info(
            "run %s: saved %s (best epoch %d, validation ELBO %.3f)",
            self.run,
            self.files.model,
            state["best"]["epoch"],
            state["best"]["valid"],
        )
        return self.files.model

    def train(self) -> Path:
        """Restore, train the remaining epochs (each: one epoch, validate, schedule,
        checkpoint) and finalise; returns model.pt's path."""
        hint = "remove what is in its place or set paths.results to a writable folder"
        make_folder(self.folder, "the run folder", hint)
        with folder_lock(self.folder, f"run {self.run}: the run folder"):
            self.restore()
            if self.init_from is not None and self.state["epoch"] == 0:
                self.start_from(self.init_from)
            while self.state["epoch"] < self.train_cfg.epochs and not self.state["stopped"]:
                epoch = self.state["epoch"] + 1
                started = time.perf_counter()
                sums = self.train_epoch(epoch)
                valid = self.validate(epoch) if self.validates(epoch) else None
                self.record(epoch, valid, sums, time.perf_counter() - started)
                self.schedule(epoch, valid)
                self.save_checkpoint()
            return self.finalise()


def train_run(
    cfg: Config,
    run: str,
    restart: bool = False,
    restart_if_stale: bool = False,
    init_from: Path | None = None,
) -> Path:
    """Train ``run`` (resuming from its checkpoint unless ``restart``); returns model.pt's path.

    ``restart_if_stale``: a checkpoint that cannot be resumed (unreadable, or made with other
    settings: exactly why Snakemake re-runs the job) starts the run afresh instead of failing.
    ``init_from``: another model.pt of this run to continue from (``Trainer.start_from``); its
    sha256 is part of the checkpoint's fingerprint, so a retrained source restarts this run.
    """
    try:
        return Trainer(cfg, run, restart, init_from).train()
    except StaleCheckpointError as exc:
        if restart or not restart_if_stale:
            raise
        log.warning("%s; starting run %s afresh (--restart-if-stale)", exc, run)
        return Trainer(cfg, run, True, init_from).train()
