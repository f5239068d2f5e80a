"""Milliseconds per Adam step of torch's three implementations, on the real models' parameters.

For each model kind (``vae``; ``vamp`` adds its pseudo-inputs) and depth 1-4 (params.yaml's
architecture, latent size 50, the 784-pixel data sets), the parameters get fixed random
gradients and ``optimizer.step()`` is timed for torch's single-tensor loop (``foreach=False``,
the CPU's default), the multi-tensor one (``foreach=True``) and the fused kernel
(``fused=True``, what ``gae.training._make_adam`` uses). The three are timed in turns,
``--rounds`` rounds of ``--steps`` steps each, and the median round counts, so that a drifting
machine load meets them alike and their ratio holds. Also records how far the fused kernel's
parameters are from the loop's after ``--steps`` identical steps (rounding only: the same
update). Writes benchmarks/out/optimizer.json atomically. Not a test: times depend on the
machine and its load.

    .venv/bin/python benchmarks/bench_optimizer.py [--threads 1] [--device cpu] [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gae.config import load_config  # noqa: E402
from gae.io import atomic_write_text  # noqa: E402
from gae.models import architecture_from_config, build_model  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "optimizer.json"
VARIANTS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def _parameters(kind: str, depth: int, device: torch.device) -> list[torch.nn.Parameter]:
    cfg = load_config(base=REPO / "params.yaml")
    architecture = architecture_from_config(cfg, "bmnist", depth, 50, 784)
    if kind == "vamp":
        architecture["n_pseudo_inputs"] = int(cfg.models["vamp"].n_pseudo_inputs)
    model = build_model(kind, architecture, meta={}).to(device)
    return [p for p in model.parameters() if p.requires_grad]


def _optimizers(
    params: list[torch.nn.Parameter], lr: float
) -> dict[str, tuple[torch.optim.Adam, list[torch.nn.Parameter]]]:
    """One Adam per variant, each over its own copy of the parameters with the same gradients."""
    gen = torch.Generator(device=params[0].device).manual_seed(0)
    grads = [torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype) for p in params]
    out = {}
    for name, options in VARIANTS.items():
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for copy, grad in zip(copies, grads, strict=True):
            copy.grad = grad.clone()
        out[name] = (torch.optim.Adam(copies, lr=lr, **options), copies)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variants(
    kind: str, depth: int, device: torch.device, steps: int, rounds: int
) -> dict[str, Any]:
    params = _parameters(kind, depth, device)
    optimizers = _optimizers(params, lr=1e-3)
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for optimizer, _ in optimizers.values():  # warm-up: state allocation, first kernels
        optimizer.step()
    for _ in range(rounds):
        for name, (optimizer, _) in optimizers.items():
            _sync(device)
            started = time.perf_counter()
            for _ in range(steps):
                optimizer.step()
            _sync(device)
            times[name].append((time.perf_counter() - started) / steps * 1e3)
    loop, fused = optimizers["loop"][1], optimizers["fused"][1]
    gap = max(float((a - b).abs().max()) for a, b in zip(loop, fused, strict=True))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "kind": kind,
        "depth": depth,
        "n_parameters": sum(p.numel() for p in params),
        "step_ms": medians,
        "step_ms_rounds": {n: [round(v, 3) for v in values] for n, values in times.items()},
        "loop_over_fused": medians["loop"] / medians["fused"],
        "fused_vs_loop_max_abs_parameter_difference": gap,
        "identical_steps": 1 + rounds * steps,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--kinds", default="vae,vamp")
    parser.add_argument("--depths", default="1,2,3,4")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [
        time_variants(kind, int(depth), device, args.steps, args.rounds)
        for kind in args.kinds.split(",")
        for depth in args.depths.split(",")
    ]
    for row in rows:
        ms = row["step_ms"]
        print(
            f"{row['kind']} L{row['depth']}: loop {ms['loop']:.2f} ms, foreach "
            f"{ms['foreach']:.2f} ms, fused {ms['fused']:.2f} ms "
            f"({row['loop_over_fused']:.1f}x)",
            flush=True,
        )
    result = {
        "meta": {
            "device": str(device),
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": args.threads,
            "steps_per_round": args.steps,
            "rounds": args.rounds,
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
