"""The training loop shared by GAE and VAE: Adam, validation, early stopping, checkpoints, resume.

Each epoch ends with an atomically written checkpoint (model, optimizer, every RNG state, best
weights, log rows), so a run killed at any moment (even by SIGKILL) resumes from its last
finished epoch and reaches the SAME final weights as an uninterrupted run of the same seed.

Validation is the Monte-Carlo ELBO on x_valid under each model's OWN prior: N(0, I) for the VAE
and, for the GAE, the exact mixture over the encodings of ALL training images (recomputed every
epoch). Both are lower bounds on log p(x), hence comparable; early stopping keeps the best.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gae.config import model_settings, parse_run_name, run_dir, run_spec
from gae.errors import GaeError, TrainingError
from gae.io import atomic_torch_save, atomic_write_text
from gae.models import (
    GenerativeModel,
    architecture_from_config,
    build_model,
    load_trained_weights,
    save_model,
    trained_weights,
)
from gae.objectives import (
    ObjectiveTerms,
    batch_exemplar_log_prior,
    elbo_with_prior,
    gae_knn_objective,
    gae_objective,
    gae_posterior_objective,
    nearest_exemplars,
    neighbour_exemplar_log_prior,
    vae_objective,
)

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
LOG_NAME = "train_log.csv"


def derive_seed(seed: int, *names: str) -> int:
    """A seed for one purpose of one run: stable across processes (unlike ``hash``)."""
    digest = hashlib.sha256("/".join([str(seed), *names]).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def resolve_device(cfg: dict[str, Any]) -> torch.device:
    """``device: auto`` -> CUDA when available, else CPU."""
    wanted = cfg.get("device", "auto")
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise GaeError("device: cuda is set but no CUDA device is available; use device: auto")
    return torch.device(wanted)


def load_training_data(cfg: dict[str, Any], dataset: str) -> dict[str, np.ndarray]:
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


class _Objective:
    """Binds a run's variant settings to the matching objective function."""

    def __init__(self, kind: str, settings: dict[str, Any], n_train: int, run: str) -> None:
        self.kind = kind
        self.n_train = n_train
        self.candidates = settings.get("candidates", "batch") if kind == "gae" else None
        self.e_step = settings.get("e_step", "sampled") if kind == "gae" else None
        self.neighbours: torch.Tensor | None = None
        # warm-up: the KL part of the bound is scaled by epoch / warmup_epochs until it is whole
        self.warmup = int(settings.get("warmup_epochs", 0))
        self.prior_weight = 1.0
        if self.warmup and kind == "gae" and self.e_step != "posterior":
            raise GaeError(
                f"run {run}: warmup_epochs applies to the VAE and to the GAE's posterior E-step "
                f"(its bound has a KL part to scale); set models."
                f"{parse_run_name(run).model}.warmup_epochs: 0 or e_step: posterior"
            )
        shared_variance = settings.get("prior_variance", "posterior") != "posterior"
        if shared_variance and self.e_step != "posterior":
            raise GaeError(
                f"run {run}: prior_variance {settings['prior_variance']!r} needs a GAE with "
                f"e_step: posterior (the sampled E-step draws z from each q(z|x_j) itself); "
                f"remove models.{parse_run_name(run).model}.prior_variance"
            )
        self.cached: tuple[torch.Tensor, torch.Tensor] | None = None
        self.options: dict[str, Any] = {"n_z": int(settings.get("n_z", 1))}
        if kind == "gae":
            self.options |= {
                "leave_one_out": bool(settings.get("leave_one_out", False)),
                "lambda_mu": float(settings.get("lambda_mu", 0.0)),
                "lambda_sigma": float(settings.get("lambda_sigma", 0.0)),
            }
        if self.e_step == "posterior" and not self.options["leave_one_out"]:
            raise GaeError(
                f"run {run}: e_step 'posterior' is always leave-one-out (with its own component "
                f"in the prior an image pays at most log n for any code, and the encoder "
                f"collapses); set models.{parse_run_name(run).model}.leave_one_out: true"
            )
        if self.candidates == "knn":
            self.k = int(settings.get("n_candidates", 10))
            # the all-pairs search dominates a CPU epoch; the codes themselves are re-encoded
            # every epoch, only the neighbour lists may be reused for a few epochs
            self.refresh_every = int(settings.get("neighbour_refresh_epochs", 1))
            if not 1 <= self.k <= n_train - 2:
                raise GaeError(
                    f"run {run}: models.*.n_candidates = {self.k} nearest exemplars needs "
                    f"1 <= n_candidates <= n_train - 2 = {n_train - 2}; lower it"
                )

    @property
    def _posterior_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if k != "leave_one_out"}

    def _log_prior(self, model: GenerativeModel, index: torch.Tensor):
        """log p(z) for the posterior E-step: in-batch or nearest cached exemplars, with the
        model's component variances (the encoder's own, or the shared unit / learned one)."""
        if self.candidates != "knn":
            return lambda z, mu, logvar: batch_exemplar_log_prior(
                z, mu, model.component_logvar(logvar)
            )
        means, logvars = self.cached
        nb = self.neighbours[index]
        n_train = self.n_train
        return lambda z, mu, logvar: neighbour_exemplar_log_prior(
            z, means[nb], model.component_logvar(logvars[nb]), n_train
        )

    def start_epoch(self, model: GenerativeModel, x_train: torch.Tensor, epoch: int) -> None:
        """Set the warm-up weight; knn: re-encode the exemplars and, every ``refresh_every``
        epochs (1, 1 + E, 1 + 2E, ...), search every image's nearest exemplars by encoder mean."""
        self.prior_weight = min(1.0, epoch / self.warmup) if self.warmup else 1.0
        if self.candidates == "knn":
            means, logvars = model.encode_all(x_train)
            if self.neighbours is None or (epoch - 1) % self.refresh_every == 0:
                self.neighbours = nearest_exemplars(means, self.k)
            # posterior E-step: the prior's components for this epoch (the M-step of p(z))
            self.cached = (means, logvars)

    def __call__(
        self,
        model: GenerativeModel,
        x_train: torch.Tensor,
        index: torch.Tensor,
        generator: torch.Generator,
    ) -> ObjectiveTerms:
        x = x_train[index]
        if self.kind == "vae":
            return vae_objective(
                model, x, generator=generator, prior_weight=self.prior_weight, **self.options
            )
        if self.e_step == "posterior":
            return gae_posterior_objective(
                model,
                x,
                self._log_prior(model, index),
                generator=generator,
                prior_weight=self.prior_weight,
                **self._posterior_options,
            )
        if self.candidates == "knn":
            nb = self.neighbours[index]  # (B, k)
            in_batch = (nb[:, :, None] == index[None, None, :]).any(dim=1)  # (B, B)
            return gae_knn_objective(
                model, x, x_train[nb], in_batch, self.n_train, generator=generator, **self.options
            )
        return gae_objective(model, x, self.n_train, generator=generator, **self.options)


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


def _lr_decay(train_cfg: dict[str, Any]) -> dict[str, Any] | None:
    """train.lr_schedule as {factor, every} (step) or {factor, patience} (plateau); None when
    constant. This dict is what the run's fingerprint records."""
    schedule = train_cfg.get("lr_schedule", "constant")
    if schedule == "constant":
        return None
    key = "every" if schedule == "step" else "patience"
    return {
        "factor": float(train_cfg.get("lr_decay_factor", 0.5)),
        key: int(train_cfg.get("lr_decay_epochs", 5)),
    }


def _decay_due(lr_decay: dict[str, Any], epoch: int, epochs_since_best: int) -> bool:
    """Whether the learning rate steps down after this epoch: every ``every`` epochs (a fixed
    schedule), or after every ``patience`` epochs without validation improvement (a plateau)."""
    if "every" in lr_decay:
        return epoch % lr_decay["every"] == 0
    return epochs_since_best > 0 and epochs_since_best % lr_decay["patience"] == 0


def _fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def train_run(cfg: dict[str, Any], run: str, restart: bool = False) -> Path:
    """Train ``run`` (resuming from its checkpoint unless ``restart``); returns model.pt's path."""
    spec = run_spec(cfg, run)
    settings = model_settings(cfg, spec)
    kind = settings["kind"]
    train_cfg = cfg["train"]
    epochs = int(train_cfg.get("epochs", 300))
    batch_size = int(train_cfg.get("batch_size", 100))
    patience = int(train_cfg.get("patience", 30))
    clip_norm = train_cfg.get("grad_clip_norm")
    clip_limit = None if clip_norm is None else float(clip_norm)
    lr_decay = _lr_decay(train_cfg)
    if train_cfg.get("num_threads"):
        torch.set_num_threads(int(train_cfg["num_threads"]))
    device = resolve_device(cfg)

    data = load_training_data(cfg, spec.dataset)
    x_train = torch.as_tensor(np.asarray(data["x_train"], dtype=np.float32), device=device)
    x_valid = torch.as_tensor(np.asarray(data["x_valid"], dtype=np.float32), device=device)
    n_train = x_train.shape[0]
    if kind == "gae" and n_train < 2:
        raise GaeError(f"run {run}: the GAE needs at least 2 training images, got {n_train}")

    out_dir = run_dir(cfg, run)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, model_path, log_path = (
        out_dir / CHECKPOINT_NAME,
        out_dir / MODEL_NAME,
        out_dir / LOG_NAME,
    )
    seed = derive_seed(cfg["seed"], run)
    architecture = architecture_from_config(
        cfg, spec.dataset, spec.depth, spec.latent_dim, x_train.shape[1]
    )
    if settings.get("prior_variance", "posterior") != "posterior":  # absent = the slides' model
        architecture["prior_variance"] = settings["prior_variance"]
    fingerprint = _fingerprint(
        {
            "kind": kind,
            "architecture": architecture,
            # a VAE's n_z = 1 is what VAEs did before n_z applied to them: runs keep their print
            "settings": (
                {k: v for k, v in settings.items() if k != "n_z"}
                if kind == "vae" and int(settings.get("n_z", 1)) == 1
                else settings
            ),
            "seed": cfg["seed"],
            "lr": train_cfg.get("lr"),
            "grad_clip_norm": clip_norm,
            "batch_size": batch_size,
            **({"lr_decay": lr_decay} if lr_decay else {}),  # absent: older runs keep theirs
            "data_sha256": [
                hashlib.sha256(np.ascontiguousarray(data[key]).tobytes()).hexdigest()
                for key in ("x_train", "x_valid")
            ],
        }
    )

    # fresh state (also the RNG streams a resumed run replaces from its checkpoint)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)
    model = build_model(kind, architecture, meta={}).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(train_cfg.get("lr", 1e-3)))
    noise_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "noise"))
    perm_gen = torch.Generator().manual_seed(derive_seed(seed, "permutation"))
    resumed_neighbours: torch.Tensor | None = None
    state: dict[str, Any] = {
        "epoch": 0,
        "best": None,  # {"epoch", "valid", "weights"}
        "epochs_since_best": 0,
        "stopped": False,
        "log_rows": [],
    }

    if ckpt_path.exists() and not restart:
        try:
            ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        except Exception as exc:
            raise TrainingError(
                f"run {run}: checkpoint {ckpt_path} is unreadable ({exc}); "
                f"re-run with --restart to start afresh"
            ) from exc
        if ckpt.get("version") != CHECKPOINT_VERSION or ckpt.get("fingerprint") != fingerprint:
            raise TrainingError(
                f"run {run}: checkpoint {ckpt_path} was made with other settings (architecture, "
                f"variant, seed, lr or its schedule, batch size or data); re-run with --restart "
                f"to start afresh"
            )
        load_trained_weights(model, ckpt["weights"])
        optimizer.load_state_dict(ckpt["optimizer"])
        _set_rng_states(ckpt["rng"], noise_gen, perm_gen)
        state = ckpt["state"]
        resumed_neighbours = ckpt.get("neighbours")
        log.info("run %s: resuming after epoch %d from %s", run, state["epoch"], ckpt_path)

    objective = _Objective(kind, settings, n_train, run)
    if resumed_neighbours is not None:  # the lists a refresh interval is still reusing
        objective.neighbours = resumed_neighbours.to(device)
    eval_batch = int(cfg.get("evaluation", {}).get("batch_size", 500))

    while state["epoch"] < epochs and not state["stopped"]:
        epoch = state["epoch"] + 1
        started = time.perf_counter()
        objective.start_epoch(model, x_train, epoch)
        model.train()
        sums: dict[str, float] = {}
        perm = torch.randperm(n_train, generator=perm_gen).to(device)
        batches = _batches(perm, batch_size)
        bar = tqdm(batches, desc=f"{run} epoch {epoch}/{epochs}", leave=False)
        for step, index in enumerate(bar, start=1):
            terms = objective(model, x_train, index, noise_gen)
            loss = -terms.surrogate.mean()
            if not torch.isfinite(loss).item():
                raise TrainingError(
                    f"run {run}: the training objective became {loss.item()} at epoch {epoch}, "
                    f"step {step}; the last good checkpoint ({ckpt_path}, epoch "
                    f"{state['epoch']}) is kept; lower train.lr or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_limit is not None:  # logged: the mean pre-clip norm and the share clipped
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_limit).item()
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + norm * len(index)
                clipped = float(norm > clip_limit) * len(index)
                sums["clipped_share"] = sums.get("clipped_share", 0.0) + clipped
            optimizer.step()
            sums["train_objective"] = (
                sums.get("train_objective", 0.0) + terms.objective.sum().item()
            )
            for name, value in terms.parts.items():
                sums[name] = sums.get(name, 0.0) + value.sum().item()
        bar.close()

        valid_gen = torch.Generator(device=device).manual_seed(
            derive_seed(seed, "valid", str(epoch))
        )
        valid = validation_elbo(model, x_train, x_valid, valid_gen, eval_batch)
        if not math.isfinite(valid):
            raise TrainingError(
                f"run {run}: the validation ELBO became {valid} at epoch {epoch}; the last good "
                f"checkpoint ({ckpt_path}, epoch {state['epoch']}) is kept; lower train.lr"
            )
        row: dict[str, Any] = {"epoch": epoch, "train_objective": sums["train_objective"] / n_train}
        row["valid_objective"] = valid
        row["seconds"] = round(time.perf_counter() - started, 3)
        if lr_decay:
            row["lr"] = optimizer.param_groups[0]["lr"]
        if objective.warmup:
            row["prior_weight"] = objective.prior_weight
        row.update({k: v / n_train for k, v in sums.items() if k != "train_objective"})
        if model.prior_logvar is not None:  # the learned components' width, mean over dims
            prior_std = model.component_logvar(model.prior_logvar.detach()).mul(0.5).exp()
            row["prior_std"] = prior_std.mean().item()
        state["log_rows"].append(row)
        if state["best"] is None or valid > state["best"]["valid"]:
            state["best"] = {"epoch": epoch, "valid": valid, "weights": trained_weights(model)}
            state["epochs_since_best"] = 0
        else:
            state["epochs_since_best"] += 1
            if state["epochs_since_best"] >= patience:
                state["stopped"] = True
                log.info(
                    "run %s: early stop after epoch %d (best %d)",
                    run,
                    epoch,
                    state["best"]["epoch"],
                )
        if lr_decay and _decay_due(lr_decay, epoch, state["epochs_since_best"]):
            for group in optimizer.param_groups:  # resumed with the optimizer state
                group["lr"] *= lr_decay["factor"]
        state["epoch"] = epoch
        atomic_torch_save(
            ckpt_path,
            {
                "version": CHECKPOINT_VERSION,
                "fingerprint": fingerprint,
                "run": run,
                "weights": trained_weights(model),
                "optimizer": optimizer.state_dict(),
                "rng": _rng_states(noise_gen, perm_gen),
                "state": state,
                "neighbours": objective.neighbours,
            },
        )
        _write_log(log_path, state["log_rows"])
        log.info(
            "run %s epoch %d: %s",
            run,
            epoch,
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            ),
        )

    if state["best"] is None:
        raise TrainingError(f"run {run}: no epoch finished; nothing to save")
    load_trained_weights(model, state["best"]["weights"])
    model.eval()
    if kind == "gae":
        model.set_exemplar_prior(x_train)
    model.meta = {
        "run": run,
        "config": cfg,
        "dataset": spec.dataset,
        "model_settings": settings,
        "n_train": n_train,
        "best_epoch": state["best"]["epoch"],
        "best_valid_elbo": state["best"]["valid"],
        "epochs_trained": state["epoch"],
    }
    save_model(model, model_path)
    _write_log(log_path, state["log_rows"])
    log.info(
        "run %s: saved %s (best epoch %d, validation ELBO %.3f)",
        run,
        model_path,
        state["best"]["epoch"],
        state["best"]["valid"],
    )
    return model_path
