"""How much could a GAE-style prior give each trained VAE? (docs/gae-study.md)

For a trained VAE, swap its N(0, I) prior for the GAE's prior built from the same VAE's encoder:
the mixture (1/n) sum_j q(z|x_j) over all n training images (the aggregate posterior, the prior
that maximises the ELBO for that encoder). Score both priors with the same importance-sampling
draws (proposal q(z|x), S = 200 per image, the first 500 test images, the seed of `gae loglik`)
and report the per-image gain. The mixture's log p(z) is exact (all n components): the K-nearest
lower bound that is 0.001 nats tight for our GAEs is not tight here, since a VAE's unused latent
dimensions make every component overlap there (measured: up to log(n/K) = 5.5 nats low).

    .venv/bin/python docs/study/vae_aggregate_prior.py results/study-cpu/clip-warmup5 [...]

Reads {dir}/runs/bmnist-vae-L{1..4}-z50/model.pt; writes
{dir}/vae_aggregate_prior.csv and prints it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import torch

from gae.config import load_config
from gae.data.prepare import load_prepared
from gae.evaluation import mean_sem
from gae.evaluation.loglik import importance_log_likelihood
from gae.models import load_model
from gae.priors import ExemplarMixturePrior

ROOT = Path(__file__).resolve().parents[2]
N_TEST, S = 500, 200


def seed_of(study_dir: Path) -> int:
    """The study's seed from its folder name (seed2, clip-warmup5-seed3); 1234 otherwise."""
    match = re.search(r"seed(\d+)$", study_dir.name)
    return int(match.group(1)) if match else 1234


def gains(study_dir: Path, x_train: torch.Tensor, x: torch.Tensor) -> pd.DataFrame:
    seed = seed_of(study_dir)
    rows = []
    for depth in (1, 2, 3, 4):
        run_dir = study_dir / "runs" / f"bmnist-vae-L{depth}-z50"
        if not (run_dir / "model.pt").is_file():
            continue
        model = load_model(run_dir / "model.pt")
        standard = importance_log_likelihood(model, x, S, 4096, seed).log_px.numpy()
        # the VAE's own aggregate posterior as its prior (set_exemplar_prior is for GAEs only)
        model.prior = ExemplarMixturePrior(*model.encode_all(x_train))
        mixture = importance_log_likelihood(model, x, S, 4096, seed, progress=True).log_px.numpy()
        gain, gain_sem = mean_sem(mixture - standard)
        rows.append(
            {
                "run": str(run_dir.relative_to(ROOT)),
                "depth": depth,
                "N(0,I) prior": mean_sem(standard)[0],
                "aggregate-posterior prior (exact)": mean_sem(mixture)[0],
                "gain": gain,
                "gain s.e.": gain_sem,
                "images": standard.size,
            }
        )
    return pd.DataFrame(rows)


def main(dirs: list[str]) -> None:
    torch.set_num_threads(1)
    cfg = load_config([ROOT / "config" / "cpu.yaml"], base=ROOT / "params.yaml")
    data = load_prepared(cfg, "bmnist")  # once for every folder
    x_train = torch.as_tensor(data["x_train"], dtype=torch.float32)
    x = torch.as_tensor(data["x_test"][:N_TEST], dtype=torch.float32)
    for name in dirs:
        study_dir = (ROOT / name).resolve()
        table = gains(study_dir, x_train, x)
        table.to_csv(study_dir / "vae_aggregate_prior.csv", index=False)
        print(table.to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1:])
