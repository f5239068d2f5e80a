"""Evaluation: Parzen window, importance-sampled / prior-sampled log-likelihood, memorisation.

The estimators are pure functions on tensors (and, for the log-likelihood, on any object that
satisfies the trained-model contract of docs/architecture.md); the ``*_run`` wrappers load a
run's files, call them, and write ``results/runs/{run}/*.json`` atomically.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gae.data.subsets import subset_record, take_rows
from gae.errors import GaeError
from gae.settings import Config
from gae.training import resolve_device

log = logging.getLogger(__name__)

__all__ = ["eval_rows", "mean_sem", "require_file", "resolve_device", "take_first"]


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
    """The first ``n`` rows of GENERATED samples (i.i.d. draws, so any ``n`` of them are a fair
    sample), or all of them (``None``). Never use it on a data split: see ``eval_rows``."""
    if n is None or n >= x.shape[0]:
        if n is not None and n > x.shape[0]:
            log.info("%d %s images asked for, %d prepared: using all", n, what, x.shape[0])
        return x
    return x[:n]


def eval_rows(
    cfg: Config, data: dict[str, np.ndarray], split: str, n: int | None, setting: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The ``n`` images of ``split`` an estimator scores, their rows in the prepared file, and
    the record of which they are (for the result's JSON).

    A fixed seeded random sample (``data.subset_seed``, ``gae.data.subsets``), the same for
    every run and model of the data set, never the split's first rows (the Larochelle test file
    is sorted by digit). Sizes are upper bounds shared by every data set:
    ``parzen.n_valid: 1000`` means 1,000 MNIST validation images and all 200 of Frey's.
    ``setting`` names the configuration key, for the log and the record.
    """
    seed = int(cfg.data.subset_seed)
    cut = take_rows(data, split, n, seed, setting)
    record = {"setting": setting, **subset_record(cut, split, seed)}
    return cut[f"x_{split}"], cut[f"idx_{split}"], record
