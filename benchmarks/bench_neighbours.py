"""Per-epoch overhead of the default GAE: the nearest-exemplar refresh and the exact prior.

At every epoch the default GAE (posterior E-step over k = 32 nearest cached exemplars) recomputes
each training image's nearest exemplars among all n encodings (``nearest_exemplars``: chunked
``addmm`` + top-k), and its validation bound evaluates the exact mixture prior of n components
for every validation code (``ExemplarMixturePrior.log_prob``). This times both at the CPU
preset's size (n = 50,000, d = 50, 10,000 validation codes) next to the three-pass distance
formula ``nearest_exemplars`` used before, and writes benchmarks/out/neighbours.json.

    .venv/bin/python benchmarks/bench_neighbours.py [--n 50000] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from gae.objectives import nearest_exemplars
from gae.priors import ExemplarMixturePrior

OUT = Path(__file__).resolve().parent / "out" / "neighbours.json"


def three_pass_nearest(means: torch.Tensor, k: int, chunk_size: int = 2048) -> torch.Tensor:
    """The former formula: |r|^2 - 2 r.m + |m|^2 in three passes over each chunk x n block."""
    n, sq, out = means.shape[0], (means * means).sum(dim=1), []
    for start in range(0, n, chunk_size):
        rows = means[start : start + chunk_size]
        dist = sq[start : start + chunk_size, None] - 2.0 * rows @ means.T + sq[None, :]
        own = torch.arange(start, start + rows.shape[0], device=means.device)
        dist[torch.arange(rows.shape[0], device=means.device), own] = math.inf
        out.append(torch.topk(dist, k, dim=1, largest=False).indices)
    return torch.cat(out)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--n-valid", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(args.n, args.d, generator=gen).to(device)
    logvars = (-2.0 + 0.3 * torch.randn(args.n, args.d, generator=gen)).to(device)
    codes = torch.randn(args.n_valid, args.d, generator=gen).to(device)

    fused = nearest_exemplars(means, args.k)
    same = bool(
        (fused.sort(dim=1).values == three_pass_nearest(means, args.k).sort(dim=1).values)
        .all(dim=1)
        .float()
        .mean()
        > 0.999
    )
    result = {
        "n": args.n,
        "d": args.d,
        "k": args.k,
        "n_valid": args.n_valid,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
        "nearest_fused_s": round(timed(lambda: nearest_exemplars(means, args.k), device), 2),
        "nearest_three_pass_s": round(timed(lambda: three_pass_nearest(means, args.k), device), 2),
        "neighbour_sets_agree_on_99.9pct_of_rows": same,
        "exact_prior_valid_s": round(
            timed(lambda: ExemplarMixturePrior(means, logvars).log_prob(codes), device), 2
        ),
    }
    for key, value in result.items():
        print(f"{key:>40}: {value}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
