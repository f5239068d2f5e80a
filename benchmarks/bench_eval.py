"""Benchmark of the evaluation kernels (not a test): speed against the machine's matrix-product
rate, against a straightforward implementation, and peak memory.

    .venv/bin/python benchmarks/bench_eval.py [--quick] [--device cpu|cuda]

Cases, each run in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own:
  matmul        float32 4096 x 4096 matrix product: the reference rate (GFLOP/s); every case
                also re-measures it in its own process right after it runs, and its fraction
                of the matrix-product rate is against that (the machine's load drifts)
  parzen_1      Parzen, 10,000 samples x 10,000 test images x 784, one sigma
  parzen_grid   the same for the 10 + 10 sigmas of the protocol (grid + refinement), one pass
  parzen_f64    the fully float64 path, on the first 1,000 test images (extrapolated x10)
  naive         per-batch broadcasting (x_b - mu)^2 as the original Theano parzen_ll.py
                (batch 10), on the first 100 test images, extrapolated x100
  mixture       exact GAE prior log p(z): 2,000 z against n = 50,000 components, d = 50
  baseline      imports + data only (the memory every case starts from)
Data: real MNIST from the offline mirror (../shared/data) when present (train[:10000] as the
"samples", the 10,000 test images), else uniform noise of the same shape.
Writes benchmarks/out/eval.json and prints a table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared" / "data" / "mnist"
OUT = ROOT / "benchmarks" / "out" / "eval.json"
D = 784
GRID = np.concatenate([np.logspace(-1, 0, 10), np.exp(np.linspace(np.log(0.1), 0.0, 12)[1:-1])])


def load_mnist(n_samples: int, n_test: int) -> tuple[np.ndarray, np.ndarray, str]:
    def images(name: str) -> np.ndarray:
        with gzip.open(MIRROR / name) as fh:
            raw = fh.read()
        return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, D).astype(np.float32) / 255

    try:
        return (
            images("train-images-idx3-ubyte.gz")[:n_samples],
            images("t10k-images-idx3-ubyte.gz")[:n_test],
            "MNIST (mirror)",
        )
    except OSError:
        rng = np.random.default_rng(0)
        return (
            rng.random((n_samples, D), dtype=np.float32),
            rng.random((n_test, D), dtype=np.float32),
            "uniform noise (MNIST mirror not found)",
        )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` runs after one warm-up."""
    fn()
    sync(device)
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def naive_parzen(x: torch.Tensor, mu: torch.Tensor, sigma: float, batch: int = 10) -> torch.Tensor:
    """As the original Theano code: for each batch, the full (batch, m, D) difference tensor."""
    out = []
    for i in range(0, x.shape[0], batch):
        a = (x[i : i + batch, None, :] - mu[None]) / sigma
        e = -0.5 * (a**2).sum(2)
        out.append(torch.logsumexp(e, dim=1) - math.log(mu.shape[0]))
    d = x.shape[1]
    return torch.cat(out) - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi)


def run_case(case: str, device: torch.device, quick: bool) -> dict:
    from gae.evaluation.parzen import parzen_log_likelihood
    from gae.ops import mixture_logpdf

    n = 2000 if quick else 10000
    result: dict = {"case": case}
    if case == "matmul":
        size = 2048 if quick else 4096
        a = torch.randn(size, size, device=device)
        b = torch.randn(size, size, device=device)
        seconds = timed(lambda: a @ b, device, repeat=3)
        result.update(seconds=seconds, gflop=2 * size**3 / 1e9, shape=f"{size}^2 x {size}")
    elif case in ("parzen_1", "parzen_grid", "parzen_f64", "naive", "baseline"):
        samples, test, source = load_mnist(n, n)
        result["data"] = source
        s = torch.from_numpy(samples).to(device)
        x = torch.from_numpy(test).to(device)
        if case == "baseline":
            result.update(seconds=0.0, gflop=0.0)
        elif case in ("parzen_1", "parzen_grid"):
            sigmas = [0.2] if case == "parzen_1" else GRID
            seconds = timed(lambda: parzen_log_likelihood(x, s, sigmas, device=device), device)
            result.update(seconds=seconds, gflop=2 * n * n * D / 1e9, n_sigmas=len(sigmas))
        elif case == "parzen_f64":
            sub = n // 10
            ll64 = []
            seconds = timed(
                lambda: ll64.append(
                    parzen_log_likelihood(
                        x[:sub], s, [0.1, 0.2], device=device, dtype=torch.float64
                    )
                ),
                device,
            )
            ll32 = parzen_log_likelihood(x[:sub], s, [0.1, 0.2], device=device)
            diff = (ll32 - ll64[-1]).abs()
            result.update(
                seconds=seconds * n / sub,
                measured_seconds=seconds,
                extrapolated_from=f"{sub} test images",
                gflop=2 * n * n * D / 1e9,
                float32_vs_float64={
                    "max_abs_diff_per_image_nats": float(diff.max()),
                    "abs_diff_of_mean_nats": [
                        float((ll32[i].mean() - ll64[-1][i].mean()).abs()) for i in range(2)
                    ],
                    "sigmas": [0.1, 0.2],
                },
            )
        else:
            sub = max(10, n // 100)
            seconds = timed(lambda: naive_parzen(x[:sub], s, 0.2), device)
            check = parzen_log_likelihood(x[:sub], s, 0.2, device=device)[0]
            ref = naive_parzen(x[:sub], s, 0.2).double().cpu()
            result.update(
                seconds=seconds * n / sub,
                measured_seconds=seconds,
                extrapolated_from=f"{sub} test images (batches of 10)",
                gflop=2 * n * n * D / 1e9,
                max_abs_diff_vs_fast=float((check - ref).abs().max()),
            )
    elif case == "mixture":
        g = torch.Generator().manual_seed(0)
        n_comp, d, q = 50000, 50, 2000
        means = torch.randn(n_comp, d, generator=g).to(device)
        logvars = (torch.rand(n_comp, d, generator=g) * 2 - 3).to(device)
        z = torch.randn(q, d, generator=g).to(device)
        seconds = timed(lambda: mixture_logpdf(z, means, logvars, 4096), device)
        result.update(
            seconds=seconds,
            gflop=3 * 2 * q * n_comp * d / 1e9,
            z_per_second=q / seconds,
            shape=f"{q} z x {n_comp} components x d={d}",
        )
    else:
        raise ValueError(case)
    result["gflops"] = result["gflop"] / result["seconds"] if result["seconds"] else None
    if case != "baseline":  # the reference rate again, in this process, right after the case:
        size = 2048 if quick else 4096  # other load on the machine shifts both alike
        a = torch.randn(size, size, device=device)
        result["matmul_gflops_here"] = 2 * size**3 / 1e9 / timed(lambda: a @ a, device, repeat=3)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


CASES = ["baseline", "matmul", "parzen_1", "parzen_grid", "parzen_f64", "naive", "mixture"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="2,000 x 2,000 instead of 10,000")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case, JSON on stdout
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.case:
        print(json.dumps(run_case(args.case, device, args.quick)))
        return

    results = {}
    for case in CASES:
        cmd = [sys.executable, __file__, "--case", case, "--device", args.device]
        cmd += ["--quick"] if args.quick else []
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"case {case} failed")
        results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {case}: {results[case]['seconds']:.2f} s", file=sys.stderr, flush=True)

    for r in results.values():
        if r.get("gflops"):
            r["fraction_of_matmul_rate"] = r["gflops"] / r["matmul_gflops_here"]
    naive_s = results["naive"]["seconds"]
    results["parzen_1"]["speedup_vs_naive"] = naive_s / results["parzen_1"]["seconds"]
    summary = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": os.getloadavg()[0],
        "platform": platform.platform(),
        "quick": args.quick,
        "targets": {
            "parzen_1 fraction_of_matmul_rate >= 0.5": results["parzen_1"][
                "fraction_of_matmul_rate"
            ]
            >= 0.5,
            "parzen_1 speedup_vs_naive >= 10": results["parzen_1"]["speedup_vs_naive"] >= 10,
            "peak_rss_mb < 2048 (fast cases)": all(
                results[c]["peak_rss_mb"] < 2048
                for c in ("parzen_1", "parzen_grid", "parzen_f64", "mixture")
            ),
        },
        "cases": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    from gae.io import atomic_write_json

    atomic_write_json(OUT, summary)

    header = (
        "| case | seconds | GFLOP | GFLOP/s | matmul GFLOP/s (same process) | fraction | "
        "peak RSS MB | note |"
    )
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(header)
    print("|" + "---|" * 8)
    for case, r in results.items():
        note = []
        if "n_sigmas" in r:
            note.append(f"{r['n_sigmas']} sigma(s)")
        if "extrapolated_from" in r:
            note.append(f"extrapolated from {r['extrapolated_from']}")
        if "speedup_vs_naive" in r:
            note.append(f"{r['speedup_vs_naive']:.0f}x the naive version")
        if "z_per_second" in r:
            note.append(f"{r['z_per_second']:.0f} z/s")
        gflops = f"{r['gflops']:.1f}" if r.get("gflops") else "-"
        frac = f"{r['fraction_of_matmul_rate']:.2f}" if r.get("fraction_of_matmul_rate") else "-"
        here = f"{r['matmul_gflops_here']:.1f}" if r.get("matmul_gflops_here") else "-"
        print(
            f"| {case} | {r['seconds']:.2f} | {r['gflop']:.1f} | {gflops} | {here} | {frac} | "
            f"{r['peak_rss_mb']:.0f} | {'; '.join(note)} |"
        )
    print(f"targets: {summary['targets']}")
    print(f"float32 vs float64: {results['parzen_f64']['float32_vs_float64']}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
