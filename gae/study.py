"""The study sheet (``config/study.tsv``): every study variant once, its seeds as a column.

Why a sheet: the study behind ``docs/gae-study.md`` used to be hand-written overlay files (one
per seed) and shell scripts outside the pipeline. Here each variant is one row, validated once
(``workflow/schemas/study.schema.yaml`` plus the rules below), and ``workflow/rules/study.smk``
expands it into training and evaluation jobs under ``results/study/{variant}/seed{seed}/``.

Columns (tab-separated; ``-`` = empty):

- ``variant``: the row's name, ``[a-z0-9][a-z0-9-]*``, unique;
- ``overlays``: overlay files applied after ``params.yaml`` (space-separated, e.g.
  ``config/cpu.yaml``), the preset the variant starts from;
- ``set``: ``KEY.PATH=VALUE`` settings applied after the overlays (space-separated; VALUE is
  YAML, as ``gae --set``): the few settings that really differ;
- ``runs``: run names (space-separated); they need not be in ``params.yaml``'s ``runs``;
- ``seeds``: the seeds (space-separated integers), each a separate copy of every run;
- ``evaluations``: ``loglik`` (importance-sampled test log-likelihood) for now;
- ``continues``: ``-``, or an earlier row whose trained models this row continues (more epochs,
  another schedule): each of its jobs starts from that row's model.pt of the same seed and run
  (``gae train --init-from``, an input edge of the rule, never a copy); its seeds and runs must
  be among that row's;
- ``models_from``: ``-``, or an earlier row whose trained models this row scores again,
  without training (another estimator, the whole test set): its configuration is that row's
  plus its own ``set``, which may hold ``evaluation.*`` keys only (its ``overlays`` are ``-``);
  each job reads that row's model.pt of the same seed and run (``gae loglik --model``, an input
  edge); its seeds and runs must be among that row's;
- ``description``: one line for the tables.

Each row's effective configuration is built and validated here with ``gae.config.load_config``,
so a bad row fails before any job, naming the sheet, the row and the key. Torch-free, so the
workflow parses without it.
"""

from __future__ import annotations

import csv
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from gae.config import load_config, parse_run_name
from gae.errors import ConfigError, GaeError
from gae.paths import MODEL_FILE
from gae.settings import Config

STUDY_SHEET = Path("config/study.tsv")
STUDY_SCHEMA = Path("workflow/schemas/study.schema.yaml")
STUDY_RESULTS = Path("results/study")
STUDY_RECORD = Path("docs/study/record")  # the small outputs, committed
EVALUATIONS = ("loglik",)
# data.* keys a row may set: those applied when data are LOADED. Keys that shape the prepared
# files (bmnist_source, frey_split, ...) would need another data/prepared, which rows share.
ROW_DATA_KEYS = ("data.subset", "data.subset_seed")


@dataclass(frozen=True)
class StudyRow:
    """One variant of the study: its settings, runs, seeds and evaluations."""

    variant: str
    overlays: tuple[str, ...]
    sets: tuple[str, ...]
    runs: tuple[str, ...]
    seeds: tuple[int, ...]
    evaluations: tuple[str, ...]
    description: str
    continues: str | None = None
    models_from: str | None = None

    @property
    def trains(self) -> bool:
        """False for a row that only scores an earlier row's models (``models_from``)."""
        return self.models_from is None

    def folder(self, seed: int, root: Path = STUDY_RESULTS) -> Path:
        """Where this row's copy with ``seed`` writes: ``{root}/{variant}/seed{seed}``."""
        return root / self.variant / f"seed{seed}"

    def settings(self, seed: int) -> list[str]:
        """The row's ``--set`` texts for ``seed``, then those every study job gets: its seed,
        its results folder, and ``runs`` = the row's runs with empty ``evaluate`` lists (so a
        job's command line, hence its Snakemake params, depends on its row alone: editing
        params.yaml's run lists re-runs no study job)."""
        return [
            *self.sets,
            f"seed={seed}",
            f"paths.results={self.folder(seed)}",
            "runs=[" + ", ".join(self.runs) + "]",
            "evaluate={parzen: [], loglik: [], diagnostics: [], latent: []}",
        ]

    def gae_arguments(self, seed: int) -> list[str]:
        """The ``gae`` options that give a job this row's configuration for ``seed``."""
        return [f"--config={path}" for path in self.overlays] + [
            f"--set={text}" for text in self.settings(seed)
        ]

    def start_model(self, seed: int, run: str, root: Path = STUDY_RESULTS) -> Path | None:
        """The model.pt a continuation starts from (``continues``), else None."""
        if self.continues is None:
            return None
        return _row_model(root, self.continues, seed, run)

    def model(self, seed: int, run: str, root: Path = STUDY_RESULTS) -> Path:
        """The model.pt this row's evaluations score: its own, or ``models_from``'s."""
        return _row_model(root, self.models_from or self.variant, seed, run)

    def config(self, seed: int, params: Path, preset: bool = False) -> Config:
        """The effective configuration of this row's jobs with ``seed`` (validated); like the
        jobs (``gae --no-preset``), without the preset written into ``params``."""
        sets = self.settings(seed)
        return load_config(list(self.overlays), base=params, sets=sets, preset=preset)


def _row_model(root: Path, variant: str, seed: int, run: str) -> Path:
    """Where study row ``variant`` writes the model.pt of ``run`` with ``seed``."""
    return root / variant / f"seed{seed}" / "runs" / run / MODEL_FILE


def _words(value: str | None) -> tuple[str, ...]:
    value = (value or "").strip()
    return () if value in ("", "-") else tuple(shlex.split(value))


def _row_error(sheet: Path, line: int, variant: str, message: str) -> ConfigError:
    return ConfigError(f"{sheet}, line {line} (variant {variant!r}): {message}")


def _parse_row(sheet: Path, line: int, raw: dict[str, str]) -> StudyRow:
    variant = (raw.get("variant") or "").strip()
    try:
        seeds = tuple(int(s) for s in _words(raw.get("seeds")))
    except ValueError as exc:
        raise _row_error(sheet, line, variant, f"seeds must be integers ({exc})") from None
    row = StudyRow(
        variant=variant,
        overlays=_words(raw.get("overlays")),
        sets=_words(raw.get("set")),
        runs=_words(raw.get("runs")),
        seeds=seeds,
        evaluations=_words(raw.get("evaluations")),
        description=(raw.get("description") or "").strip(),
        continues=(_words(raw.get("continues")) or (None,))[0],
        models_from=(_words(raw.get("models_from")) or (None,))[0],
    )
    _check_row(sheet, line, row)
    return row


def _check_row(sheet: Path, line: int, row: StudyRow) -> None:
    """The rules a schema cannot state: run names, files, keys, evaluations."""
    for run in row.runs:
        try:
            parse_run_name(run)
        except GaeError as exc:
            raise _row_error(sheet, line, row.variant, str(exc)) from None
    for path in row.overlays:
        if not Path(path).is_file():
            raise _row_error(sheet, line, row.variant, f"overlay {path} does not exist")
    for text in row.sets:
        key = text.split("=", 1)[0]
        if "=" not in text:
            raise _row_error(sheet, line, row.variant, f"set {text!r}: expected KEY.PATH=VALUE")
        if key.split(".")[0] in ("seed", "runs", "paths", "overlays") or (
            key.startswith("data.") and not key.startswith(ROW_DATA_KEYS)
        ):
            raise _row_error(
                sheet,
                line,
                row.variant,
                f"set {key!r}: a row may not set {key} (the seeds column, the runs column and "
                f"results/study/ set those; data.* keys other than {', '.join(ROW_DATA_KEYS)} "
                f"would need another data/prepared)",
            )
    unknown = sorted(set(row.evaluations) - set(EVALUATIONS))
    if unknown:
        raise _row_error(
            sheet, line, row.variant, f"unknown evaluations {unknown}; use {list(EVALUATIONS)}"
        )


def _schema_check(sheet: Path, rows: list[dict[str, str]], schema_path: Path) -> None:
    import jsonschema

    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for line, raw in enumerate(rows, start=2):
        for error in validator.iter_errors(raw):
            where = ".".join(str(p) for p in error.path) or "row"
            raise ConfigError(f"{sheet}, line {line}: {where}: {error.message} ({schema_path})")


def load_study(
    sheet: Path = STUDY_SHEET, schema_path: Path = STUDY_SCHEMA, params: Path | None = None
) -> list[StudyRow]:
    """The sheet's rows, each checked; with ``params``, every row's configuration is validated
    for every seed too (``load_config``: schema, unknown keys, cross-key rules)."""
    if not sheet.is_file():
        raise ConfigError(f"study sheet {sheet} does not exist")
    with open(sheet, newline="", encoding="utf-8") as handle:
        raws = [
            r
            for r in csv.DictReader(handle, delimiter="\t")
            if not (r.get("variant") or "").startswith("#")
        ]
    _schema_check(sheet, raws, schema_path)
    parsed = [_parse_row(sheet, line, raw) for line, raw in enumerate(raws, start=2)]
    seen: dict[str, StudyRow] = {}  # the rows so far, in sheet order, models_from resolved
    for line, row in enumerate(parsed, start=2):
        if row.variant in seen:
            raise _row_error(sheet, line, row.variant, "variant names must be unique")
        _check_continuation(sheet, line, row, seen)
        row = _scoring_row(sheet, line, row, seen)
        seen[row.variant] = row
        if params is not None:
            for seed in row.seeds:
                try:
                    row.config(seed, params)
                except GaeError as exc:
                    raise _row_error(sheet, line, row.variant, str(exc)) from None
    return list(seen.values())


def _source_row(
    sheet: Path, line: int, row: StudyRow, earlier: dict[str, StudyRow], column: str, why: str
) -> StudyRow:
    """The earlier row that ``column`` names (so the edges form no cycle), which trained every
    seed and run this row reads."""
    name = getattr(row, column)
    source = earlier.get(name)
    if source is None:
        raise _row_error(
            sheet,
            line,
            row.variant,
            f"{column} {name!r}, which is not a row above it "
            f"(rows above: {', '.join(earlier) or 'none'})",
        )
    if not source.trains:
        raise _row_error(
            sheet, line, row.variant, f"{column} {name!r}, a row that trains nothing itself"
        )
    missing_seeds = sorted(set(row.seeds) - set(source.seeds))
    missing_runs = [run for run in row.runs if run not in source.runs]
    if missing_seeds or missing_runs:
        raise _row_error(
            sheet,
            line,
            row.variant,
            f"{column} {name!r}, which has no seeds {missing_seeds} / runs {missing_runs}; {why}",
        )
    return source


def _check_continuation(
    sheet: Path, line: int, row: StudyRow, earlier: dict[str, StudyRow]
) -> None:
    if row.continues is not None:
        why = "a continuation starts from that row's own models"
        _source_row(sheet, line, row, earlier, "continues", why)


def _scoring_row(sheet: Path, line: int, row: StudyRow, earlier: dict[str, StudyRow]) -> StudyRow:
    """A ``models_from`` row with its effective settings: the source's overlays and settings,
    then its own ``evaluation.*`` settings (anything else would describe models it does not
    train)."""
    if row.models_from is None:
        return row
    if row.continues is not None or row.overlays:
        raise _row_error(
            sheet,
            line,
            row.variant,
            "a models_from row trains nothing: its continues and overlays must be '-' (it "
            "takes the overlays and settings of the row it scores)",
        )
    foreign = [text for text in row.sets if not text.startswith("evaluation.")]
    if foreign:
        raise _row_error(
            sheet,
            line,
            row.variant,
            f"set {foreign}: a models_from row may set evaluation.* keys only (its models "
            "are another row's)",
        )
    why = "a models_from row scores that row's own models"
    source = _source_row(sheet, line, row, earlier, "models_from", why)
    return replace(row, overlays=source.overlays, sets=(*source.sets, *row.sets))


def variant_arguments(description: str, argv: list[str] | None) -> Any:
    """The command line the study's table and figure scripts share: VARIANT [--record DIR]
    [--sheet FILE] [--out FILE]; ``args.row`` is the variant's row (None if the sheet has
    none)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("variant")
    parser.add_argument("--record", type=Path, default=STUDY_RECORD)
    parser.add_argument("--sheet", type=Path, default=STUDY_SHEET)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.row = {row.variant: row for row in load_study(args.sheet)}.get(args.variant)
    return args


def study_jobs(rows: list[StudyRow]) -> list[tuple[StudyRow, int, str]]:
    """Every (row, seed, run) of the study: trained, or scored (``models_from``)."""
    return [(row, seed, run) for row in rows for seed in row.seeds for run in row.runs]


# ---- the committed record of per-image estimates ------------------------------------------------

PER_IMAGE_RECORD = "loglik_images.csv"  # text, so the committed record stays diffable
PER_IMAGE_COLUMNS = ("test_index", "importance_log_px")


def record_per_image(npz_path: Path, csv_path: Path) -> None:
    """``loglik_images.npz`` -> ``loglik_images.csv`` (test row, importance estimate), every float
    written with 17 significant digits so that reading it back gives the same float64 values
    (the paired differences of the study tables are computed from it). Written atomically."""
    import io

    import numpy as np

    from gae.io import atomic_write_text

    with np.load(npz_path) as data:
        missing = [key for key in PER_IMAGE_COLUMNS if key not in data.files]
        if missing:
            raise GaeError(f"{npz_path} lacks {missing}; re-run its `gae loglik`")
        index, values = data["test_index"], data["importance_log_px"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PER_IMAGE_COLUMNS)
    writer.writerows((int(i), repr(float(v))) for i, v in zip(index, values, strict=True))
    atomic_write_text(csv_path, buffer.getvalue())


def read_per_image(csv_path: Path) -> tuple[Any, Any]:
    """(test_index int64, importance_log_px float64) from a ``record_per_image`` file."""
    import numpy as np

    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and set(PER_IMAGE_COLUMNS) - set(rows[0]):
        raise GaeError(f"{csv_path} lacks the columns {PER_IMAGE_COLUMNS}; rebuild its record")
    index = np.array([int(r["test_index"]) for r in rows], dtype=np.int64)
    values = np.array([float(r["importance_log_px"]) for r in rows], dtype=np.float64)
    return index, values


def paired_difference(ours: Path, theirs: Path) -> tuple[float, float, int] | None:
    """(mean, s.e., n) of the image-by-image difference of two ``record_per_image`` files, or
    None when they scored different test images (or in another order), which cannot be paired.
    The study tables' "paired − VAE" column and ``paired_between_rows`` both use it."""
    import numpy as np

    (ours_index, ours_values), (theirs_index, theirs_values) = map(read_per_image, (ours, theirs))
    if not np.array_equal(ours_index, theirs_index):
        return None
    diff = ours_values - theirs_values
    sem = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
    return float(diff.mean()), sem, int(diff.size)


def paired_between_rows(
    record: Path, variant: str, other: str, seed: int, run: str
) -> tuple[float, float, int]:
    """(mean, s.e., n) of log p(x_i) of ``run`` in study row ``variant`` minus the same run in
    row ``other`` (same seed), image by image, from the committed records
    (``record/{row}/seed{seed}/{run}/loglik_images.csv``). Refused unless both scored the same
    test images in the same order: only then is the difference paired."""
    paths = [record / row / f"seed{seed}" / run / PER_IMAGE_RECORD for row in (variant, other)]
    for path in paths:
        if not path.is_file():
            raise GaeError(f"{path} does not exist; build that row's record first")
    result = paired_difference(*paths)
    if result is None:
        raise GaeError(
            f"{paths[0]} and {paths[1]} scored different test images, so they cannot be paired; "
            f"compare rows with the same evaluation.loglik.n_test and data.subset_seed"
        )
    return result
