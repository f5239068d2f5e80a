"""Per-epoch overhead of the default GAE: the nearest-exemplar refresh and the exact prior.

At every epoch the default GAE (posterior E-step over k = 32 nearest cached exemplars) searches
each training image's nearest exemplars among all n encodings, and its validation bound
evaluates the exact mixture prior of n components for every validation code
(``ExemplarMixturePrior.log_prob``). This times, at the CPU preset's size (n = 50,000, d = 50,
10,000 validation codes): the exact search (``nearest_exemplars``: chunked ``addmm`` + top-k),
the three-pass distance formula it replaced, the FAISS inverted-file search
(``ivf_nearest_exemplars``, ``neighbour_search: ivf``) and the cell-by-cell search
(``cell_nearest_exemplars``, ``neighbour_search: cells``), each with its recall (the share of the
exact k nearest it finds), and the exact prior at the validation codes with the components' own
variances and with one shared (unit) variance, then writes benchmarks/out/neighbours.json.

The codes are N(0, I) draws by default: the worst case for an inverted file (no structure).
``--model results/runs/RUN/model.pt`` uses that trained model's encoder means of its training
set instead (``--config`` names the configuration that locates the prepared data).

    .venv/bin/python benchmarks/bench_neighbours.py [--n 50000] [--threads 1] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from gae.objectives import cell_nearest_exemplars, ivf_nearest_exemplars, nearest_exemplars
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


def timed(fn, device: torch.device) -> tuple[float, object]:
    """(seconds, result) of one call of ``fn``, synchronised on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def recall(found: torch.Tensor, exact: torch.Tensor, rows: int = 2000) -> float:
    """The share of the exact k nearest that ``found`` holds, over an even spread of rows."""
    pick = torch.linspace(0, exact.shape[0] - 1, min(rows, exact.shape[0])).long()
    hits = (found[pick, :, None] == exact[pick, None, :]).any(dim=2).sum().item()
    return round(hits / exact[pick].numel(), 4)


def trained_codes(model_path: str, config: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A trained model's encoder means and log-variances of its own training set."""
    from gae.config import load_config
    from gae.data.prepare import load_prepared
    from gae.models import load_model

    model = load_model(model_path)
    cfg = load_config([config] if config else [])
    data = load_prepared(cfg, model.meta["dataset"])
    with torch.no_grad():
        return model.encode_all(torch.as_tensor(data["x_train"], dtype=torch.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--n-valid", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", help="a trained model.pt: search its training codes")
    parser.add_argument("--config", help="an overlay locating the model's prepared data")
    parser.add_argument("--no-three-pass", action="store_true", help="skip the old formula")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    if args.model:
        means, logvars = trained_codes(args.model, args.config)
        codes_from = args.model
    else:
        means = torch.randn(args.n, args.d, generator=gen)
        logvars = -2.0 + 0.3 * torch.randn(args.n, args.d, generator=gen)
        codes_from = "N(0, I) draws"
    means, logvars = means.to(device), logvars.to(device)
    n, d = means.shape
    codes = torch.randn(args.n_valid, d, generator=gen).to(device)

    exact_s, exact = timed(lambda: nearest_exemplars(means, args.k), device)
    result = {
        "codes": codes_from,
        "n": n,
        "d": d,
        "k": args.k,
        "n_valid": args.n_valid,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
        "nearest_exact_s": round(exact_s, 2),
    }
    if not args.no_three_pass:
        three_s, three = timed(lambda: three_pass_nearest(means, args.k), device)
        result["nearest_three_pass_s"] = round(three_s, 2)
        result["three_pass_recall"] = recall(three, exact)
    if device.type == "cpu":
        ivf_s, ivf = timed(lambda: ivf_nearest_exemplars(means, args.k), device)
        result["nearest_ivf_s"] = round(ivf_s, 2)
        result["ivf_recall"] = recall(ivf, exact)
        result["ivf_speedup"] = round(exact_s / result["nearest_ivf_s"], 2)
        cells_s, cells = timed(lambda: cell_nearest_exemplars(means, args.k), device)
        result["nearest_cells_s"] = round(cells_s, 2)
        result["cells_recall"] = recall(cells, exact)
        result["cells_speedup"] = round(exact_s / result["nearest_cells_s"], 2)
    # the exact prior at every validation code: components with their own variances (the
    # slides' q(z|x_j)), and with one shared variance (the default GAE's unit one)
    prior_s, _ = timed(lambda: ExemplarMixturePrior(means, logvars).log_prob(codes), device)
    result["exact_prior_valid_s"] = round(prior_s, 2)
    unit = torch.zeros_like(logvars)
    unit_s, _ = timed(lambda: ExemplarMixturePrior(means, unit).log_prob(codes), device)
    result["exact_prior_unit_variance_valid_s"] = round(unit_s, 2)
    for key, value in result.items():
        print(f"{key:>40}: {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
