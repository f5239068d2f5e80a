"""Paired differences between two study rows, run by run, from the committed records.

    python workflow/scripts/study_paired.py VARIANT OTHER [--seed 1234] [--record DIR]

For every run both rows trained (same seed), the mean ± s.e. of log p(x_i) in VARIANT minus
OTHER over the same test images (gae.study.paired_between_rows): e.g. `cpu-cells cpu-preset`
gives what the cell-by-cell search changes against FAISS's. Reads docs/study/record/ only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gae.errors import GaeError
from gae.study import paired_between_rows

RECORD = Path("docs/study/record")


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant")
    parser.add_argument("other")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--record", type=Path, default=RECORD)
    args = parser.parse_args(argv)
    folders = [args.record / row / f"seed{args.seed}" for row in (args.variant, args.other)]
    for folder in folders:
        if not folder.is_dir():
            raise GaeError(f"{folder} does not exist: no record of that row and seed")
    runs = sorted({p.name for p in folders[0].iterdir()} & {p.name for p in folders[1].iterdir()})
    lines = []
    for run in runs:
        mean, sem, n = paired_between_rows(args.record, args.variant, args.other, args.seed, run)
        lines.append(f"{run}: {args.variant} - {args.other} = {mean:+.3f} ± {sem:.3f} ({n} images)")
    if not lines:
        raise GaeError(f"rows {args.variant} and {args.other} share no run at seed {args.seed}")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    try:
        main()
    except GaeError as exc:
        sys.exit(f"study_paired: {exc}")
