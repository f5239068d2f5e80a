"""Seconds per 50,000-image training epoch of every model kind at depths 1-4, with the real loop.

For each kind (``vae``, ``gae``: params.yaml's default GAE with its knn neighbour refresh and
the exact-prior validation bound, ``gae-slides``, ``vamp``) and depth (run
``bmnist-{kind}-L{depth}-z50`` under params.yaml, the paper preset), a ``gae.training.Trainer``
is built from ``gae.config.load_config`` and timed in three parts:

- ``steps_s``: minibatch steps (``Trainer.train_step``: objective, backward, clipping, Adam,
  the device-side log) of a real epoch, a measured number of them after a warm-up,
  extrapolated to the steps of a 50,000-image epoch (``_batches``: 500 at batch 100). The kinds
  of one depth are timed in turns (``--rounds``, the median round counts), so that a drifting
  machine load meets them all alike and their ratio holds;
- ``start_epoch_s``: the objective's per-epoch work, measured once (the GAE: re-encoding the
  50,000 exemplars and the neighbour search, ``GaeObjective.start_epoch``); with
  ``neighbour_refresh_epochs`` E > 1 also an epoch that reuses the lists
  (``start_epoch_reuse_s``), and ``start_epoch_mean_s`` averages the E epochs of one cycle;
- ``validation_s``: the validation bound at full size, measured once (``validation_elbo`` on
  all of x_valid under the model's own prior; the GAE's: the exact 50,000-component mixture).

``epoch_s`` is their sum (the start's mean), the validation divided by
``train.validate_every`` (``--config config/cpu.yaml`` measures the CPU preset's settings: one
thread, its neighbour search and refresh interval, validation every 5 epochs), and
``gae_over_vae`` the GAE/VAE ratio per depth (also of steps alone). Writes
benchmarks/out/training.json atomically (device, torch version, threads, n_train, batch size,
data source and every measured number). Not a test: numbers depend on the machine and its load.

    .venv/bin/python benchmarks/bench_training.py --quick     # ~4 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_training.py [--steps 100] [--device cuda] [--compile]
        [--threads N] [--kinds vae,gae] [--depths 1,2] [--out FILE]

``--compile`` also times the steps under ``train.compile`` (its compilation excluded: warm-up),
``reduce-overhead`` on CUDA, ``true`` elsewhere.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gae import training  # noqa: E402
from gae.config import load_config, updated  # noqa: E402
from gae.io import atomic_save_npz, atomic_write_text  # noqa: E402
from gae.settings import Config  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "training.json"
KINDS = ("vae", "gae", "gae-slides", "vamp")
DEPTHS = (1, 2, 3, 4)
EPOCH_IMAGES = 50_000
NO_EVALUATIONS = {"parzen": [], "loglik": [], "diagnostics": [], "latent": []}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _data_folder(scratch: Path) -> tuple[Path, str]:
    """The prepared bmnist (data/prepared/bmnist.npz), or synthetic binary data of its shape
    (50,000 / 10,000 / 10,000 x 784, each pixel on with probability 0.13, as in MNIST) when it
    is absent or unreadable; returns the data folder and a description for the JSON."""
    cfg = load_config(base=REPO / "params.yaml", overrides={"evaluate": NO_EVALUATIONS})
    from gae.data.prepare import load_prepared

    data = REPO / cfg.paths.data
    try:
        load_prepared(updated(cfg, {"paths": {"data": str(data)}}), "bmnist")
        meta = json.loads((data / "prepared" / "bmnist.json").read_text())
        source = meta.get("source") or meta.get("sources") or "unknown"
        return data, f"prepared bmnist ({data / 'prepared' / 'bmnist.npz'}; sources: {source})"
    except Exception as exc:  # noqa: BLE001 (any failure: fall back, and say so)
        rng = np.random.default_rng(0)
        splits = {
            f"x_{name}": (rng.random((n, 784)) < 0.13).astype(np.float32)
            for name, n in (("train", 50_000), ("valid", 10_000), ("test", 10_000))
        }
        atomic_save_npz(scratch / "data" / "prepared" / "bmnist.npz", **splits)
        return scratch / "data", f"synthetic binary data of bmnist's shape ({exc})"


def _config(
    data: Path, results: Path, device: str, compile_setting: Any, overlays: list[str]
) -> Config:
    runs = [f"bmnist-{kind}-L{depth}-z50" for kind in KINDS for depth in DEPTHS]
    train: dict[str, Any] = {"compile": compile_setting}
    return load_config(
        overlays,
        base=REPO / "params.yaml",
        preset=False,
        overrides={
            "device": device,
            "paths": {"data": str(data), "results": str(results)},
            "train": train,
            "runs": runs,
            "evaluate": NO_EVALUATIONS,
        },
    )


def _trainer(cfg: Config, run: str, cache: dict[str, Any]) -> training.Trainer:
    """A real Trainer; the data are read from disk once for all of them."""
    real = training.load_training_data
    if "data" not in cache:
        cache["data"] = real(cfg, "bmnist")
    training.load_training_data = lambda *_: cache["data"]
    try:
        return training.Trainer(cfg, run)
    finally:
        training.load_training_data = real


def time_steps(trainer: training.Trainer, warmup: int, steps: int) -> dict[str, float]:
    """Seconds per ``train_step`` over ``steps`` steps of epoch 1 (after ``warmup`` steps),
    and the steps of a 50,000-image epoch at the run's batch size."""
    device = trainer.device
    perm = torch.randperm(trainer.n_train, generator=trainer.perm_gen).to(device)
    batches = training._batches(perm, trainer.train_cfg.batch_size)
    need = warmup + steps
    batches = (batches * math.ceil(need / len(batches)))[:need]
    log = training.StepLog(len(batches))
    trainer.model.train()
    for step, index in enumerate(batches[:warmup], start=1):
        trainer.train_step(index, 1, step, log)
    log.read(upto=warmup)
    _sync(device)
    started = time.perf_counter()
    for step, index in enumerate(batches[warmup:], start=warmup + 1):
        trainer.train_step(index, 1, step, log)
    log.read()  # the epoch's one host synchronisation, as in train_epoch
    _sync(device)
    per_step = (time.perf_counter() - started) / steps
    epoch_steps = len(training._batches(torch.arange(EPOCH_IMAGES), trainer.train_cfg.batch_size))
    return {
        "step_ms": per_step * 1e3,
        "epoch_steps": epoch_steps,
        "steps_s": per_step * epoch_steps,
    }


def time_once(device: torch.device, fn) -> float:
    _sync(device)
    started = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - started


def measure_extras(trainer: training.Trainer, run: str) -> dict[str, Any]:
    """The per-epoch work besides the steps, each measured once at full size."""
    device = trainer.device
    # the objective's per-epoch work (GAE: encode all exemplars + neighbour search), once
    start_s = time_once(
        device, lambda: trainer.objective.start_epoch(trainer.model, trainer.x_train, 1)
    )
    row: dict[str, Any] = {"run": run, "n_train": trainer.n_train, "start_epoch_s": start_s}
    # neighbour_refresh_epochs E > 1: epochs 2..E re-encode the codes but reuse the lists
    refresh = int(getattr(trainer.objective, "refresh_every", 1) or 1)
    row["neighbour_refresh_epochs"] = refresh
    row["start_epoch_mean_s"] = start_s
    if refresh > 1:
        reuse_s = time_once(
            device, lambda: trainer.objective.start_epoch(trainer.model, trainer.x_train, 2)
        )
        row["start_epoch_reuse_s"] = reuse_s
        row["start_epoch_mean_s"] = (start_s + (refresh - 1) * reuse_s) / refresh
    gen = torch.Generator(device=device).manual_seed(0)
    row["validation_s"] = time_once(
        device,
        lambda: training.validation_elbo(
            trainer.model, trainer.x_train, trainer.x_valid, gen, trainer.eval_batch
        ),
    )
    row["n_valid"] = int(trainer.x_valid.shape[0])
    return row


def interleaved_steps(
    trainers: dict[str, training.Trainer], warmup: int, steps: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """Step times of several trainers, measured in turns: ``rounds`` rounds, each timing
    ceil(steps / rounds) steps of every trainer in turn, and each trainer's median round.

    Why in turns: on a shared or throttling machine the load drifts over minutes, and kinds
    timed one after the other would each meet a different load; in turns, every kind meets
    the same drift, so their ratio holds even where the absolute times do not."""
    per_round = max(1, math.ceil(steps / rounds))
    times: dict[str, list[float]] = {kind: [] for kind in trainers}
    timed: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for kind, trainer in trainers.items():
            timed[kind] = time_steps(trainer, warmup, per_round)
            times[kind].append(timed[kind]["step_ms"])
    out = {}
    for kind, values in times.items():
        step_ms = float(np.median(values))
        epoch_steps = timed[kind]["epoch_steps"]
        out[kind] = {
            "step_ms": step_ms,
            "step_ms_rounds": [round(v, 3) for v in values],
            "epoch_steps": epoch_steps,
            "steps_s": step_ms * epoch_steps / 1e3,
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (~4 min on 2 cores)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before")
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="time the kinds of a depth in turns, this many rounds (the median round counts)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: auto)")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)))
    parser.add_argument("--compile", action="store_true", help="also time train.compile steps")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="overlay on params.yaml, e.g. config/cpu.yaml (its device, threads, search, "
        "validation interval); repeatable",
    )
    args = parser.parse_args(argv)
    steps = args.steps or (16 if args.quick else 100)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 10)
    if args.threads:
        torch.set_num_threads(args.threads)
    device_name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    kinds = [k for k in args.kinds.split(",") if k]
    depths = [int(d) for d in args.depths.split(",") if d]
    began = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        data, source = _data_folder(Path(scratch))
        cfg = _config(data, Path(scratch) / "results", device_name, False, args.config)
        ccfg = None
        if args.compile:
            mode = "reduce-overhead" if device_name == "cuda" else True
            ccfg = _config(data, Path(scratch) / "results", device_name, mode, args.config)
        cache: dict[str, Any] = {}
        every = int(cfg.train.validate_every)
        for depth in depths:
            runs = {kind: f"bmnist-{kind}-L{depth}-z50" for kind in kinds}
            trainers = {kind: _trainer(cfg, run, cache) for kind, run in runs.items()}
            extras = {kind: measure_extras(trainers[kind], runs[kind]) for kind in kinds}
            stepped = interleaved_steps(trainers, warmup, steps, args.rounds)
            del trainers
            for kind in kinds:
                row = {"kind": kind, "depth": depth, **extras[kind], **stepped[kind]}
                # the extras scale with n_train (search: n^2); steps are already per 50,000
                # images. A run validating every V epochs pays validation_s / V per epoch
                per_epoch = row["start_epoch_mean_s"] + row["validation_s"] / every
                row["epoch_s"] = row["steps_s"] + per_epoch
                run = runs[kind]
                if ccfg is not None:
                    trainer = _trainer(ccfg, run, cache)
                    trainer.objective.start_epoch(trainer.model, trainer.x_train, 1)
                    compiled = time_steps(trainer, max(warmup, 5), steps)
                    row["compiled_step_ms"] = compiled["step_ms"]
                    row["compiled_steps_s"] = compiled["steps_s"]
                    row["compiled_epoch_s"] = compiled["steps_s"] + per_epoch
                rows.append(row)
                print(
                    f"{kind:<10} L{depth}  step {row['step_ms']:7.2f} ms  steps/epoch "
                    f"{row['steps_s']:7.2f} s  start_epoch {row['start_epoch_s']:6.2f} s  "
                    f"validation {row['validation_s']:6.2f} s  epoch {row['epoch_s']:7.2f} s"
                    + (
                        f"  compiled step {row['compiled_step_ms']:.2f} ms"
                        if "compiled_step_ms" in row
                        else ""
                    ),
                    flush=True,
                )
    ratios = []
    by = {(r["kind"], r["depth"]): r for r in rows}
    for depth in depths:
        vae, gae = by.get(("vae", depth)), by.get(("gae", depth))
        if vae and gae:
            ratio = {
                "depth": depth,
                "gae_over_vae": gae["epoch_s"] / vae["epoch_s"],
                "gae_over_vae_steps_only": gae["steps_s"] / vae["steps_s"],
            }
            ratios.append(ratio)
            print(
                f"depth {depth}: GAE/VAE epoch {ratio['gae_over_vae']:.2f}x "
                f"(steps only {ratio['gae_over_vae_steps_only']:.2f}x)"
            )
    device = torch.device(device_name)
    result = {
        "meta": {
            "device": device_name,
            "device_name": (
                torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else platform.processor() or platform.machine()
            ),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": __import__("os").cpu_count(),
            "quick": args.quick,
            "warmup_steps": warmup,
            "timed_steps": steps,
            "rounds": args.rounds,  # the kinds of a depth timed in turns; step_ms: median round
            "n_train": rows[0]["n_train"] if rows else None,
            "n_valid": rows[0]["n_valid"] if rows else None,
            "epoch_images": EPOCH_IMAGES,
            "batch_size": cfg.train.batch_size,
            "validate_every": cfg.train.validate_every,  # epoch_s: validation / V
            "neighbour_search": cfg.models["gae"].neighbour_search,
            "overlays": args.config,
            "hidden_units": cfg.model.hidden_units,
            "latent_dim": 50,
            "data": source,
            "params": "params.yaml and the overlays, models.{vae,gae,gae-slides,vamp} as there",
            "epoch_s": "steps_s (median round's step time x steps per 50,000 images) + "
            "start_epoch_mean_s + validation_s / validate_every (each measured once at full "
            "size; start_epoch_mean_s: a searching epoch's start and, with "
            "neighbour_refresh_epochs E > 1, E - 1 reusing ones', averaged)",
            "neighbour_refresh_epochs": cfg.models["gae"].neighbour_refresh_epochs,
            "wall_s": time.perf_counter() - began,
        },
        "rows": rows,
        "gae_over_vae": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} in {result['meta']['wall_s']:.0f} s")
    return result


if __name__ == "__main__":
    main()
