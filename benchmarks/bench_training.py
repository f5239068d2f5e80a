"""Training throughput of the GAE (in-batch Monte-Carlo EM) and the VAE at depths 1-4.

Full-size architecture (width 500, latent 50, batch 100, tanh, Bernoulli decoder) on
MNIST-shaped synthetic binary data; a few hundred Adam steps each after a warm-up. Prints a table
with samples/s per model and depth and the GAE/VAE time ratio (target: <= 1.3), and writes
benchmarks/out/training.json. Not a test: numbers depend on the machine and its load.

    .venv/bin/python benchmarks/bench_training.py [--steps 300] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from gae.models import build_model
from gae.objectives import gae_knn_objective, gae_objective, nearest_exemplars, vae_objective

BATCH = 100
KNN = 10
OUT = Path(__file__).resolve().parent / "out" / "training.json"


def make_stepper(kind: str, depth: int, device: torch.device):
    """A closure running one training step (forward, backward, Adam) of a full-size model."""
    torch.manual_seed(0)
    arch = {
        "data_dim": 784,
        "latent_dim": 50,
        "depth": depth,
        "hidden_units": 500,
        "activation": "tanh",
        "logvar_min": -6.0,
        "logvar_max": 2.0,
        "likelihood": "bernoulli",
    }
    model = build_model("gae" if kind.startswith("gae") else "vae", arch).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    data = (torch.rand(50 * BATCH, 784, device=device) < 0.3).float()
    if kind == "gae-knn":  # k = KNN nearest exemplars, refreshed once (the loop: every epoch)
        neighbours = nearest_exemplars(model.encode_all(data)[0], KNN)

    def step(i: int) -> None:
        x = data[(i % 50) * BATCH : (i % 50 + 1) * BATCH]
        if kind == "gae":
            terms = gae_objective(model, x, 50_000, lambda_mu=1e-3, lambda_sigma=1.0, generator=gen)
        elif kind == "gae-knn":
            index = torch.arange((i % 50) * BATCH, (i % 50 + 1) * BATCH, device=device)
            nb = neighbours[index]
            in_batch = (nb[:, :, None] == index[None, None, :]).any(dim=1)
            terms = gae_knn_objective(
                model,
                x,
                data[nb],
                in_batch,
                50_000,
                lambda_mu=1e-3,
                lambda_sigma=1.0,
                generator=gen,
            )
        else:
            terms = vae_objective(model, x, generator=gen)
        loss = -terms.surrogate.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # the training loop reads these every step (NaN guard, log sums)
        loss.item()
        terms.objective.sum().item()

    return step


def timed_block(step, device: torch.device, steps: int) -> float:
    """Samples per second over ``steps`` consecutive steps."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * BATCH / (time.perf_counter() - start)


def compare(depth: int, device: torch.device, steps: int, rounds: int) -> dict[str, float]:
    """Best-of-``rounds`` throughput of VAE and GAE, blocks interleaved so that background load
    on a shared machine hits both alike."""
    steppers = {kind: make_stepper(kind, depth, device) for kind in ("vae", "gae", "gae-knn")}
    for step in steppers.values():
        for i in range(10):  # warm-up
            step(i)
    best = dict.fromkeys(steppers, 0.0)
    for _ in range(rounds):
        for kind, step in steppers.items():
            best[kind] = max(best[kind], timed_block(step, device, steps // rounds))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing blocks")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", action="append", default=None, help="cpu and/or cuda")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    header = ("device", "depth", "VAE samples/s", "GAE samples/s", "GAE/VAE time")
    header += ("GAE-knn10 samples/s", "knn/VAE time")
    print(
        f"{header[0]:<6} {header[1]:>5} {header[2]:>14} {header[3]:>14} {header[4]:>13}"
        f" {header[5]:>20} {header[6]:>13}"
    )
    for name in devices:
        device = torch.device(name)
        for depth in (1, 2, 3, 4):
            best = compare(depth, device, args.steps, args.rounds)
            vae, gae, knn = best["vae"], best["gae"], best["gae-knn"]
            row = {
                "device": name,
                "depth": depth,
                "vae_samples_per_s": round(vae, 1),
                "gae_samples_per_s": round(gae, 1),
                "gae_over_vae_time": round(vae / gae, 3),
                "gae_knn10_samples_per_s": round(knn, 1),
                "gae_knn10_over_vae_time": round(vae / knn, 3),
                "vae_epoch_s_50k": round(50_000 / vae, 2),
                "gae_epoch_s_50k": round(50_000 / gae, 2),
            }
            rows.append(row)
            print(
                f"{name:<6} {depth:>5} {vae:>14.0f} {gae:>14.0f} {row['gae_over_vae_time']:>13.2f}"
                f" {knn:>20.0f} {row['gae_knn10_over_vae_time']:>13.2f}"
            )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "steps": args.steps,
        "rounds": args.rounds,
        "statistic": "best block of steps/rounds steps, VAE and GAE blocks interleaved",
        "batch_size": 100,
        "width": 500,
        "latent_dim": 50,
    }
    OUT.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
