"""The file layout of the pipeline's artifacts: every name and path a rule or a step needs.

Why a module of its own: the Snakefile must know every output and input before any job runs,
and it must parse without torch (a plain ``snakemake`` may run in an environment that has
none). ``gae.tables`` and ``gae.report`` import the evaluation code and with it torch, so the
layout they share with the workflow lives here, in the base layer (it imports ``gae.config``
only), and the presentation modules import it from here.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from gae.config import RunSpec, parse_run_name, prepared_path, results_dir, run_dir
from gae.errors import GaeError
from gae.settings import Config

# per-run artifacts, under results/runs/{run}/
MODEL_FILE = "model.pt"
TRAIN_LOG_FILE = "train_log.csv"
SAMPLES_FILE = "samples.npy"
PARZEN_FILE = "parzen.json"
LOGLIK_FILE = "loglik.json"
PER_IMAGE_FILE = "loglik_images.npz"  # the per-image estimates behind loglik.json
DIAGNOSTICS_FILE = "diagnostics.json"
NEIGHBOURS_FIGURE = "nearest_neighbours.png"
CHECKPOINT_FILE = "checkpoint.pt"  # the training state `gae train` resumes from


def require_output(path: Path, command: str) -> Path:
    """``path``, or one GaeError naming the step that makes it: the figures, tables and report
    read other steps' outputs, and a missing one should say which command to run."""
    if not path.is_file():
        raise GaeError(f"{path} is missing; it is produced by `{command}` (or run `make run`)")
    return path


TABLE1 = "table1_parzen"
TABLE2 = "table2_loglik"
TABLE_FORMATS = ("csv", "md", "tex")


def run_datasets(cfg: Config) -> list[str]:
    """The data sets of ``cfg.runs``, in the order they first appear."""
    return list(dict.fromkeys(parse_run_name(run).dataset for run in cfg.runs))


def evaluated_runs(cfg: Config, evaluation: str) -> list[str]:
    """The runs ``evaluate.{evaluation}`` lists (parzen, loglik, diagnostics or latent)."""
    return list(getattr(cfg.evaluate, evaluation))


def latent_runs(cfg: Config) -> list[RunSpec]:
    return [parse_run_name(r) for r in evaluated_runs(cfg, "latent")]


# ---- figures ---------------------------------------------------------------------------------


def figures_dir(cfg: Config) -> Path:
    return results_dir(cfg) / "figures"


def sample_grid_plan(cfg: Config, dataset: str) -> dict[tuple[int, str], str]:
    """(depth, model) -> run for the dataset's sample-grid figure.

    Uses the latent size most runs of the data set share (so the 2-D latent runs do not crowd
    the comparison); columns are the model variants, GAE kinds first, rows the depths.
    """
    specs = [s for s in map(parse_run_name, cfg.runs) if s.dataset == dataset]
    if not specs:
        return {}
    counts = Counter(s.latent_dim for s in specs)
    latent = max(counts, key=lambda d: (counts[d], d))
    return {(s.depth, s.model): s.name for s in specs if s.latent_dim == latent}


def figure_paths(cfg: Config) -> list[Path]:
    """Every figure make_figures writes, from the configuration alone."""
    out = figures_dir(cfg)
    datasets = run_datasets(cfg)
    paths = [out / f"samples_{d}.png" for d in datasets if sample_grid_plan(cfg, d)]
    if latent_runs(cfg):
        paths += [out / "latent_density.png", out / "latent_scatter.png"]
    paths += [out / f"training_curves_{d}.png" for d in datasets]
    return paths


def figure_inputs(cfg: Config) -> list[Path]:
    """Every file make_figures reads."""
    paths: list[Path] = []
    for dataset in run_datasets(cfg):
        plan = sample_grid_plan(cfg, dataset)
        paths += [run_dir(cfg, r) / SAMPLES_FILE for r in plan.values()]
    for spec in latent_runs(cfg):
        paths.append(run_dir(cfg, spec.name) / MODEL_FILE)
        paths.append(prepared_path(cfg, spec.dataset))
    paths += [run_dir(cfg, r) / TRAIN_LOG_FILE for r in cfg.runs]
    return list(dict.fromkeys(paths))


# ---- tables ----------------------------------------------------------------------------------


def tables_dir(cfg: Config) -> Path:
    return results_dir(cfg) / "tables"


def table_paths(cfg: Config) -> list[Path]:
    """Every file make_tables writes (the pipeline's DAG uses this list)."""
    return [tables_dir(cfg) / f"{n}.{fmt}" for n in (TABLE1, TABLE2) for fmt in TABLE_FORMATS]


def table_inputs(cfg: Config) -> list[Path]:
    """Every file make_tables reads: the metric files and the data sets' provenance."""
    parzen, loglik = evaluated_runs(cfg, "parzen"), evaluated_runs(cfg, "loglik")
    paths = [run_dir(cfg, run) / PARZEN_FILE for run in parzen]
    paths += [run_dir(cfg, run) / LOGLIK_FILE for run in loglik]
    paths += [run_dir(cfg, run) / PER_IMAGE_FILE for run in loglik]
    datasets = sorted({parse_run_name(r).dataset for r in parzen + loglik})
    paths += [prepared_path(cfg, d, "json") for d in datasets]
    return paths


# ---- report ----------------------------------------------------------------------------------


def report_path(cfg: Config) -> Path:
    return results_dir(cfg) / "report.md"


def report_inputs(cfg: Config) -> list[Path]:
    """Every file make_report reads (tables, figures, diagnostics)."""
    paths = [p for p in table_paths(cfg) if p.suffix == ".md"]
    paths += figure_paths(cfg)
    for run in evaluated_runs(cfg, "diagnostics"):
        paths += [run_dir(cfg, run) / DIAGNOSTICS_FILE, run_dir(cfg, run) / NEIGHBOURS_FIGURE]
    return paths


# ---- captions --------------------------------------------------------------------------------
# The one home of the captions: results/report.md (gae.report) writes them, and the Snakemake
# HTML report (`snakemake --report`) shows them from workflow/report/*.rst, which
# workflow/scripts/report_captions.py writes from report_captions() (a test fails when stale).

FIGURE_CAPTIONS = {
    "samples": "Generated samples, GAE vs VAE (the slides' 'Generated images').",
    "latent_density": "Kernel density of 1,000 z from the prior of the 2-D latent runs, "
    "depth 1 vs 2 (the slides' 'Visualization of latent space').",
    "latent_scatter": "Test images mapped by q(z|x), coloured by class, depth 1 vs 2.",
    "training_curves": "Training objective and validation ELBO per epoch.",
}
PER_DATASET_FIGURES = ("samples", "training_curves")  # one figure per data set, named after it
TABLE_TITLES = {TABLE1: "Table 1: Parzen window", TABLE2: "Table 2: log-likelihood"}
NEIGHBOURS_CAPTION = "Generated samples beside their nearest training images (`gae diagnose`)."
REPORT_CAPTION = "The whole reproduction report, results/report.md: the configuration, both "
REPORT_CAPTION += "tables with the slides' numbers, every figure and the memorisation diagnostics."
CAPTIONS_DIR = Path("workflow/report")  # of the Snakemake HTML report, relative to the project


def figure_kind(path: str | Path) -> str | None:
    """Which FIGURE_CAPTIONS entry a figure file is (its name starts with the key), or None."""
    stem = Path(path).stem
    return next((k for k in FIGURE_CAPTIONS if stem.startswith(k)), None)


def figure_dataset(path: str | Path) -> str | None:
    """The data set a per-data-set figure shows (samples_mnist.png -> mnist), else None."""
    key = figure_kind(path)
    return Path(path).stem[len(key) + 1 :] if key in PER_DATASET_FIGURES else None


def figure_caption(path: str | Path) -> str:
    """The caption results/report.md writes under a figure: its kind's caption, and for a
    per-data-set figure the data set (the HTML report shows that as a label)."""
    key = figure_kind(path)
    caption = FIGURE_CAPTIONS.get(key, "") if key else ""
    dataset = figure_dataset(path)
    return caption + (f" Data set: {dataset}." if dataset else "")


def report_captions() -> dict[str, str]:
    """workflow/report/{name}.rst -> its text: one caption per figure kind, table, the
    nearest-neighbour figures and the report itself (RST: `code` becomes ``code``)."""
    texts = {**FIGURE_CAPTIONS, **TABLE_TITLES}
    texts |= {NEIGHBOURS_FIGURE.removesuffix(".png"): NEIGHBOURS_CAPTION, "report": REPORT_CAPTION}
    return {name: text.replace("`", "``") + "\n" for name, text in texts.items()}


def caption_file(name: str) -> Path:
    """The RST caption file of ``report_captions()[name]``."""
    return CAPTIONS_DIR / f"{name}.rst"
