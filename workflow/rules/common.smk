# Helpers shared by every rule: the effective configuration, the run/data-set lists, the file
# layout and the `gae` command line each rule runs. The lists come from params.yaml only.
#
# Nothing here imports torch (gae.config, gae.paths and gae.pipeline use the standard library,
# PyYAML and jsonschema only), so the workflow parses in any environment that has Snakemake
# and the `gae` package; tests/test_workflow.py checks it with torch made unimportable.
import json
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

from gae.config import (
    evaluate_lists,
    load_config,
    load_yaml,
    parse_run_name,
    prepared_path,
    results_dir,
)
from gae.errors import GaeError
from gae.paths import (
    DIAGNOSTICS_FILE,
    LOGLIK_FILE,
    MODEL_FILE,
    NEIGHBOURS_FIGURE,
    PARZEN_FILE,
    PER_IMAGE_FILE,
    SAMPLES_FILE,
    TRAIN_LOG_FILE,
    TABLE_TITLES,
    caption_file,
    figure_dataset,
    figure_inputs,
    figure_kind,
    figure_paths,
    report_inputs,
    table_inputs,
    table_paths,
)
from gae.paths import report_path as _report_path
from gae.pipeline import code_inputs, cuda_available, gpu_refusal, record_in_dvc

PARAMS_FILE = "params.yaml"
LOGS = "logs"
ROOT = Path(workflow.basedir)
# Keys DVC reads straight from params.yaml (foreach lists): a preset must not change them, or
# `dvc repro` and Snakemake would build different sets of artifacts.
FIXED_KEYS = ("runs", "evaluate")


def _overlays_beyond_params(config):
    """The overlay files given on the command line on top of params.yaml's own `overlays`.

    `--config overlays=[...]` replaces the list, so it must start with params.yaml's entries;
    any other `--config KEY=...` would bypass the `gae` commands (which read params.yaml), so it
    is refused rather than silently ignored. `config` is Snakemake's own reading of params.yaml
    (PyYAML's safe loader), so it is compared with the same reading, not gae.config's.
    """
    try:
        load_yaml(PARAMS_FILE)  # a missing, unreadable or invalid file: one clear message
    except GaeError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None
    base = yaml.safe_load(Path(PARAMS_FILE).read_text()) or {}
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
        base = load_yaml(PARAMS_FILE)
    except GaeError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None
    merged = cfg.to_dict()
    for key in FIXED_KEYS:
        if merged[key] != base[key]:
            raise WorkflowError(
                f"the overlays {list(cfg.overlays)} change '{key}'; presets must keep "
                f"{PARAMS_FILE}'s '{key}' (dvc.yaml's foreach stages read it from there). "
                f"Remove '{key}' from the overlay"
            )
    return cfg, extra


# The schema check, the cross-key rules and the overlays all happen here, while the workflow
# is parsed: a bad value fails before any job, with the file that set it.
CFG, EXTRA_OVERLAYS = _effective_config(config)

# CFG is the typed gae.settings.Config; CFG_DICT its plain dict, for the rules' JSON params
CFG_DICT = CFG.to_dict()
RUNS = list(CFG.runs)
EVALUATE = evaluate_lists(CFG)
DATASETS = sorted({parse_run_name(run).dataset for run in RUNS})
RUNS_DIR = str(results_dir(CFG) / "runs")
# Training jobs use train.num_threads torch threads (null: every core Snakemake is given).
TRAIN_THREADS = CFG.train.num_threads or workflow.cores or 1


wildcard_constraints:
    dataset="mnist|bmnist|frey|tfd",
    run=r"(mnist|bmnist|frey|tfd)-[a-z][a-z0-9-]*-L[1-4]-z[1-9][0-9]*",


# The source files each `gae` subcommand runs, derived from the imports of its modules
# (gae.pipeline.code_inputs): rule inputs, so editing e.g. gae/ops.py re-runs the steps that use
# it. dvc.yaml lists the same files (tests/test_workflow.py fails when the two differ).
CODE = {
    name: code_inputs(name, ROOT)
    for name in ("prepare", "train", "sample", "parzen", "loglik", "diagnose", "figures", "tables", "report")
}


def gae_shell(arguments, threads_env=True, append=False):
    """The shell command of a rule: `gae ARGUMENTS` run by the interpreter running this workflow
    (never a `gae` found on PATH), with the command line's extra overlays, logged to {log};
    `threads_env` limits the numerical libraries to the job's {threads}.

    Built when a job runs, so neither the interpreter's path nor the overlays are part of the
    rule's code: switching presets re-runs only the jobs whose `params` (settings) changed.
    """
    overlays = " ".join(f"--config {shlex.quote(path)}" for path in EXTRA_OVERLAYS)
    python = shlex.quote(sys.executable).replace("{", "{{").replace("}", "}}")
    env = "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} " if threads_env else ""
    redirect = ">>" if append else ">"
    return f"{env}{python} -m gae {arguments} {overlays} {redirect} {{log}} 2>&1"


def train_shell():
    """`gae train --restart-if-stale`: it resumes a checkpoint made with the same settings, and
    starts afresh from one that is unreadable or was made with other settings (another preset:
    exactly why Snakemake re-runs this job); `gae train` itself decides, no log is grepped."""
    return gae_shell("train {wildcards.run} --restart-if-stale")


def prepared(dataset, suffix="npz"):
    return str(prepared_path(CFG, dataset, suffix))


def run_file(name):
    """Pattern of a per-run artifact, e.g. run_file(MODEL_FILE) -> results/runs/{run}/model.pt."""
    return f"{RUNS_DIR}/{{run}}/{name}"


def dataset_of(wildcards):
    return prepared(parse_run_name(wildcards.run).dataset)


def _lookup(key):
    value = CFG_DICT
    for part in key.split("."):
        value = value[part]  # a misspelt key fails while the workflow parses
    return value


def settings(*keys, exclude=()):
    """A rule's `params:` entry: the configuration keys its step reads (dotted), as JSON, after
    the overlays are applied; `exclude` drops sub-keys that do not change the step's output.

    Snakemake re-runs a job when its params change, so switching presets re-runs exactly the
    steps whose settings differ (and never because the list of overlay files changed).
    """

    def pick(wildcards):
        picked = {}
        for key in keys:
            if key == "models" and hasattr(wildcards, "run"):
                model = parse_run_name(wildcards.run).model
                picked[f"models.{model}"] = CFG_DICT["models"][model]
                continue
            value = _lookup(key)
            if isinstance(value, dict):
                value = {k: v for k, v in value.items() if f"{key}.{k}" not in exclude}
            picked[key] = value
        return json.dumps(picked, sort_keys=True)

    return pick


def log_file(rule_name, name="{run}"):
    return f"{LOGS}/{rule_name}/{name}.log"


def benchmark_file(rule_name, name="{run}"):
    return f"{LOGS}/benchmarks/{rule_name}/{name}.tsv"


def report_path():
    return str(_report_path(CFG))


# `snakemake --report results/report.html`: the figures, tables, nearest-neighbour images and
# results/report.md are marked with report(); each caption is workflow/report/{name}.rst,
# written from gae.paths' caption strings (the ones results/report.md uses) by
# workflow/scripts/report_captions.py. A per-data-set figure's data set is a label.
def reported(path, category, caption, subcategory=None, **labels):
    return report(
        str(path),
        caption=str(ROOT / caption_file(caption)),
        category=category,
        subcategory=subcategory,
        labels=labels or None,
    )


def reported_figure(path):
    kind = figure_kind(path)
    dataset = figure_dataset(path)
    labels = {"data set": dataset} if dataset else {}
    return reported(path, "Figures", kind, subcategory=kind.replace("_", " "), **labels)


def reported_table(path):
    name = Path(path).stem
    return reported(path, "Tables", name, subcategory=TABLE_TITLES[name], format=Path(path).suffix[1:])


def all_outputs():
    """Every artifact the pipeline builds (the drift test compares this with dvc.yaml)."""
    files = [prepared(d, s) for d in DATASETS for s in ("npz", "json")]
    for run in RUNS:
        files += [f"{RUNS_DIR}/{run}/{n}" for n in (MODEL_FILE, TRAIN_LOG_FILE, SAMPLES_FILE)]
    files += [f"{RUNS_DIR}/{run}/{PARZEN_FILE}" for run in EVALUATE["parzen"]]
    files += [f"{RUNS_DIR}/{run}/{LOGLIK_FILE}" for run in EVALUATE["loglik"]]
    for run in EVALUATE["diagnostics"]:
        files += [f"{RUNS_DIR}/{run}/{n}" for n in (DIAGNOSTICS_FILE, NEIGHBOURS_FIGURE)]
    files += [str(p) for p in figure_paths(CFG) + table_paths(CFG)] + [report_path()]
    return files


def job_configs():
    """The configurations of the jobs about to run that claim the `gpu` resource: the
    pipeline's own (CFG) for its jobs, each study row's for its seed (config/study.tsv), so
    that `snakemake docs/study/tables/cpu-seeds.md` (a CPU row) runs under the paper preset."""
    configs, rows = {}, {}
    for job in workflow.dag.needrun_jobs():
        if not job.resources.get("gpu", 0):
            continue
        wildcards = dict(job.wildcards_dict)
        if job.rule.name.startswith("study_") and "variant" in wildcards:
            key = (wildcards["variant"], int(wildcards["seed"]))
            if key not in rows:
                rows[key] = STUDY[key[0]].config(key[1], Path(PARAMS_FILE))
            configs[key] = rows[key]
        else:
            configs["pipeline"] = CFG
    return list(configs.values())


def check_device(log=None):
    """`onstart`: a configuration that asks for a GPU stops here, before its first job, where
    the jobs' interpreter sees no CUDA device (gae.pipeline.gpu_refusal; GAE_ALLOW_CPU=1 opts
    in). Only the configurations of the jobs about to run count (job_configs). Skipped for
    cluster executors: their jobs run on other machines."""
    if not workflow.local_exec:
        return
    for cfg in job_configs():
        problem = gpu_refusal(cfg, lambda: cuda_available(sys.executable))
        if problem:
            raise WorkflowError(problem)


def record_outputs(log=None):
    """`onsuccess`: record the outputs in dvc.lock (gae.pipeline.record_in_dvc), so that
    `dvc status` is clean after a plain `snakemake` run as after `make run`."""
    print(f"gae: {record_in_dvc(ROOT, sys.executable, all_outputs(), EXTRA_OVERLAYS)}", file=sys.stderr)
