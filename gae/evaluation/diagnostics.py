"""Memorisation diagnostics: are the samples copies of training images?

A model that memorises its training set produces samples much closer to some training image
than genuinely new images (the test set) ever are, and scores well under Parzen because Parzen
rewards copies (Theis et al. 2016). So we report, per run:

- the Euclidean distance from each sample to its nearest training image, beside the same for
  each test image (summary statistics and histograms on common bins);
- the share of samples closer to the training set than ANY test image is, and than the 1% / 5%
  quantiles of the test images' distances;
- the Parzen score of real training images used as "samples" (same protocol as ``gae parzen``)
  as a baseline row, next to the run's own parzen.json when it exists;
- a figure of samples above their nearest training images (nearest_neighbours.png).

Nearest neighbours come from chunked matrix products (|a|^2 - 2 a.b + |b|^2, float32) with a
running minimum; the winning pair's distance is then recomputed exactly in float64.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gae.data.sources import IMAGE_SHAPES
from gae.evaluation import eval_rows, resolve_device, take_first
from gae.evaluation.parzen import check_sample_width, load_samples, parzen_from_config
from gae.paths import PARZEN_FILE, SAMPLES_FILE
from gae.settings import Config

log = logging.getLogger(__name__)

QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


@torch.no_grad()
def nearest_neighbours(
    queries: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    chunk_size: int = 2000,
    device: torch.device | str | None = None,
    progress: bool = False,
    desc: str = "nearest neighbours",
) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, (Euclidean distance, index) of its nearest reference row.

    Memory O(chunk^2); the distance of the chosen pair is exact (float64). Among near-ties
    closer than float32 rounding (~1e-5 in squared distance) the pick may differ from an exact
    search; the reported distance is then still that pair's exact distance.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    q = torch.as_tensor(queries).to(device=device, dtype=torch.float32)
    ref = torch.as_tensor(reference).to(device=device, dtype=torch.float32)
    ref_sq = (ref * ref).sum(dim=1)
    n, m = q.shape[0], ref.shape[0]
    best_index = torch.empty(n, dtype=torch.long, device=device)
    bar = tqdm(total=n, unit="img", desc=desc, disable=not progress, leave=False)
    for r0 in range(0, n, chunk_size):
        qr = q[r0 : r0 + chunk_size]
        q_sq = (qr * qr).sum(dim=1, keepdim=True)
        run_min = torch.full((qr.shape[0],), math.inf, device=device)
        run_arg = torch.zeros(qr.shape[0], dtype=torch.long, device=device)
        for c0 in range(0, m, chunk_size):
            sq = torch.addmm(
                q_sq + ref_sq[c0 : c0 + chunk_size], qr, ref[c0 : c0 + chunk_size].T, alpha=-2.0
            )
            vals, idx = sq.min(dim=1)
            better = vals < run_min
            run_min = torch.where(better, vals, run_min)
            run_arg = torch.where(better, idx + c0, run_arg)
        best_index[r0 : r0 + qr.shape[0]] = run_arg
        bar.update(qr.shape[0])
    bar.close()
    dist = torch.zeros(n, dtype=torch.float64, device=device)
    for r0 in range(0, n, chunk_size):  # exact distances of the chosen pairs
        diff = q[r0 : r0 + chunk_size].double() - ref[best_index[r0 : r0 + chunk_size]].double()
        dist[r0 : r0 + diff.shape[0]] = (diff * diff).sum(dim=1).sqrt()
    return dist.cpu().numpy(), best_index.cpu().numpy()


def distance_summary(dist: np.ndarray) -> dict[str, Any]:
    qs = np.quantile(dist, QUANTILES)
    return {
        "n": int(dist.size),
        "mean": float(dist.mean()),
        "std": float(dist.std(ddof=1)) if dist.size > 1 else 0.0,
        "quantiles": {
            f"q{int(round(100 * p)):02d}": float(v) for p, v in zip(QUANTILES, qs, strict=True)
        },
    }


def memorisation_summary(sample_dist: np.ndarray, test_dist: np.ndarray, bins: int = 50):
    """Both distance sets side by side, common-bin histograms, and the copy shares."""
    edges = np.histogram_bin_edges(np.concatenate([sample_dist, test_dist]), bins=bins)
    thresholds = {
        "min_test": float(test_dist.min()),
        "test_q01": float(np.quantile(test_dist, 0.01)),
        "test_q05": float(np.quantile(test_dist, 0.05)),
    }
    return {
        "samples_to_train": distance_summary(sample_dist),
        "test_to_train": distance_summary(test_dist),
        "histogram": {
            "bin_edges": edges.tolist(),
            "samples": np.histogram(sample_dist, edges)[0].tolist(),
            "test": np.histogram(test_dist, edges)[0].tolist(),
        },
        "share_closer_than_test": {
            name: float((sample_dist < t).mean()) for name, t in thresholds.items()
        },
        "thresholds": thresholds,
        "definitions": {
            "distance": "Euclidean pixel distance from an image to its nearest training image",
            "share_closer_than_test.min_test": "fraction of samples whose nearest-training "
            "distance is strictly below the smallest nearest-training distance of any test "
            "image (closer to a training image than any test image is)",
            "share_closer_than_test.test_q01 / test_q05": "same, below the 1% / 5% quantile of "
            "the test images' nearest-training distances (a test image would be below with "
            "probability 0.01 / 0.05)",
        },
    }


def image_shape(dataset: str, data_dim: int) -> tuple[int, int]:
    shape = IMAGE_SHAPES.get(dataset)
    if shape and shape[0] * shape[1] == data_dim:
        return shape
    side = int(round(math.sqrt(data_dim)))
    return (side, side) if side * side == data_dim else (1, data_dim)


def plot_nearest_neighbours(
    samples: np.ndarray,
    train: np.ndarray,
    index: np.ndarray,
    dist: np.ndarray,
    shape: tuple[int, int],
    path: Path,
    n_show: int = 10,
    seed: int = 0,
) -> Path:
    """Random samples (top row) above their nearest training images (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gae.io import atomic_open

    rng = np.random.default_rng(seed)
    show = np.sort(rng.choice(len(samples), size=min(n_show, len(samples)), replace=False))
    fig, axes = plt.subplots(2, len(show), figsize=(1.2 * len(show), 2.8), squeeze=False)
    for col, i in enumerate(show):
        for row, (img, title) in enumerate(
            [(samples[i], f"d={dist[i]:.2f}"), (train[index[i]], f"#{index[i]}")]
        ):
            ax = axes[row, col]
            ax.imshow(img.reshape(shape), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.suptitle("samples (top) and their nearest training images (bottom)", fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return path


def _parzen_rows(
    cfg: Config, run: str, data: dict[str, np.ndarray], x_test: np.ndarray, n: int
) -> dict[str, Any]:
    """The Parzen score of ``n`` REAL training images as the "samples", sigma chosen as `gae
    parzen` does: the baseline a model's score is read against; beside it the model's own
    parzen.json where it exists. The images are the split's seeded random sample
    (``eval_rows``, recorded with their rows), the same for every run of the data set."""
    from gae.config import run_dir
    from gae.io import read_json

    settings = cfg.evaluation.parzen
    x_base, _, base_rows = eval_rows(cfg, data, "train", n, "evaluation.diagnostics.n_samples")
    x_valid, _, _ = eval_rows(
        cfg, data, "valid", settings.n_valid, "evaluation.parzen.n_valid"
    )
    baseline = parzen_from_config(cfg, x_base, x_valid, x_test)
    rows = {
        "training_images": {
            **{k: v for k, v in baseline.to_json().items() if k != "validation"},
            "what": f"{len(x_base)} training images (a seeded random sample, `images`) used as "
            "Parzen samples; same sigma protocol as gae parzen",
            "images": base_rows,
        }
    }
    parzen_file = run_dir(cfg, run) / PARZEN_FILE
    if parzen_file.is_file():
        own = read_json(parzen_file)
        rows["model_samples"] = {
            k: own.get(k) for k in ("mean", "sem", "sigma", "n_samples", "n_test")
        }
    return rows


def _diagnose_inputs(
    cfg: Config, run: str, dataset: str
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray, dict, dict]:
    """Samples, the data, and the training and test images compared (seeded random samples)."""
    from gae.config import run_dir
    from gae.data.prepare import load_prepared

    settings = cfg.evaluation.diagnostics
    samples = take_first(load_samples(cfg, run), settings.n_samples, "sample")
    data = load_prepared(cfg, dataset)
    width = data["x_train"].shape[1]
    check_sample_width(samples, dataset, width, run_dir(cfg, run) / SAMPLES_FILE, run)
    n_train = settings.n_train
    train, _, train_rows = eval_rows(cfg, data, "train", n_train, "evaluation.diagnostics.n_train")
    n_test = cfg.evaluation.parzen.n_test
    x_test, _, test_rows = eval_rows(cfg, data, "test", n_test, "evaluation.parzen.n_test")
    return samples, data, train, x_test, train_rows, test_rows


def diagnose_run(cfg: Config, run: str) -> Path:
    """``gae diagnose RUN``: results/runs/{run}/diagnostics.json and nearest_neighbours.png."""
    from gae.config import run_dir, run_spec
    from gae.io import atomic_write_json

    spec = run_spec(cfg, run)
    samples, data, train, x_test, train_rows, test_rows = _diagnose_inputs(cfg, run, spec.dataset)
    chunk = int(cfg.evaluation.parzen.chunk_size)
    device = resolve_device(cfg)
    sample_dist, sample_index = nearest_neighbours(
        samples, train, chunk, device, True, "samples -> train"
    )
    test_dist, _ = nearest_neighbours(x_test, train, chunk, device, True, "test -> train")
    result: dict[str, Any] = {
        "run": run,
        "dataset": spec.dataset,
        "n_samples": int(len(samples)),
        "n_train": int(len(train)),
        "n_test": int(len(x_test)),
        "train_images": train_rows,
        "test_images": test_rows,
        **memorisation_summary(sample_dist, test_dist),
    }
    n_base = int(cfg.evaluation.diagnostics.n_samples or len(samples))
    result["parzen"] = _parzen_rows(cfg, run, data, x_test, n_base)
    shape = image_shape(spec.dataset, samples.shape[1])
    out_dir = run_dir(cfg, run)
    figure = plot_nearest_neighbours(
        samples, train, sample_index, sample_dist, shape, out_dir / "nearest_neighbours.png",
        seed=int(cfg.seed),
    )
    result["figure"] = figure.name
    out = out_dir / "diagnostics.json"
    atomic_write_json(out, result)
    log.info(
        "diagnose %s: median sample->train %.3f vs test->train %.3f; %.1f%% of samples closer "
        "than any test image -> %s",
        run,
        result["samples_to_train"]["quantiles"]["q50"],
        result["test_to_train"]["quantiles"]["q50"],
        100 * result["share_closer_than_test"]["min_test"],
        out,
    )
    return out


__all__ = ["diagnose_run", "memorisation_summary", "nearest_neighbours"]
