"""``results/report.md``: every table and figure of the reproduction, with the slides' numbers.

The report states the preset (overlays) and the settings that shaped the numbers, so a smoke
run's tables are never mistaken for the paper-scale ones.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from gae import __version__
from gae.config import run_dir
from gae.io import atomic_write_text, read_json
from gae.paths import (  # noqa: F401 (report_inputs, FIGURE_CAPTIONS: their home is gae.paths)
    DIAGNOSTICS_FILE,
    FIGURE_CAPTIONS,
    NEIGHBOURS_CAPTION,
    NEIGHBOURS_FIGURE,
    TABLE1,
    TABLE2,
    TABLE_TITLES,
    figure_caption,
    figure_paths,
    report_inputs,
    report_path,
    require_output,
    tables_dir,
)
from gae.settings import Config

log = logging.getLogger(__name__)

# The captions (FIGURE_CAPTIONS, TABLE_TITLES, NEIGHBOURS_CAPTION) live in gae.paths: the
# Snakemake HTML report (workflow/report/*.rst) shows the same strings.


# The memorisation numbers worth a glance (gae.evaluation.diagnostics), in this order.
DIAGNOSTIC_KEYS = (
    "samples_to_train.mean",
    "test_to_train.mean",
    "share_closer_than_test.min_test",
    "share_closer_than_test.test_q05",
    "parzen.training_images.mean",
    "n_samples",
    "n_train",
)


def _diagnostics_runs(cfg: Config) -> list[str]:
    return list(cfg.evaluate.diagnostics)


def _link(path: Path, report: Path) -> str:
    return Path(os.path.relpath(path, report.parent)).as_posix()


def _flat_scalars(obj: Any, prefix: str = "") -> dict[str, Any]:
    """The numbers of a (nested) JSON object, keyed by dotted path."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(_flat_scalars(value, f"{prefix}{key}."))
    elif isinstance(obj, bool | int | float):
        out[prefix.rstrip(".")] = obj
    return out


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _settings_lines(cfg: Config) -> list[str]:
    overlays = cfg.overlays
    preset = ", ".join(f"`{o}`" for o in overlays) if overlays else "none: the paper scale"
    subset, ev, model, train = cfg.data.subset, cfg.evaluation, cfg.model, cfg.train
    return [
        f"- Preset (overlays on `params.yaml`): {preset}",
        f"- Data subset (rows of train/valid/test): {subset.train or 'all'} / "
        f"{subset.valid or 'all'} / {subset.test or 'all'}",
        f"- Model: {model.hidden_units} hidden units, "
        f"{model.activation}, {model.layer} layers, {model.init} init; "
        f"training: up to {train.epochs} epochs, "
        f"batch {train.batch_size}, lr {train.lr}, patience {train.patience}",
        f"- Evaluation: {ev.n_samples} samples per run; Parzen on "
        f"{ev.parzen.n_test or 'all'} test images; log-likelihood S = "
        f"{ev.loglik.n_importance} (importance) / {ev.loglik.n_prior} (prior) on "
        f"{ev.loglik.n_test or 'all'} test images",
        f"- Seed {cfg.seed}, device `{cfg.device}`, gae {__version__}",
    ]


def _intro_lines(cfg: Config) -> list[str]:
    """The report's title, what it is, and the configuration; a reduced preset gets a warning
    up front, so a smoke run's numbers are never read as the paper-scale ones."""
    lines = [
        "# Generative Auto Encoder: reproduction report",
        "",
        "Kim, Kim & Hwang (2018, slides) beside a VAE baseline. Every number below was computed "
        "by this pipeline from the configuration stated here; the slides' numbers are shown "
        "beside ours, never mixed with them.",
        "",
        "## Configuration",
        "",
        *_settings_lines(cfg),
    ]
    if cfg.overlays:
        lines += [
            "",
            f"> Reduced preset ({', '.join(cfg.overlays)}): the numbers check that the pipeline "
            "works end to end; they are not comparable with the slides.",
        ]
    return lines


def _table_lines(cfg: Config) -> list[str]:
    """Tables 1 and 2 as ``gae tables`` wrote them in Markdown, each with links to its CSV and
    LaTeX versions (relative to the report, which sits above ``tables/``)."""
    lines: list[str] = []
    for title, name in ((TABLE_TITLES[TABLE1], TABLE1), (TABLE_TITLES[TABLE2], TABLE2)):
        table_md = require_output(tables_dir(cfg) / f"{name}.md", "gae tables").read_text()
        lines += [
            "",
            f"## {title}",
            "",
            table_md.rstrip(),
            "",
            f"(Also as [CSV]({name}.csv) and [LaTeX]({name}.tex) under `tables/`.)",
        ]
        lines[-1] = lines[-1].replace(f"]({name}", f"](tables/{name}")
    return lines


def _figure_lines(cfg: Config, report: Path) -> list[str]:
    """Every planned figure, linked relative to the report, under a heading from its file name
    and with its caption; per-data-set figures name their data set."""
    lines = ["", "## Figures"]
    for figure in figure_paths(cfg):
        require_output(figure, "gae figures")
        heading = figure.stem.replace("_", " ")
        lines += [
            "",
            f"### {heading}",
            "",
            f"![{heading}]({_link(figure, report)})",
            "",
            figure_caption(figure),  # gae.paths: the HTML report's caption too
        ]
    return lines


def _diagnostics_table(runs: list[str], rows: dict[str, dict[str, Any]]) -> list[str]:
    """A Markdown table of the memorisation numbers, one row a run. The columns are
    ``DIAGNOSTIC_KEYS`` that any run has; when none is there (an older or different
    diagnostics file), the first eight float-valued keys, so the table is never silently
    empty while numbers exist. A run lacking a column shows "—"."""
    present = dict.fromkeys(k for r in rows.values() for k in r)
    keys = [k for k in DIAGNOSTIC_KEYS if k in present] or [
        k for k in present if isinstance(next(r[k] for r in rows.values() if k in r), float)
    ][:8]
    if not keys:
        return []
    lines = [
        "",
        "| run | " + " | ".join(keys) + " |",
        "| --- | " + " | ".join("---" for _ in keys) + " |",
    ]
    lines += [
        "| " + run + " | " + " | ".join(_fmt_value(rows[run].get(k, "—")) for k in keys) + " |"
        for run in runs
    ]
    return lines


def _diagnostics_lines(cfg: Config, report: Path) -> list[str]:
    """The memorisation section (``evaluate.diagnostics`` runs): their numbers in one table,
    then each run's nearest-neighbour figure; nothing when no run is diagnosed."""
    runs = _diagnostics_runs(cfg)
    if not runs:
        return []
    lines = [
        "",
        "## Memorisation diagnostics",
        "",
        NEIGHBOURS_CAPTION,
    ]
    rows = {}
    for run in runs:
        diag_file = run_dir(cfg, run) / DIAGNOSTICS_FILE
        diag = read_json(require_output(diag_file, f"gae diagnose {run}"))
        rows[run] = _flat_scalars(diag)
    lines += _diagnostics_table(runs, rows)
    for run in runs:
        figure = require_output(run_dir(cfg, run) / NEIGHBOURS_FIGURE, f"gae diagnose {run}")
        lines += ["", f"### {run}", "", f"![{run} nearest neighbours]({_link(figure, report)})"]
    return lines


def make_report(cfg: Config) -> Path:
    """Gather tables, figures and diagnostics into results/report.md."""
    path = report_path(cfg)
    lines = _intro_lines(cfg)
    lines += _table_lines(cfg)
    lines += _figure_lines(cfg, path)
    lines += _diagnostics_lines(cfg, path)
    atomic_write_text(path, "\n".join(lines) + "\n")
    log.info("wrote %s", path)
    return path
