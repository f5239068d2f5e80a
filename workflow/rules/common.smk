# Helpers shared by every rule: the effective configuration, the run/data-set lists, the file
# layout and the `gae` command line each rule runs. The lists come from params.yaml only.
import json
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from gae.config import load_config, load_yaml, parse_run_name, prepared_path, results_dir
from gae.errors import GaeError
from gae.figures import figure_inputs, figure_paths
from gae.report import report_inputs
from gae.report import report_path as _report_path
from gae.tables import table_inputs, table_paths

PARAMS_FILE = "params.yaml"
LOGS = "logs"
# Keys DVC reads straight from params.yaml (foreach lists): a preset must not change them, or
# `dvc repro` and Snakemake would build different sets of artifacts.
FIXED_KEYS = ("runs", "evaluate")


def _overlays_beyond_params(config):
    """The overlay files given on the command line on top of params.yaml's own `overlays`.

    `--config overlays=[...]` replaces the list, so it must start with params.yaml's entries;
    any other `--config KEY=...` would bypass the `gae` commands (which read params.yaml), so it
    is refused rather than silently ignored.
    """
    base = load_yaml(PARAMS_FILE)
    base_overlays = list(base.get("overlays") or [])
    requested = list(config.get("overlays") or [])
    if requested[: len(base_overlays)] != base_overlays:
        raise WorkflowError(
            f"--config overlays={requested} drops overlays that {PARAMS_FILE} lists "
            f"({base_overlays}); edit 'overlays' in {PARAMS_FILE} instead"
        )
    changed = sorted(
        key
        for key in set(base) | set(config)
        if key != "overlays" and base.get(key) != config.get(key)
    )
    if changed:
        raise WorkflowError(
            f"--config may only set 'overlays'; it also changes {changed}, which the `gae` "
            f"commands would not see. Put these keys in an overlay file (config/*.yaml) and pass "
            f"--config overlays=[FILE]"
        )
    return requested[len(base_overlays) :]


def _effective_config(config):
    extra = _overlays_beyond_params(config)
    try:
        cfg = load_config(extra, base=PARAMS_FILE)  # exactly what `gae SUB --config ...` loads
    except GaeError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None
    base = load_yaml(PARAMS_FILE)
    for key in FIXED_KEYS:
        if cfg[key] != base[key]:
            raise WorkflowError(
                f"the overlays {cfg['overlays']} change '{key}'; presets must keep "
                f"{PARAMS_FILE}'s '{key}' (dvc.yaml's foreach stages read it from there). "
                f"Remove '{key}' from the overlay"
            )
    return cfg, extra


CFG, EXTRA_OVERLAYS = _effective_config(config)
# Appended to every `gae` command so rules see the same configuration as this file.
GAE_ARGS = " ".join(f"--config {shlex.quote(path)}" for path in EXTRA_OVERLAYS)

RUNS = list(CFG["runs"])
EVALUATE = {key: list(CFG["evaluate"].get(key, [])) for key in ("parzen", "loglik", "diagnostics", "latent")}
DATASETS = sorted({parse_run_name(run).dataset for run in RUNS})
RUNS_DIR = str(results_dir(CFG) / "runs")


wildcard_constraints:
    dataset="mnist|bmnist|frey|tfd",
    run=r"(mnist|bmnist|frey|tfd)-[a-z][a-z0-9-]*-L[1-4]-z[1-9][0-9]*",


def code(*patterns):
    """Source files a step runs: rule inputs, so editing them re-runs the step (as in DVC)."""
    return sorted({str(path) for pattern in patterns for path in Path().glob(pattern)})


# The same code dependencies as the stages of dvc.yaml.
CODE = {
    "prepare": code("gae/data/*.py", "gae/config.py"),
    "train": code("gae/models.py", "gae/priors.py", "gae/objectives.py", "gae/training.py"),
    "sample": code("gae/sampling.py"),
    "evaluation": code("gae/evaluation/*.py", "gae/ops.py"),
    "figures": code("gae/figures.py", "gae/models.py"),
    "tables": code("gae/tables.py"),
    "report": code("gae/report.py"),
}


def prepared(dataset, suffix="npz"):
    return str(prepared_path(CFG, dataset, suffix))


def run_file(name):
    """Pattern of a per-run artifact, e.g. run_file('model.pt') -> results/runs/{run}/model.pt."""
    return f"{RUNS_DIR}/{{run}}/{name}"


def dataset_of(wildcards):
    return prepared(parse_run_name(wildcards.run).dataset)


def settings(*keys):
    """A rule's `params:` entry: the configuration keys its step reads (dotted), as JSON.

    Snakemake re-runs a job when its params change, so switching presets re-runs exactly the
    steps whose settings differ.
    """

    def pick(wildcards):
        picked = {}
        for key in keys:
            if key == "models" and hasattr(wildcards, "run"):
                model = parse_run_name(wildcards.run).model
                picked[f"models.{model}"] = CFG["models"][model]
                continue
            value = CFG
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            picked[key] = value
        return json.dumps(picked, sort_keys=True)

    return pick


def log_file(rule_name, name="{run}"):
    return f"{LOGS}/{rule_name}/{name}.log"


def benchmark_file(rule_name, name="{run}"):
    return f"{LOGS}/benchmarks/{rule_name}/{name}.tsv"


def report_path():
    return str(_report_path(CFG))


def all_outputs():
    """Every artifact the pipeline builds (the drift test compares this with dvc.yaml)."""
    files = [prepared(d, s) for d in DATASETS for s in ("npz", "json")]
    for run in RUNS:
        files += [f"{RUNS_DIR}/{run}/{n}" for n in ("model.pt", "train_log.csv", "samples.npy")]
    files += [f"{RUNS_DIR}/{run}/parzen.json" for run in EVALUATE["parzen"]]
    files += [f"{RUNS_DIR}/{run}/loglik.json" for run in EVALUATE["loglik"]]
    for run in EVALUATE["diagnostics"]:
        files += [f"{RUNS_DIR}/{run}/{n}" for n in ("diagnostics.json", "nearest_neighbours.png")]
    files += [str(p) for p in figure_paths(CFG) + table_paths(CFG)] + [report_path()]
    return files
