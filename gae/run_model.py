"""Load a run's ``model.pt`` and check that it belongs to that run.

Why: a ``model.pt`` copied or left over from another run (a VAE under a GAE's name, a Frey model
in an MNIST run) loads without complaint, and every command downstream would then file its
numbers under the wrong name. So every command that reads a run's model goes through
``load_run_model``, which compares what the file says it is (run name, data set, kind, latent
size, depth, pixels) with what the run name and the configuration say it must be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gae.config import run_spec
from gae.data.sources import IMAGE_SHAPES
from gae.errors import GaeError
from gae.models import GenerativeModel, load_model
from gae.settings import Config


def expected_identity(cfg: Config, run: str) -> dict[str, Any]:
    """What a model of ``run`` must be, from its name and ``cfg`` alone."""
    spec = run_spec(cfg, run)
    shape = IMAGE_SHAPES.get(spec.dataset)
    return {
        "run": run,
        "dataset": spec.dataset,
        "kind": cfg.models[spec.model].kind,
        "latent_dim": spec.latent_dim,
        "depth": spec.depth,
        "data_dim": None if shape is None else shape[0] * shape[1],
    }


def model_identity(model: GenerativeModel) -> dict[str, Any]:
    """What a loaded model says it is (``meta`` written by ``gae train``, and its shapes)."""
    arch = model.architecture
    return {
        "run": model.meta.get("run"),
        "dataset": model.meta.get("dataset"),
        "kind": model.kind,
        "latent_dim": arch.get("latent_dim"),
        "depth": arch.get("depth"),
        "data_dim": arch.get("data_dim"),
    }


def check_model_for_run(model: GenerativeModel, cfg: Config, run: str, path: Path) -> None:
    """Raise one clear GaeError when ``model`` (read from ``path``) is not a model of ``run``."""
    want, have = expected_identity(cfg, run), model_identity(model)
    wrong = [
        f"{key} {have[key]!r} (expected {want[key]!r})"
        for key in want
        if want[key] is not None and have[key] is not None and have[key] != want[key]
    ]
    if wrong:
        raise GaeError(
            f"{path} is not a model of run {run}: its {', '.join(wrong)}. It was probably "
            f"copied from another run; delete it and re-run `gae train {run}`"
        )


def load_run_model(
    cfg: Config, run: str, path: Path, device: str | torch.device = "cpu"
) -> GenerativeModel:
    """``load_model(path)``, refused unless the model belongs to ``run``."""
    model = load_model(path, device=device)
    check_model_for_run(model, cfg, run, path)
    return model
