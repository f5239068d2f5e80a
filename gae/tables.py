"""Tables 1 (Parzen) and 2 (binarized-MNIST log-likelihood): the slides' rows beside ours.

Each table is written as CSV (for scripts), Markdown (for the report) and LaTeX (for papers),
under ``results/tables/``. Footnotes say which data variant and estimator every number comes
from, read from ``data/prepared/{dataset}.json`` and the runs' metric files, so a reader never
compares a Frey-faces number with TFD or a Bernoulli binarization with Larochelle's unknowingly.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gae.config import RunSpec, parse_run_name, prepared_path, run_dir
from gae.errors import GaeError
from gae.evaluation import mean_sem
from gae.io import atomic_write_text, read_json
from gae.paths import (  # noqa: F401 (table_inputs, table_paths: the layout's home is gae.paths)
    LOGLIK_FILE,
    PARZEN_FILE,
    PER_IMAGE_FILE,
    TABLE1,
    TABLE2,
    require_output,
    table_inputs,
    table_paths,
    tables_dir,
)
from gae.paths import TABLE_FORMATS as FORMATS
from gae.settings import Config

log = logging.getLogger(__name__)

FACES = ("tfd", "frey")  # the faces column: TFD when the user has it, else its open stand-in

# The slides' table 1 (Parzen window, nats): method -> (MNIST, TFD).
SLIDES_TABLE1: list[tuple[str, float, float]] = [
    ("VAE", 296.77, 2572.59),
    ("GAN", 300.331, 2057.0),
    ("GMMN+AE", 282.0, 2294.0),
    ("AAE", 340.0, 2252.0),
    ("GAE (1 layered)", 456.71, 2815.76),
    ("GAE (2 layered)", 460.73, 2796.91),
]
# Published Parzen results (../shared/paper/findings.md):
# method -> (MNIST, s.e., TFD, s.e., source).
PUBLISHED_TABLE1: list[tuple[str, float, float, float, float, str]] = [
    ("GAN", 225.0, 2.0, 2057.0, 26.0, "Goodfellow et al. 2014"),
    ("GMMN+AE", 282.0, 2.0, 2204.0, 20.0, "Li et al. 2015"),
    ("AAE", 340.0, 2.0, 2252.0, 16.0, "Makhzani et al. 2015"),
    ("VAE (best published)", 325.0, 2.0, 2180.0, 20.0, "best reported VAE"),
]
# The slides' table 2 (binarized MNIST, test log p(x) in nats): (kind, depth) -> value.
SLIDES_TABLE2: dict[tuple[str, int], float] = {
    ("vae", 1): -107.18,
    ("vae", 2): -96.94,
    ("vae", 3): -97.62,
    ("vae", 4): -102.97,
    ("gae", 1): -97.66,
    ("gae", 2): -96.91,
    ("gae", 3): -95.76,
    ("gae", 4): -94.66,
}


@dataclass(frozen=True)
class PublishedLoglik:
    """A published test log p(x) on binarized MNIST, with where it comes from and on what data.

    ``static_larochelle``: whether it was measured on the static binarization of Larochelle's
    .amat files; our number is on the same data only when our ``bmnist`` is prepared from them
    too (``data/prepared/bmnist.json``). Dynamic-binarization figures are about 2 nats easier
    (../shared/paper/findings.md) and are not listed.
    """

    method: str
    value: float
    source: str
    protocol: str
    static_larochelle: bool = True


# ../shared/paper/findings.md; clementchadebec/benchmark_VAE examples/scripts/reproducibility
# (README table; vamp.py and iwae.py read binarized_mnist_{train,valid,test}.amat)
PUBLISHED_TABLE2: list[PublishedLoglik] = [
    PublishedLoglik(
        "VampPrior (K = 500; 2 × 300 gated; z = 40)",
        -85.57,
        "Tomczak & Welling 2018, Table 1",
        "static binarized MNIST (Larochelle files), importance sampling S = 5,000",
    ),
    PublishedLoglik(
        "VampPrior (K = 500; 2 × 300 gated; z = 40), re-run",
        -85.79,
        "pythae (Chadebec et al. 2022, benchmark_VAE reproducibility table)",
        "static binarized MNIST (Larochelle .amat), importance sampling S = 5,000",
    ),
    PublishedLoglik(
        "IWAE (k = 50; 2 × 200; z = 50), re-run",
        -86.82,
        "pythae (Chadebec et al. 2022, benchmark_VAE reproducibility table)",
        "static binarized MNIST (Larochelle .amat), importance sampling S = 5,000",
    ),
]


def _parzen_runs(cfg: Config) -> list[str]:
    return list(cfg.evaluate.parzen)


def _loglik_runs(cfg: Config) -> list[str]:
    return list(cfg.evaluate.loglik)


def _read_output(path: Path, command: str) -> Any:
    return read_json(require_output(path, command))


# ---- one table, three formats ----------------------------------------------------------------


@dataclass
class Table:
    """A table as rows of display strings plus the raw CSV rows and footnotes."""

    name: str
    caption: str
    headers: list[str]
    rows: list[list[str]]
    csv_rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def to_csv(self) -> str:
        fields: list[str] = []
        for row in self.csv_rows:
            fields += [k for k in row if k not in fields]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.csv_rows)
        return buffer.getvalue()

    def to_markdown(self) -> str:
        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        out = [f"**{self.caption}**", "", line(self.headers)]
        out.append("| " + " | ".join("---" for _ in self.headers) + " |")
        out += [line(row) for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"{i}. {note}" for i, note in enumerate(self.notes, 1)]
        return "\n".join(out) + "\n"

    def to_latex(self) -> str:
        cols = "l" * 2 + "r" * (len(self.headers) - 2)
        out = [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{_tex(self.caption)}}}",
            f"\\label{{tab:{self.name}}}",
            f"\\begin{{tabular}}{{{cols}}}",
            "\\hline",
            " & ".join(_tex(h) for h in self.headers) + " \\\\",
            "\\hline",
        ]
        out += [" & ".join(_tex(c) for c in row) + " \\\\" for row in self.rows]
        out += ["\\hline", "\\end{tabular}"]
        if self.notes:
            out.append("\\par\\footnotesize")
            out += [f"{i}. {_tex(note)}\\\\" for i, note in enumerate(self.notes, 1)]
        out.append("\\end{table}")
        return "\n".join(out) + "\n"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "−": r"$-$",
    "σ": r"$\sigma$",
    "≈": r"$\approx$",
    "×": r"$\times$",
    "–": "--",
    "—": "---",
    "`": "",
}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def _fmt(mean: float | None, sem: float | None = None, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    text = f"{mean:.{digits}f}"
    if sem is not None:
        text += f" ± {sem:.{digits}f}"
    return text


def _slides_value(value: float) -> str:
    return f"{value:g}"


def _model_label(cfg: Config, model: str, depth: int, latent_dim: int) -> str:
    kind = cfg.models[model].kind
    name = {"gae": "GAE", "vae": "VAE", "vamp": "VampPrior"}[kind]
    if model not in ("gae", "vae", "vamp"):
        name = f"{name} [{model}]"
    return f"{name} ({depth} layered, z={latent_dim})"


def _data_note(cfg: Config, dataset: str) -> str:
    """One sentence on what ``data/prepared/{dataset}.json`` says the data are."""
    meta = _read_output(prepared_path(cfg, dataset, "json"), f"gae prepare {dataset}")
    variant = meta.get("variant", "unknown variant")
    splits = meta.get("splits") or {}
    split_text = "/".join(str(splits.get(s, "?")) for s in ("train", "valid", "test"))
    subset = cfg.data.subset
    used = ""
    if any((subset.train, subset.valid, subset.test)):
        rows = "/".join(str(n or "all") for n in (subset.train, subset.valid, subset.test))
        used = (  # gae.data.subsets: never the head of a split
            f"; this preset uses seeded random samples (seed {cfg.data.subset_seed}) of {rows} "
            f"rows of train/valid/test"
        )
    return f"`{dataset}`: {variant} (prepared splits train/valid/test {split_text}{used})"


# ---- table 1: Parzen -------------------------------------------------------------------------


# (model, depth, latent_dim) -> column ("mnist" | "faces") -> (data set, parzen.json)
ParzenCells = dict[tuple[str, int, int], dict[str, tuple[str, dict[str, Any]]]]

PARZEN_HEADERS = ("Method", "Source", "MNIST", "TFD (slides, published) / faces (ours)")


def _parzen_results(cfg: Config) -> ParzenCells:
    """Read every ``evaluate.parzen`` run's metrics into its table-1 cell.

    Runs of one (model, depth, latent size) share a row, MNIST and faces side by side. When
    both TFD and Frey runs exist, TFD wins the faces cell, whatever the run order: it is the
    data set the slides measured on, Frey only its open stand-in.
    """
    results: ParzenCells = {}
    for run in _parzen_runs(cfg):
        spec = parse_run_name(run)
        metrics = _read_output(run_dir(cfg, run) / PARZEN_FILE, f"gae parzen {run}")
        column = "mnist" if spec.dataset == "mnist" else "faces" if spec.dataset in FACES else None
        if column is None:
            log.warning("table 1 has no column for %s (data set %s); skipped", run, spec.dataset)
            continue
        key = (spec.model, spec.depth, spec.latent_dim)
        previous = results.setdefault(key, {}).get(column)
        if previous is None or FACES.index(spec.dataset) < FACES.index(previous[0]):
            results[key][column] = (spec.dataset, metrics)
    return results


def _parzen_reference_rows() -> tuple[list[list[str]], list[dict[str, Any]]]:
    """Table 1's fixed rows, the slides' then the published numbers, as (display, CSV) rows.

    They come first so a reader sees what the paper claimed before our measurements; the
    slides give no standard errors, hence their empty ``*_sem`` columns.
    """
    rows: list[list[str]] = []
    csv_rows: list[dict[str, Any]] = []
    for method, mnist, tfd in SLIDES_TABLE1:
        rows.append([method, "slides", _slides_value(mnist), _slides_value(tfd)])
        csv_rows.append(
            {
                "method": method,
                "source": "slides",
                "mnist": mnist,
                "mnist_sem": None,
                "faces": tfd,
                "faces_sem": None,
                "faces_dataset": "tfd",
            }
        )
    for method, mnist, mnist_se, tfd, tfd_se, source in PUBLISHED_TABLE1:
        rows.append(
            [method, f"published ({source})", _fmt(mnist, mnist_se, 0), _fmt(tfd, tfd_se, 0)]
        )
        csv_rows.append(
            {
                "method": method,
                "source": f"published ({source})",
                "mnist": mnist,
                "mnist_sem": mnist_se,
                "faces": tfd,
                "faces_sem": tfd_se,
                "faces_dataset": "tfd",
            }
        )
    return rows, csv_rows


def _parzen_setting(metrics: dict[str, Any]) -> str:
    """The estimator settings behind one cell, for the footnote that says what was measured."""
    return (
        f"{metrics.get('n_samples')} samples, {metrics.get('n_test')} test images, "
        f"σ = {metrics.get('sigma'):.3g}"
    )


def _parzen_our_row(
    cfg: Config, key: tuple[str, int, int], cells: dict[str, tuple[str, dict[str, Any]]]
) -> tuple[list[str], dict[str, Any]]:
    """One row of ours in table 1 (display cells, CSV row); the faces cell names its data set
    so a Frey number is never read as a TFD one. The CSV keeps each cell's σ and sizes."""
    model, depth, latent_dim = key
    mnist_metrics = cells.get("mnist", (None, {}))[1]
    faces_name, faces_metrics = cells.get("faces", (None, {}))
    label = _model_label(cfg, model, depth, latent_dim)
    faces_text = _fmt(faces_metrics.get("mean"), faces_metrics.get("sem"))
    if faces_name:
        faces_text += f" ({faces_name})"
    row = [label, "ours", _fmt(mnist_metrics.get("mean"), mnist_metrics.get("sem")), faces_text]
    csv_row = {
        "method": label,
        "source": "ours",
        "mnist": mnist_metrics.get("mean"),
        "mnist_sem": mnist_metrics.get("sem"),
        "faces": faces_metrics.get("mean"),
        "faces_sem": faces_metrics.get("sem"),
        "faces_dataset": faces_name,
        "mnist_sigma": mnist_metrics.get("sigma"),
        "mnist_n_samples": mnist_metrics.get("n_samples"),
        "mnist_n_test": mnist_metrics.get("n_test"),
        "faces_sigma": faces_metrics.get("sigma"),
        "faces_n_samples": faces_metrics.get("n_samples"),
        "faces_n_test": faces_metrics.get("n_test"),
    }
    return row, csv_row


def _parzen_notes(cfg: Config, settings: set[str], faces_used: set[str]) -> list[str]:
    """Table 1's footnotes: our estimator and its settings, where the slides' numbers disagree
    with the published ones, why Parzen scores mislead, and which data every column is on
    (Frey is flagged as not comparable with the slides' TFD)."""
    parzen = cfg.evaluation.parzen
    notes = [
        "Estimator (ours): Gaussian Parzen window over each run's generated samples (decoder "
        "means), σ chosen by validation log-likelihood on "
        f"{parzen.n_valid} validation images; mean test log-likelihood in nats "
        "± standard error (std/√N). Per cell: " + ("; ".join(sorted(settings)) or "none") + ".",
        "Slides' rows are copied verbatim (no standard errors given). The slides' GAN (MNIST "
        "300.331) and GMMN+AE (TFD 2294) numbers differ from the published ones (GAN 225 ± 2 / "
        "2057 ± 26, Goodfellow et al. 2014; GMMN+AE 282 ± 2 / 2204 ± 20, Li et al. 2015); the "
        "slides' VAE (296.77 / 2572.59) is not the best published VAE (325 ± 2 / 2180 ± 20); AAE "
        "agrees (340 ± 2 / 2252 ± 16).",
        "Parzen scores reward blurry samples and copies of training images (Theis et al. 2016: "
        "real MNIST data score about 243), so they do not rank likelihoods.",
    ]
    notes += [f"Data: {_data_note(cfg, d)}." for d in sorted({"mnist"} & _datasets(cfg, "parzen"))]
    for faces in sorted(faces_used):
        note = f"Data: {_data_note(cfg, faces)}."
        if faces == "frey":
            note += (
                " Frey faces (28 × 20) stand in for TFD (48 × 48, licence-gated): our faces "
                "column is NOT comparable with the slides' TFD column."
            )
        notes.append(note)
    return notes


def parzen_table(cfg: Config) -> Table:
    """The slides' table 1, the published numbers and ours (MNIST and faces)."""
    results = _parzen_results(cfg)
    rows, csv_rows = _parzen_reference_rows()
    order = sorted(results, key=lambda k: (cfg.models[k[0]].kind != "gae", k))
    faces_used: set[str] = set()
    settings: set[str] = set()
    for key in order:
        cells = results[key]
        faces_name = cells.get("faces", (None, {}))[0]
        if faces_name:
            faces_used.add(faces_name)
        settings.update(_parzen_setting(m) for _, m in cells.values() if m)
        row, csv_row = _parzen_our_row(cfg, key, cells)
        rows.append(row)
        csv_rows.append(csv_row)
    return Table(
        TABLE1,
        "Table 1: Parzen-window test log-likelihood (nats; higher is better)",
        list(PARZEN_HEADERS),
        rows,
        csv_rows,
        _parzen_notes(cfg, settings, faces_used),
    )


def _datasets(cfg: Config, evaluation: str) -> set[str]:
    return {parse_run_name(r).dataset for r in getattr(cfg.evaluate, evaluation)}


# ---- table 2: log-likelihood -----------------------------------------------------------------


# (is not a VAE, model, depth, latent_dim, run, loglik.json): sorted, VAEs first
LoglikEntry = tuple[bool, str, int, int, RunSpec, dict[str, Any]]

LOGLIK_HEADERS = (
    "Method",
    "Runs",
    "Slides",
    "Published",
    "Ours: importance sampling",
    "Ours: prior sampling",
    "Ours − VAE (paired)",
)


def _loglik_entries(cfg: Config) -> tuple[list[LoglikEntry], dict[tuple, str]]:
    """Every ``evaluate.loglik`` run with its metrics, VAEs first then by model and size, and
    the VAE run of each (data set, depth, latent size): the baseline other models are paired
    with image by image."""
    entries: list[LoglikEntry] = []
    for run in _loglik_runs(cfg):
        spec = parse_run_name(run)
        metrics = _read_output(run_dir(cfg, run) / LOGLIK_FILE, f"gae loglik {run}")
        kind = cfg.models[spec.model].kind
        entries.append((kind != "vae", spec.model, spec.depth, spec.latent_dim, spec, metrics))
    entries.sort(key=lambda e: e[:4])
    vae_runs = {
        (spec.dataset, spec.depth, spec.latent_dim): spec.name
        for is_gae, *_, spec, _ in entries
        if not is_gae
    }
    return entries, vae_runs


def _loglik_size(metrics: dict[str, Any]) -> str:
    """The sample sizes behind one run's estimates, for the footnote that says what was run."""
    estimators = metrics.get("estimators", {})
    imp = estimators.get("importance", {})
    prior = estimators.get("prior", {})
    return (
        f"S = {imp.get('n_importance', '?')} (importance), {prior.get('n_prior', '?')} "
        f"(prior), {metrics.get('n_test', '?')} test images"
    )


def _loglik_our_row(
    cfg: Config, entry: LoglikEntry, vae_runs: dict[tuple, str]
) -> tuple[list[str], dict[str, Any]]:
    """One run's row of table 2 (display cells, CSV row): the slides' number for the same kind
    and depth (on bmnist only, the slides' data), both estimators, and the difference from the
    matching VAE, paired image by image so most of the image-to-image spread cancels."""
    _, model, depth, latent_dim, spec, metrics = entry
    kind = cfg.models[model].kind
    slides = SLIDES_TABLE2.get((kind, depth)) if spec.dataset == "bmnist" else None
    estimators = metrics.get("estimators", {})
    imp = estimators.get("importance", {})
    prior = estimators.get("prior", {})
    label = _model_label(cfg, model, depth, latent_dim)
    if spec.dataset != "bmnist":
        label += f" on {spec.dataset}"
    vae_run = vae_runs.get((spec.dataset, depth, latent_dim)) if kind != "vae" else None
    diff, diff_sem = paired_difference(cfg, spec.name, vae_run) if vae_run else (None, None)
    row = [
        label,
        spec.name,
        _slides_value(slides) if slides is not None else "—",
        "—",
        _fmt(imp.get("mean"), imp.get("sem")),
        _fmt(prior.get("mean"), prior.get("sem")),
        _fmt(diff, diff_sem),
    ]
    csv_row = {
        "method": label,
        "run": spec.name,
        "model": model,
        "kind": kind,
        "depth": depth,
        "latent_dim": latent_dim,
        "dataset": spec.dataset,
        "slides": slides,
        "importance": imp.get("mean"),
        "importance_sem": imp.get("sem"),
        "n_importance": imp.get("n_importance"),
        "prior": prior.get("mean"),
        "prior_sem": prior.get("sem"),
        "n_prior": prior.get("n_prior"),
        "n_test": metrics.get("n_test"),
        "log_prior": imp.get("log_prior"),
        "paired_vae_run": vae_run,
        "paired_difference": diff,
        "paired_difference_sem": diff_sem,
    }
    return row, csv_row


def _slides_only_rows(
    covered: set[tuple[str, int]],
) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """Rows for the slides' table-2 numbers that no run of ours stands beside, so the table
    always shows every number the slides claim, and says that we did not run it."""
    rows: list[list[str]] = []
    csv_rows: list[dict[str, Any]] = []
    for (kind, depth), value in SLIDES_TABLE2.items():
        if (kind, depth) in covered:
            continue  # the slides' number stands beside our run(s) above
        label = f"{kind.upper()} ({depth} layered)"
        rows.append([label, "— (not in evaluate.loglik)", _slides_value(value), "—", "—", "—", "—"])
        csv_rows.append(
            {
                "method": label,
                "run": None,
                "model": None,
                "kind": kind,
                "depth": depth,
                "latent_dim": None,
                "dataset": "bmnist",
                "slides": value,
            }
        )
    return rows, csv_rows


def _loglik_notes(cfg: Config, sizes: set[str]) -> list[str]:
    """Table 2's footnotes: the estimators and their sizes, what the paired difference means,
    how far the published numbers are comparable, and which data every run is on."""
    notes = [
        "Log-likelihoods are mean test log p(x) in nats ± standard error over test images "
        "(higher is better). Sizes: " + ("; ".join(sorted(sizes)) or "none") + ".",
        "Importance sampling: log (1/S) Σ_s p(x|z_s) p(z_s) / q(z_s|x), z_s ~ q(z|x) (the "
        "encoder); prior sampling: the slides' estimator log (1/S) Σ_s p(x|z_s), z_s ~ p(z) "
        "(for the GAE the exemplar-mixture prior over all training encodings). Both are "
        "stochastic lower bounds in expectation; prior sampling is far looser for small S.",
        "Ours − VAE (paired): mean over test images of the model's (GAE or VampPrior) minus the "
        "VAE's importance-sampling estimate at the same depth and latent size, ± the standard "
        "error of that per-image difference (the same test images, so most of the image-to-image "
        "spread cancels); positive = the model is better. A GAE estimate marked as a lower bound "
        "(evaluation.loglik.prior_components) can only understate the GAE.",
        "Published: test log p(x) as reported, with its source and protocol in the Runs column "
        "and whether it is on the same data as ours (the static Larochelle binarization; ours "
        "is that only when data/prepared/bmnist.json says so). Their architectures differ from "
        "ours (500 tanh units, z = 50) unless a run uses config/recipe-vampprior.yaml.",
        "The slides' column repeats their GAE numbers for both GAE rows: `gae` is our default "
        "GAE objective, `gae-slides` the slides' literal objective. The slides state neither "
        "their binarization, S nor the number of test images.",
    ]
    notes += [f"Data: {_data_note(cfg, d)}." for d in sorted(_datasets(cfg, "loglik"))]
    return notes


def loglik_table(cfg: Config) -> Table:
    """Binarized-MNIST test log p(x) for depths 1-4, GAE variants and VAE, slides beside ours."""
    entries, vae_runs = _loglik_entries(cfg)
    rows: list[list[str]] = []
    csv_rows: list[dict[str, Any]] = []
    for entry in entries:
        row, csv_row = _loglik_our_row(cfg, entry, vae_runs)
        rows.append(row)
        csv_rows.append(csv_row)
    covered = {(r["kind"], r["depth"]) for r in csv_rows if r["dataset"] == "bmnist"}
    slides_rows, slides_csv_rows = _slides_only_rows(covered)
    rows += slides_rows
    csv_rows += slides_csv_rows
    ours_static = _bmnist_is_larochelle(cfg)
    for published in PUBLISHED_TABLE2:
        row, csv_row = _published_row(published, ours_static)
        rows.append(row)
        csv_rows.append(csv_row)
    sizes = {_loglik_size(entry[-1]) for entry in entries}
    return Table(
        TABLE2,
        "Table 2: test log-likelihood on binarized MNIST (nats; higher is better)",
        list(LOGLIK_HEADERS),
        rows,
        csv_rows,
        _loglik_notes(cfg, sizes),
    )


def _bmnist_is_larochelle(cfg: Config) -> bool | None:
    """Whether our bmnist is Larochelle's static binarization (None: not prepared yet)."""
    path = prepared_path(cfg, "bmnist", "json")
    if not path.is_file():
        return None
    return "larochelle" in str(read_json(path).get("variant", "")).lower()


def _published_row(
    published: PublishedLoglik, ours_static: bool | None
) -> tuple[list[str], dict[str, Any]]:
    """One published row of table 2 (display cells, CSV row), labelled with its source, its
    data and whether those are the data of our runs."""
    if ours_static is None:
        same = "unknown (bmnist not prepared)"
    else:
        same = "yes" if ours_static == published.static_larochelle else "no"
    where = f"published: {published.source}; {published.protocol}; same data as ours: {same}"
    row = [published.method, where, "—", _slides_value(published.value), "—", "—", "—"]
    csv_row = {
        "method": published.method,
        "run": None,
        "model": None,
        "kind": None,
        "dataset": "bmnist",
        "published": published.value,
        "source": published.source,
        "protocol": published.protocol,
        "same_data_as_ours": same,
    }
    return row, csv_row


def paired_difference(cfg: Config, run: str, baseline: str) -> tuple[float, float]:
    """Mean and standard error of log p(x_i) under ``run`` minus under ``baseline``, image by
    image (importance sampling, ``loglik_images.npz``); NaN when the test images differ."""
    values, images = [], []
    for name in (run, baseline):
        path = run_dir(cfg, name) / PER_IMAGE_FILE
        if not path.is_file():
            raise GaeError(f"{path} is missing; it is produced by `gae loglik {name}`")
        with np.load(path) as data:
            values.append(data["importance_log_px"].astype(np.float64))
            # test_index: the images' rows in the test file (absent in files made before it)
            images.append(data["test_index"] if "test_index" in data.files else None)
    same_rows = images[0] is None or images[1] is None or np.array_equal(images[0], images[1])
    if values[0].shape != values[1].shape or not same_rows:
        log.warning("%s and %s were evaluated on different test images; no pairing", run, baseline)
        return math.nan, math.nan
    return mean_sem(values[0] - values[1])


def make_tables(cfg: Config) -> list[Path]:
    """Write tables 1 and 2 in CSV, Markdown and LaTeX; return the paths written."""
    tables = [parzen_table(cfg), loglik_table(cfg)]  # both built before anything is written
    written: list[Path] = []
    for table in tables:
        texts = {"csv": table.to_csv(), "md": table.to_markdown(), "tex": table.to_latex()}
        for fmt in FORMATS:
            path = tables_dir(cfg) / f"{table.name}.{fmt}"
            atomic_write_text(path, texts[fmt])
            written.append(path)
        log.info("wrote %s.{%s}", tables_dir(cfg) / table.name, ",".join(FORMATS))
    return written
