"""One study variant's table, from its record (docs/study/record/{variant}/seed{seed}/{run}/).

    python workflow/scripts/study_table.py VARIANT [--record DIR] [--sheet FILE] [--out FILE]

The `study_table` rule of workflow/rules/study.smk runs it; it reads only the committed small
outputs (train_log.csv, loglik.json, loglik_images.csv), so the table can be rebuilt from a
fresh clone, byte for byte (tests/test_study.py checks the committed tables). Each row: the
run and seed, the data variant, which test images and how many importance samples, the mean
test log p(x) with its standard error, the paired difference to the VAE of the same depth and
latent size (same seed, same test images), and how training ended.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from gae.config import parse_run_name
from gae.io import atomic_write_text
from gae.paths import LOGLIK_FILE, TRAIN_LOG_FILE
from gae.study import (
    PER_IMAGE_RECORD,
    StudyRow,
    paired_difference,
    variant_arguments,
)

HEADER = (
    "| run | seed | data | test images | S | log p(x) | paired − VAE | epochs (best) |",
    "|---|---|---|---|---|---|---|---|",
)


def training_summary(path: Path) -> str:
    """``epochs (best epoch)`` from train_log.csv (best = highest validation objective)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    validated = [r for r in rows if r["valid_objective"]]  # empty: not a validated epoch
    if not validated:
        return "–"
    best = max(validated, key=lambda r: float(r["valid_objective"]))
    return f"{rows[-1]['epoch']} ({best['epoch']})"


def paired(folder: Path, baseline: Path) -> str:
    """Mean ± s.e. of log p(x_i) minus the baseline's, image by image; – when not paired."""
    ours, theirs = folder / PER_IMAGE_RECORD, baseline / PER_IMAGE_RECORD
    result = paired_difference(ours, theirs) if ours.is_file() and theirs.is_file() else None
    if result is None:
        return "–"
    mean, sem, _ = result
    return f"{mean:+.2f} ± {sem:.2f}"


def images_cell(result: dict) -> str:
    images = result.get("test_images") or {}
    n = result.get("n_test")
    return f"all {n}" if images.get("complete") else f"{n} random (seed {images.get('seed')})"


def baseline_of(run: str, runs: tuple[str, ...]) -> str | None:
    """The VAE run of the same data set, depth and latent size in the row, if any."""
    spec = parse_run_name(run)
    if spec.model == "vae":
        return None
    name = f"{spec.dataset}-vae-L{spec.depth}-z{spec.latent_dim}"
    return name if name in runs else None


def recorded_result(folder: Path) -> dict | None:
    """A run's recorded loglik.json, or None where it has none yet."""
    path = folder / LOGLIK_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def table_line(row: StudyRow, seed: int, run: str, record: Path, result: dict | None) -> str:
    """One run's line; ``result`` is its recorded loglik.json (None: not scored yet)."""
    folder = record / row.variant / f"seed{seed}" / run
    trained = record / (row.models_from or row.variant) / f"seed{seed}" / run  # models_from
    epochs = training_summary(trained / TRAIN_LOG_FILE)
    if result is None:
        return f"| {run} | {seed} | – | – | – | – | – | {epochs} |"
    imp = result["estimators"]["importance"]
    vae = baseline_of(run, row.runs)
    diff = paired(folder, folder.parent / vae) if vae else "–"
    return (
        f"| {run} | {seed} | {result.get('data_variant') or '?'} | {images_cell(result)} | "
        f"{imp['n_importance']} | {imp['mean']:.2f} ± {imp['sem']:.2f} | {diff} | {epochs} |"
    )


def make_table(row: StudyRow, record: Path) -> str:
    settings = " ".join(f"`{s}`" for s in row.sets) or "none"
    overlays = " ".join(f"`{o}`" for o in row.overlays) or "none (the paper preset)"
    lines = [
        f"### Study variant `{row.variant}`",
        "",
        f"{row.description}",
        "",
        f"Overlays: {overlays}. Settings: {settings}. Seeds: {', '.join(map(str, row.seeds))}.",
        "Importance-sampled test log p(x) in nats (higher is better), mean ± s.e. over test "
        "images; paired differences image by image on the same test images.",
        "",
        *HEADER,
    ]
    results = {
        (seed, run): recorded_result(record / row.variant / f"seed{seed}" / run)
        for seed in row.seeds
        for run in row.runs
    }
    lines += [table_line(row, seed, run, record, result) for (seed, run), result in results.items()]
    bounds = sorted(prior_bounds(results.values()))
    if bounds:
        lines += [
            "",
            f"GAE runs: log p(z) is the lower bound from the {', '.join(map(str, bounds))} "
            "mixture components nearest each test image (`evaluation.loglik.prior_components`, "
            "docs/evaluation.md), so their estimates can only be below the exact prior's.",
        ]
    if row.models_from:
        lines += ["", f"Models: those of `{row.models_from}` (trained there), scored again."]
    return "\n".join(lines) + "\n"


def prior_bounds(results) -> set[int]:
    """The K of every recorded run scored with the K-nearest-component lower bound of log p(z)."""
    ks = (r["estimators"]["importance"].get("prior_components") for r in results if r)
    return {int(k) for k in ks if k is not None}


def main(argv: list[str]) -> int:
    args = variant_arguments(__doc__.splitlines()[0], argv)  # --out absent: print the table
    if args.row is None:
        print(f"study_table: no variant {args.variant!r} in {args.sheet}", file=sys.stderr)
        return 2
    text = make_table(args.row, args.record)
    if args.out is None:
        print(text, end="")
    else:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
