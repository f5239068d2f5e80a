"""Generated samples of a trained run (``samples.npy``) by the slides' procedure.

GAE: (1) pick a training image x_j uniformly, (2) z from its prior component (q(z|x_j), or
N(mu(x_j), I) with the default unit component variance; the components are stored with the
model), (3) the decoder MEAN of z, not a Bernoulli/Gaussian
draw: the Parzen literature scores means, and pixel noise would only lower those scores.
VAE: z ~ N(0, I), then the decoder mean.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gae.config import run_dir, run_spec
from gae.errors import GaeError
from gae.io import atomic_save_npy
from gae.models import GenerativeModel
from gae.paths import MODEL_FILE, SAMPLES_FILE
from gae.run_model import load_run_model
from gae.settings import Config
from gae.training import derive_seed, resolve_device

log = logging.getLogger(__name__)
SAMPLES_NAME = SAMPLES_FILE  # the old name, for callers that import it


@torch.no_grad()
def draw_samples(
    model: GenerativeModel, n: int, generator: torch.Generator, batch_size: int = 1000
) -> np.ndarray:
    """(n, D) float32 decoder means of z drawn from the model's prior, clipped to [0, 1]."""
    if model.prior is None:
        raise GaeError("the model has no prior stored; re-run gae train for this run")
    out = []
    for start in tqdm(range(0, n, batch_size), desc="sampling", leave=False, mininterval=1.0):
        z = model.prior.sample(min(batch_size, n - start), generator)
        out.append(model.decode_mean(z).clamp(0.0, 1.0).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32, copy=False)


def sample_run(cfg: Config, run: str) -> Path:
    """Write results/runs/{run}/samples.npy: cfg evaluation.n_samples rows, seeded per run."""
    run_spec(cfg, run)
    folder = run_dir(cfg, run)
    device = resolve_device(cfg)
    model = load_run_model(cfg, run, folder / MODEL_FILE, device=device)
    n = int(cfg.evaluation.n_samples)
    generator = torch.Generator(device=device).manual_seed(derive_seed(cfg.seed, run, "sample"))
    batch = int(cfg.evaluation.batch_size)
    samples = draw_samples(model, n, generator, batch)
    path = folder / SAMPLES_FILE
    atomic_save_npy(path, samples)
    log.info("run %s: wrote %d samples to %s", run, n, path)
    return path
