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
from gae.errors import GaeError
from gae.io import atomic_write_text, read_json
from gae.paths import (  # noqa: F401 (report_inputs: the layout's home is gae.paths)
    DIAGNOSTICS_FILE,
    NEIGHBOURS_FIGURE,
    TABLE1,
    TABLE2,
    figure_paths,
    report_inputs,
    report_path,
    tables_dir,
)

log = logging.getLogger(__name__)

FIGURE_CAPTIONS = {
    "samples": "Generated samples, GAE vs VAE (the slides' 'Generated images').",
    "latent_density": "Kernel density of 1,000 z from the prior of the 2-D latent runs, "
    "depth 1 vs 2 (the slides' 'Visualization of latent space').",
    "latent_scatter": "Test images mapped by q(z|x), coloured by class, depth 1 vs 2.",
    "training_curves": "Training objective and validation ELBO per epoch.",
}


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


def _diagnostics_runs(cfg: dict[str, Any]) -> list[str]:
    return list(cfg["evaluate"].get("diagnostics", []))


def _require(path: Path, command: str) -> Path:
    if not path.is_file():
        raise GaeError(f"{path} is missing; it is produced by `{command}` (or run `make run`)")
    return path


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


def _settings_lines(cfg: dict[str, Any]) -> list[str]:
    overlays = cfg.get("overlays") or []
    preset = ", ".join(f"`{o}`" for o in overlays) if overlays else "none: the paper scale"
    subset = cfg["data"].get("subset") or {}
    ev = cfg["evaluation"]
    return [
        f"- Preset (overlays on `params.yaml`): {preset}",
        f"- Data subset (rows of train/valid/test): {subset.get('train') or 'all'} / "
        f"{subset.get('valid') or 'all'} / {subset.get('test') or 'all'}",
        f"- Model: {cfg['model'].get('hidden_units')} hidden units, "
        f"{cfg['model'].get('activation')}, {cfg['model'].get('layer', 'dense')} layers, "
        f"{cfg['model'].get('init', 'xavier')} init; "
        f"training: up to {cfg['train'].get('epochs')} epochs, "
        f"batch {cfg['train'].get('batch_size')}, lr {cfg['train'].get('lr')}, "
        f"patience {cfg['train'].get('patience')}",
        f"- Evaluation: {ev.get('n_samples')} samples per run; Parzen on "
        f"{ev.get('parzen', {}).get('n_test') or 'all'} test images; log-likelihood S = "
        f"{ev.get('loglik', {}).get('n_importance')} (importance) / "
        f"{ev.get('loglik', {}).get('n_prior')} (prior) on "
        f"{ev.get('loglik', {}).get('n_test') or 'all'} test images",
        f"- Seed {cfg['seed']}, device `{cfg['device']}`, gae {__version__}",
    ]


def make_report(cfg: dict[str, Any]) -> Path:
    """Gather tables, figures and diagnostics into results/report.md."""
    path = report_path(cfg)
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
    if cfg.get("overlays"):
        lines += [
            "",
            f"> Reduced preset ({', '.join(cfg['overlays'])}): the numbers check that the pipeline "
            "works end to end; they are not comparable with the slides.",
        ]
    for title, name in (("Table 1: Parzen window", TABLE1), ("Table 2: log-likelihood", TABLE2)):
        table_md = _require(tables_dir(cfg) / f"{name}.md", "gae tables").read_text()
        lines += [
            "",
            f"## {title}",
            "",
            table_md.rstrip(),
            "",
            f"(Also as [CSV]({name}.csv) and [LaTeX]({name}.tex) under `tables/`.)",
        ]
        lines[-1] = lines[-1].replace(f"]({name}", f"](tables/{name}")

    lines += ["", "## Figures"]
    for figure in figure_paths(cfg):
        _require(figure, "gae figures")
        stem = figure.stem
        key = next((k for k in FIGURE_CAPTIONS if stem.startswith(k)), None)
        caption = FIGURE_CAPTIONS.get(key, "") if key else ""
        detail = stem.split("_", 1)[1] if key in ("samples",) else stem.rsplit("_", 1)[-1]
        heading = stem.replace("_", " ")
        lines += [
            "",
            f"### {heading}",
            "",
            f"![{heading}]({_link(figure, path)})",
            "",
            caption + (f" Data set: {detail}." if key in ("samples", "training_curves") else ""),
        ]

    runs = _diagnostics_runs(cfg)
    if runs:
        lines += [
            "",
            "## Memorisation diagnostics",
            "",
            "Generated samples beside their nearest training images (`gae diagnose`).",
        ]
        rows = {}
        for run in runs:
            diag = read_json(
                _require(run_dir(cfg, run) / DIAGNOSTICS_FILE, f"gae diagnose {run}")
            )
            rows[run] = _flat_scalars(diag)
        present = dict.fromkeys(k for r in rows.values() for k in r)
        keys = [k for k in DIAGNOSTIC_KEYS if k in present] or [
            k for k in present if isinstance(next(r[k] for r in rows.values() if k in r), float)
        ][:8]
        if keys:
            lines += [
                "",
                "| run | " + " | ".join(keys) + " |",
                "| --- | " + " | ".join("---" for _ in keys) + " |",
            ]
            lines += [
                "| "
                + run
                + " | "
                + " | ".join(_fmt_value(rows[run].get(k, "—")) for k in keys)
                + " |"
                for run in runs
            ]
        for run in runs:
            figure = _require(run_dir(cfg, run) / NEIGHBOURS_FIGURE, f"gae diagnose {run}")
            lines += ["", f"### {run}", "", f"![{run} nearest neighbours]({_link(figure, path)})"]
    atomic_write_text(path, "\n".join(lines) + "\n")
    log.info("wrote %s", path)
    return path
