"""The figures of the slides, for our runs, under ``results/figures/`` (PNG).

- ``samples_{dataset}.png``: sample grids, GAE vs VAE (columns) by depth (rows), from samples.npy;
- ``latent_density.png``: kernel density of 1,000 z drawn from each 2-D run's prior
  (``evaluate.latent``, e.g. depth 1 vs 2);
- ``latent_scatter.png``: z ~ q(z|x) of the test images, coloured by class, same runs;
- ``training_curves_{dataset}.png``: training and validation objective per epoch (train_log.csv).

Which figures exist follows from the configuration alone (``figure_paths``), so the pipeline
knows its outputs before any run finishes. A missing input raises GaeError naming the file and
the command that produces it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from gae.config import RunSpec, parse_run_name, prepared_path, run_dir
from gae.data.sources import IMAGE_SHAPES
from gae.errors import GaeError
from gae.io import atomic_open
from gae.paths import (  # noqa: F401
    MODEL_FILE,
    SAMPLES_FILE,
    TRAIN_LOG_FILE,
    figure_inputs,
    figure_paths,
    figures_dir,
    require_output,
    sample_grid_plan,
)
from gae.paths import latent_runs as _latent_runs
from gae.paths import run_datasets as _datasets
from gae.settings import Config

log = logging.getLogger(__name__)

GRID_SIDE = 8  # samples per grid row/column
N_LATENT = 1000  # z samples in the latent density (the slides' figure)


def _kind(cfg: Config, spec: RunSpec) -> str:
    return cfg.models[spec.model].kind


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    log.info("wrote %s", path)
    return path


def _mosaic(samples: np.ndarray, shape: tuple[int, int], side: int = GRID_SIDE) -> np.ndarray:
    """The first side*side samples tiled into one image with 1-pixel white gutters."""
    h, w = shape
    n = min(len(samples), side * side)
    canvas = np.ones((side * (h + 1) - 1, side * (w + 1) - 1), dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, side)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = samples[k].reshape(
            h, w
        )
    return canvas


def _model_title(cfg: Config, model: str) -> str:
    kind = cfg.models[model].kind.upper()
    return kind if model in ("gae", "vae", "vamp") else f"{kind} [{model}]"


def sample_grid_figure(cfg: Config, dataset: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    plan = sample_grid_plan(cfg, dataset)
    models = sorted({m for _, m in plan}, key=lambda m: (cfg.models[m].kind != "gae", m))
    depths = sorted({d for d, _ in plan})
    shape = IMAGE_SHAPES[dataset]
    fig, axes = plt.subplots(
        len(depths),
        len(models),
        figsize=(2.6 * len(models), 2.6 * len(depths) * shape[0] / shape[1]),
        squeeze=False,
    )
    for i, depth in enumerate(depths):
        for j, model in enumerate(models):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            run = plan.get((depth, model))
            if run is None:
                ax.set_axis_off()
                continue
            samples = np.load(require_output(run_dir(cfg, run) / SAMPLES_FILE, f"gae sample {run}"))
            if samples.ndim != 2 or samples.shape[1] != shape[0] * shape[1]:
                raise GaeError(
                    f"{run_dir(cfg, run) / 'samples.npy'} has shape {samples.shape}, expected "
                    f"(N, {shape[0] * shape[1]}) for {dataset}; re-run `gae sample {run}`"
                )
            ax.imshow(_mosaic(samples, shape), cmap="gray", vmin=0.0, vmax=1.0)
            if i == 0:
                ax.set_title(_model_title(cfg, model), fontsize=12)
            if j == 0:
                ax.set_ylabel(f"{depth} layer{'s' if depth > 1 else ''}", fontsize=11)
    fig.suptitle(f"{dataset}: generated samples (decoder means)", fontsize=13)
    return _save(fig, path)


def _load_model(cfg: Config, run: str) -> Any:
    """The run's model.pt, checked to belong to the run (gae.run_model)."""
    from gae.run_model import load_run_model

    path = require_output(run_dir(cfg, run) / MODEL_FILE, f"gae train {run}")
    return load_run_model(cfg, run, path, device="cpu")


def _layer_title(cfg: Config, spec: RunSpec) -> str:
    return f"{_model_title(cfg, spec.model)}, {spec.depth}-layered enc./dec."


def _check_2d(spec: RunSpec) -> None:
    if spec.latent_dim != 2:
        raise GaeError(
            f"evaluate.latent lists {spec.name}, whose latent space has {spec.latent_dim} "
            f"dimensions; the latent figures need 2-D runs (…-z2)"
        )


def latent_density_figure(cfg: Config, path: Path) -> Path:
    """KDE of 1,000 z drawn from each 2-D run's prior (the slides' latent-space figure)."""
    import matplotlib.pyplot as plt
    import torch
    from scipy.stats import gaussian_kde

    specs = _latent_runs(cfg)
    fig, axes = plt.subplots(1, len(specs), figsize=(4.2 * len(specs), 4), squeeze=False)
    for ax, spec in zip(axes[0], specs, strict=True):
        _check_2d(spec)
        model = _load_model(cfg, spec.name)
        generator = torch.Generator().manual_seed(int(cfg.seed))
        with torch.no_grad():
            z = model.prior.sample(N_LATENT, generator).detach().cpu().numpy().astype(np.float64)
        lo, hi = z.min(axis=0), z.max(axis=0)
        pad = 0.1 * (hi - lo) + 1e-6
        gx, gy = np.meshgrid(
            np.linspace(lo[0] - pad[0], hi[0] + pad[0], 150),
            np.linspace(lo[1] - pad[1], hi[1] + pad[1], 150),
        )
        density = gaussian_kde(z.T)(np.vstack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
        ax.contourf(gx, gy, density, levels=30, cmap="viridis")
        ax.set_title(_layer_title(cfg, spec))
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
    fig.suptitle(f"Kernel density of {N_LATENT} samples of z from the prior", fontsize=12)
    return _save(fig, path)


def latent_scatter_figure(cfg: Config, path: Path) -> Path:
    """z ~ q(z|x) for the test images, coloured by their class."""
    import matplotlib.pyplot as plt
    import torch

    from gae.data.prepare import load_prepared

    specs = _latent_runs(cfg)
    batch = int(cfg.evaluation.batch_size)
    fig, axes = plt.subplots(1, len(specs), figsize=(4.6 * len(specs), 4.2), squeeze=False)
    for ax, spec in zip(axes[0], specs, strict=True):
        _check_2d(spec)
        model = _load_model(cfg, spec.name)
        require_output(prepared_path(cfg, spec.dataset), f"gae prepare {spec.dataset}")
        data = load_prepared(cfg, spec.dataset)
        x = torch.as_tensor(np.asarray(data["x_test"], dtype=np.float32))
        labels = data.get("y_test")
        generator = torch.Generator().manual_seed(int(cfg.seed))
        zs = []
        with torch.no_grad():
            for start in range(0, len(x), batch):
                mu, logvar = model.encode(x[start : start + batch])
                eps = torch.randn(mu.shape, generator=generator)
                zs.append((mu + torch.exp(0.5 * logvar) * eps).cpu().numpy())
        z = np.concatenate(zs)
        if labels is None:
            ax.scatter(z[:, 0], z[:, 1], s=3, alpha=0.6)
        else:
            points = ax.scatter(
                z[:, 0], z[:, 1], c=labels, cmap="tab10", s=3, alpha=0.7, vmin=-0.5, vmax=9.5
            )
            fig.colorbar(points, ax=ax, ticks=range(10), label="class")
        ax.set_title(_layer_title(cfg, spec))
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
    fig.suptitle("Test images: z ~ q(z|x), coloured by class", fontsize=12)
    return _save(fig, path)


def training_curves_figure(cfg: Config, dataset: str, path: Path) -> Path:
    """Training and validation objective per epoch for every run of the data set."""
    import pandas as pd
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    runs = [r for r in cfg.runs if parse_run_name(r).dataset == dataset]
    frames = []
    for run in runs:
        log_path = require_output(run_dir(cfg, run) / TRAIN_LOG_FILE, f"gae train {run}")
        frame = pd.read_csv(log_path)
        missing = {"epoch", "train_objective", "valid_objective"} - set(frame.columns)
        if missing:
            raise GaeError(
                f"{log_path} lacks the columns {sorted(missing)}; re-run `gae train {run}`"
            )
        # epochs without validation (train.validate_every > 1) have no valid_objective: NaN,
        # which the line plot skips
        frame = frame[["epoch", "train_objective", "valid_objective"]].copy()
        frame["run"] = run
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True).melt(
        id_vars=["epoch", "run"], var_name="split", value_name="objective"
    )
    data["split"] = data["split"].map(
        {"train_objective": "training objective", "valid_objective": "validation ELBO"}
    )
    sns.set_theme(style="whitegrid", context="notebook")
    grid = sns.relplot(
        data=data,
        x="epoch",
        y="objective",
        hue="run",
        col="split",
        kind="line",
        marker="o",
        facet_kws={"sharey": False},
        height=3.6,
        aspect=1.2,
    )
    grid.set_titles("{col_name}")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    grid.figure.suptitle(f"{dataset}: training curves (nats per image, higher is better)", y=1.03)
    sns.reset_orig()
    return _save(grid.figure, path)


def make_figures(cfg: Config) -> list[Path]:
    """Draw every figure of ``figure_paths(cfg)``; return the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    out = figures_dir(cfg)
    written: list[Path] = []
    for dataset in _datasets(cfg):
        if sample_grid_plan(cfg, dataset):
            written.append(sample_grid_figure(cfg, dataset, out / f"samples_{dataset}.png"))
    if _latent_runs(cfg):
        written.append(latent_density_figure(cfg, out / "latent_density.png"))
        written.append(latent_scatter_figure(cfg, out / "latent_scatter.png"))
    for dataset in _datasets(cfg):
        written.append(training_curves_figure(cfg, dataset, out / f"training_curves_{dataset}.png"))
    return written
