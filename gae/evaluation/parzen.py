"""Parzen-window (Gaussian KDE) test log-likelihood, the protocol of Goodfellow et al. (2014).

    log p(x) = logsumexp_j log N(x; s_j, sigma^2 I) - log m,

over the m generated samples ``s_j``. Sigma is chosen on the validation set (the first
``n_valid`` images of x_valid) over a log-spaced grid, then refined between the best grid
point's neighbours; the chosen sigma scores the test set (mean and std/sqrt(N)).

Speed. The only O(D) work is the squared distance block ``|x|^2 - 2 x s^T + |s|^2``, one
float32 matrix product (the fast path of every BLAS / GPU) per (rows x chunk) block. That ONE
block serves every sigma of the grid: a running row minimum of the squared distance is the
log-sum-exp's shift for all sigmas at once (the largest kernel is the nearest sample's), so
each sigma costs one scale-exp-sum pass over the block and nothing else. This multi-sigma
streaming log-sum-exp replaces ``gae.ops.streaming_logsumexp`` here, which would need its own
max pass and copy per sigma (measured 2-3x slower on a 20-sigma grid); the per-entry kernel is
that of ``gae.ops.pairwise_isotropic_gaussian_logpdf`` (tests compare the two).

Precision. float32 distances carry an absolute error ~1e-5 (|x|^2 ~ 100 for MNIST), which the
kernel multiplies by 1 / (2 sigma^2) <= 50 on the protocol's grid: <= ~1e-3 nats per image,
far below the ~2-nat standard error; the shift keeps every exp argument <= 0 (no overflow),
the nearest sample contributes exactly 1 (no log 0), and the running sums, rescalings and
per-image constants are float64. ``dtype=torch.float64`` gives a fully float64 path (tests, and
the benchmark's precision check). Memory is O(rows x chunk + n_sigmas x rows).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gae.evaluation import eval_rows, mean_sem, require_file, resolve_device
from gae.ops import LOG_2PI
from gae.paths import PARZEN_FILE, SAMPLES_FILE
from gae.settings import Config, ParzenSettings

log = logging.getLogger(__name__)

# most elements of one (rows, cols) distance block: 2^22 * 4 B = 16 MiB (plus one buffer).
BLOCK_ELEMENTS = 1 << 22
# exp arguments are floored here: e^-80 is still a normal float32 (denormals start at e^-87.3)
EXP_FLOOR = -80.0


def sigma_grid(log10_min: float = -1.0, log10_max: float = 0.0, num: int = 10) -> np.ndarray:
    """The protocol's grid, ``numpy.logspace(-1, 0, 10)`` by default."""
    return np.logspace(log10_min, log10_max, num)


def refine_around(grid: np.ndarray, best_index: int, refine: int) -> np.ndarray:
    """``refine`` log-spaced points strictly between the best grid point's two neighbours.

    At an edge of the grid the missing neighbour is one grid step beyond it, so an optimum just
    outside the grid can still be found.
    """
    if refine <= 0:
        return np.empty(0)
    log_grid = np.log(np.asarray(grid, dtype=np.float64))
    step = (log_grid[-1] - log_grid[0]) / max(len(log_grid) - 1, 1) if len(log_grid) > 1 else 0.5
    lo = log_grid[best_index - 1] if best_index > 0 else log_grid[best_index] - step
    hi = log_grid[best_index + 1] if best_index + 1 < len(log_grid) else log_grid[best_index] + step
    return np.exp(np.linspace(lo, hi, refine + 2)[1:-1])


def parzen_log_likelihood(
    x: torch.Tensor | np.ndarray,
    samples: torch.Tensor | np.ndarray,
    sigmas: float | list[float] | np.ndarray,
    chunk_size: int = 2000,
    device: torch.device | str | None = None,
    progress: bool = False,
    desc: str = "parzen",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-image Parzen log-likelihoods, float64 of shape (n_sigmas, N) on the CPU.

    x (N, D) and samples (m, D); every sigma reuses the same distance block. ``dtype`` is the
    precision of the distance block and the per-sigma log-sum-exp (see the module docstring);
    the per-image constants are added in float64.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    sig64 = np.atleast_1d(np.asarray(sigmas, dtype=np.float64))
    if sig64.ndim != 1 or (sig64 <= 0).any() or not np.isfinite(sig64).all():
        raise ValueError(f"sigmas must be positive and finite, got {sigmas}")
    xw = torch.as_tensor(x).to(device=device, dtype=dtype)
    sw = torch.as_tensor(samples).to(device=device, dtype=dtype)
    if xw.ndim != 2 or sw.ndim != 2 or xw.shape[1] != sw.shape[1]:
        raise ValueError(f"x {tuple(xw.shape)}, samples {tuple(sw.shape)}: need (N, D), (m, D)")
    n, d = xw.shape
    m = sw.shape[0]
    cols = max(1, min(chunk_size, m))
    rows = max(1, min(chunk_size, n, BLOCK_ELEMENTS // cols))

    s_sq = (sw * sw).sum(dim=1)  # (m,)
    scale = torch.as_tensor(-0.5 / sig64**2, dtype=dtype, device=device)  # (k,)
    log_norm = torch.as_tensor(-d * (np.log(sig64) + 0.5 * LOG_2PI) - math.log(m))  # float64

    out = torch.empty(sig64.shape[0], n, dtype=torch.float64)
    bar = tqdm(total=n, unit="img", desc=desc, disable=not progress, leave=False)
    for r0 in range(0, n, rows):
        xr = xw[r0 : r0 + rows]
        lse = _kernel_logsumexp(xr, sw, s_sq, scale, cols)
        out[:, r0 : r0 + xr.shape[0]] = lse.cpu() + log_norm[:, None]
        bar.update(xr.shape[0])
    bar.close()
    return out


def _kernel_logsumexp(
    xr: torch.Tensor, sw: torch.Tensor, s_sq: torch.Tensor, scale: torch.Tensor, cols: int
) -> torch.Tensor:
    """log sum_j exp(scale_k |x_i - s_j|^2) for the rows ``xr`` and every scale, (k, r) float64,
    streamed over blocks of ``cols`` samples with a running minimum distance per row."""
    k, m = scale.shape[0], sw.shape[0]
    scale64 = scale.to(torch.float64)
    # |x - s|^2 = |x|^2 + (|s|^2 - 2 x.s): the row constant |x|^2 cancels in the shifted
    # kernels, so each block is only the partial term, and |x|^2 is added back at the end
    run_min: torch.Tensor | None = None  # running row min of the partial term, (r,)
    sums = torch.zeros(k, xr.shape[0], dtype=torch.float64, device=xr.device)
    buf = torch.empty(xr.shape[0], cols, dtype=xr.dtype, device=xr.device)
    for c0 in range(0, m, cols):
        partial = torch.addmm(s_sq[c0 : c0 + cols], xr, sw[c0 : c0 + cols].T, alpha=-2.0)
        block_min = partial.min(dim=1).values
        new_min = block_min if run_min is None else torch.minimum(run_min, block_min)
        if run_min is not None:  # rescale the sums to the new reference point
            sums *= torch.exp(scale64[:, None] * (run_min - new_min).to(torch.float64))
        partial.sub_(new_min[:, None])  # >= 0, so every exp below is <= 1: no overflow
        view = buf[:, : partial.shape[1]]
        for j in range(k):
            # floor at -80: exp's underflow path is ~10x slower, and the floored terms
            # (<= e^-80 each, beside the nearest sample's 1) change nothing measurable
            torch.mul(partial, scale[j], out=view).clamp_min_(EXP_FLOOR).exp_()
            sums[j] += view.sum(dim=1).to(torch.float64)  # block sums: <= cols terms <= 1
        run_min = new_min
    x_sq = (xr.to(torch.float64) ** 2).sum(dim=1)
    nearest_sq = (run_min.to(torch.float64) + x_sq).clamp_min(0.0)  # min_j |x - s_j|^2
    # the nearest sample contributes exp(0) = 1, so sums >= 1 and the log is finite
    return torch.log(sums) + scale64[:, None] * nearest_sq[None, :]


@dataclass
class ParzenResult:
    """Chosen sigma, test scores and the validation curve that chose it."""

    mean: float
    sem: float
    sigma: float
    n_samples: int
    n_test: int
    n_valid: int
    sigma_grid: list[float] = field(default_factory=list)
    valid_mean: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        order = np.argsort(self.sigma_grid)
        return {
            "mean": self.mean,
            "sem": self.sem,
            "sigma": self.sigma,
            "n_samples": self.n_samples,
            "n_test": self.n_test,
            "n_valid": self.n_valid,
            "units": "nats per image (mean test log-likelihood); sem = std(ddof=1)/sqrt(n_test)",
            "validation": {
                "sigma": [self.sigma_grid[i] for i in order],
                "mean_log_likelihood": [self.valid_mean[i] for i in order],
            },
        }


def select_sigma(
    x_valid: torch.Tensor | np.ndarray,
    samples: torch.Tensor | np.ndarray,
    grid: np.ndarray,
    refine: int = 0,
    chunk_size: int = 2000,
    device: torch.device | str | None = None,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Sigma maximising the mean validation log-likelihood over ``grid`` plus its refinement.

    Returns (best sigma, every sigma tried, their mean validation log-likelihoods).
    """
    grid = np.asarray(grid, dtype=np.float64)
    scores = (
        parzen_log_likelihood(
            x_valid, samples, grid, chunk_size, device, progress, "parzen: sigma grid", dtype
        )
        .mean(dim=1)
        .numpy()
    )
    tried, tried_scores = grid, scores
    extra = refine_around(grid, int(np.argmax(scores)), refine)
    if extra.size:
        extra_scores = (
            parzen_log_likelihood(
                x_valid, samples, extra, chunk_size, device, progress, "parzen: refine", dtype
            )
            .mean(dim=1)
            .numpy()
        )
        tried = np.concatenate([grid, extra])
        tried_scores = np.concatenate([scores, extra_scores])
    best = int(np.argmax(tried_scores))
    return float(tried[best]), tried, tried_scores


def parzen_evaluate(
    samples: torch.Tensor | np.ndarray,
    x_valid: torch.Tensor | np.ndarray,
    x_test: torch.Tensor | np.ndarray,
    grid: np.ndarray,
    refine: int = 10,
    chunk_size: int = 2000,
    device: torch.device | str | None = None,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
) -> ParzenResult:
    """The whole protocol: choose sigma on x_valid, score x_test with it."""
    sigma, tried, scores = select_sigma(
        x_valid, samples, grid, refine, chunk_size, device, progress, dtype
    )
    log.info("parzen: sigma = %.4f chosen on %d validation images", sigma, len(x_valid))
    test_ll = parzen_log_likelihood(
        x_test, samples, sigma, chunk_size, device, progress, "parzen: test", dtype
    )[0]
    mean, sem = mean_sem(test_ll)
    return ParzenResult(
        mean=mean,
        sem=sem,
        sigma=sigma,
        n_samples=int(len(samples)),
        n_test=int(len(x_test)),
        n_valid=int(len(x_valid)),
        sigma_grid=[float(s) for s in tried],
        valid_mean=[float(s) for s in scores],
    )


def grid_from_config(settings: ParzenSettings) -> np.ndarray:
    """The sigma grid of ``evaluation.parzen.sigma_grid``."""
    spec = settings.sigma_grid
    return sigma_grid(spec.log10_min, spec.log10_max, spec.num)


def load_samples(cfg: Config, run: str) -> np.ndarray:
    from gae.config import run_dir

    path = require_file(run_dir(cfg, run) / SAMPLES_FILE, f"gae sample {run}")
    try:
        samples = np.load(path)
    except (OSError, ValueError) as exc:
        raise_bad(path, run, exc)
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise_bad(path, run, f"expected a non-empty (n, D) array, got shape {samples.shape}")
    samples = samples.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(samples).all(axis=1)))
    if bad:  # a NaN sample would make every score NaN, and the JSON invalid
        raise_bad(path, run, f"{bad} of its {len(samples)} rows hold NaN or infinite values")
    return samples


def check_sample_width(samples: np.ndarray, dataset: str, dim: int, path: Path, run: str) -> None:
    """Samples must have the data set's pixels per row (a Frey model in an MNIST run has not)."""
    if samples.shape[1] != dim:
        from gae.errors import GaeError

        raise GaeError(
            f"{path} has {samples.shape[1]} pixels per row but {dataset} has {dim}; delete it "
            f"and re-run `gae sample {run}`"
        )


def raise_bad(path: Path, run: str, why: object) -> None:
    from gae.errors import GaeError

    raise GaeError(f"{path} is unusable ({why}); delete it and re-run `gae sample {run}`")


def parzen_from_config(
    cfg: Config, samples: np.ndarray, x_valid: np.ndarray, x_test: np.ndarray
) -> ParzenResult:
    """``parzen_evaluate`` with the sigma grid, refinement, chunks and device of ``cfg``: the one
    protocol both `gae parzen` and the diagnostics' real-image baseline follow."""
    settings = cfg.evaluation.parzen
    return parzen_evaluate(
        samples,
        x_valid,
        x_test,
        grid_from_config(settings),
        refine=int(settings.refine),
        chunk_size=int(settings.chunk_size),
        device=resolve_device(cfg),
        progress=True,
    )


def parzen_run(cfg: Config, run: str) -> Path:
    """``gae parzen RUN``: results/runs/{run}/parzen.json."""
    from gae.config import run_dir, run_spec
    from gae.data.prepare import load_prepared
    from gae.io import atomic_write_json

    spec = run_spec(cfg, run)
    settings = cfg.evaluation.parzen
    samples = load_samples(cfg, run)
    data = load_prepared(cfg, spec.dataset)
    check_sample_width(
        samples, spec.dataset, data["x_test"].shape[1], run_dir(cfg, run) / SAMPLES_FILE, run
    )
    x_valid, _, valid_rows = eval_rows(
        cfg, data, "valid", settings.n_valid, "evaluation.parzen.n_valid"
    )
    x_test, _, test_rows = eval_rows(cfg, data, "test", settings.n_test, "evaluation.parzen.n_test")
    result = parzen_from_config(cfg, samples, x_valid, x_test)
    out = run_dir(cfg, run) / PARZEN_FILE
    images = {"valid_images": valid_rows, "test_images": test_rows}
    atomic_write_json(out, {"run": run, "dataset": spec.dataset, **result.to_json(), **images})
    log.info(
        "parzen %s: %.2f +- %.2f nats (sigma %.4f) -> %s",
        run,
        result.mean,
        result.sem,
        result.sigma,
        out,
    )
    return out
