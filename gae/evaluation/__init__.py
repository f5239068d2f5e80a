"""Evaluation: Parzen window, importance-sampled / prior-sampled log-likelihood, memorisation.

The estimators are pure functions on tensors (and, for the log-likelihood, on any object that
satisfies the trained-model contract of docs/architecture.md); the ``*_run`` wrappers load a
run's files, call them, and write ``results/runs/{run}/*.json`` atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from gae.errors import GaeError
from gae.training import resolve_device

__all__ = ["mean_sem", "require_file", "resolve_device", "take_first"]


def mean_sem(values: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """Mean and standard error std/sqrt(N) (sample std, ddof=1; 0 when N = 1)."""
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
    v = v.astype(np.float64)
    if v.size == 0:
        raise ValueError("mean_sem of an empty array")
    sem = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
    return float(v.mean()), sem


def require_file(path: Path, command: str) -> Path:
    """A missing input is a user error that names the file and the command producing it."""
    if not path.is_file():
        raise GaeError(f"{path} does not exist; produce it first with `{command}`")
    return path


def take_first(x: np.ndarray, n: int | None, what: str) -> np.ndarray:
    """The first ``n`` rows (``None`` = all); asking for more rows than exist is an error."""
    if n is None:
        return x
    if n > x.shape[0]:
        raise GaeError(
            f"evaluation asks for {n} {what} images but only {x.shape[0]} are prepared; "
            f"lower the setting or prepare the full split (data.subset)"
        )
    return x[:n]
