"""One study variant's training curves, from its record (docs/study/record/{variant}/...).

    python workflow/scripts/study_curves.py VARIANT [--record DIR] [--sheet FILE] --out FILE.png

The `study_figure` rule of workflow/rules/study.smk runs it. Like the table (study_table.py) it
reads only the committed train_log.csv files, so a fresh clone redraws it. One panel per run
(model and depth), one line per seed: the validation objective (the bound the run's early
stopping reads, in nats) at each validated epoch. A run's seeds lying on top of each other is
what makes a paired difference of one seed worth reading.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gae.io import atomic_open  # noqa: E402
from gae.paths import TRAIN_LOG_FILE  # noqa: E402
from gae.study import StudyRow, variant_arguments  # noqa: E402

PANELS_PER_LINE = 4


def validation_curve(path: Path) -> tuple[list[int], list[float]]:
    """(epochs, validation objective) of the validated epochs of one train_log.csv."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["valid_objective"]]
    return [int(r["epoch"]) for r in rows], [float(r["valid_objective"]) for r in rows]


def draw(row: StudyRow, record: Path) -> plt.Figure:
    """The figure: a panel per run, at most ``PANELS_PER_LINE`` to a line, a line per seed (runs
    not recorded yet are left blank)."""
    cols = min(len(row.runs), PANELS_PER_LINE)
    lines = math.ceil(len(row.runs) / cols)
    fig, axes = plt.subplots(
        lines, cols, figsize=(3.2 * cols, 2.8 * lines), squeeze=False, sharey=False
    )
    panels = axes.reshape(-1)
    for ax in panels[len(row.runs) :]:
        ax.set_visible(False)
    for ax, run in zip(panels, row.runs, strict=False):
        for seed in row.seeds:
            log = record / row.variant / f"seed{seed}" / run / TRAIN_LOG_FILE
            if log.is_file():
                ax.plot(*validation_curve(log), marker="o", markersize=3, label=f"seed {seed}")
        ax.set_title(run, fontsize=8)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for line in axes:
        line[0].set_ylabel("validation objective (nats)")
    panels[len(row.runs) - 1].legend(fontsize=7)
    fig.suptitle(f"{row.variant}: validation objective per epoch", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    args = variant_arguments(__doc__.split("\n")[0], argv)
    if args.row is None or args.out is None:
        print(
            f"study_curves: no variant {args.variant!r} in {args.sheet}, or no --out",
            file=sys.stderr,
        )
        return 2
    fig = draw(args.row, args.record)
    with atomic_open(args.out) as handle:  # no metadata: the same record draws the same bytes
        fig.savefig(handle, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    print(f"study_curves: {args.variant} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
