"""The workflow as a user meets it: it parses without torch, runs `gae` through its own
interpreter, derives each step's code inputs from the command's imports, re-runs only the jobs
whose settings an overlay changes, stops the paper preset where there is no GPU, records its
outputs in dvc.lock, and recovers from a killed run's lock.

Each test works in a temporary copy of the workflow files (tests/test_pipeline.py's
copy_workflow) and needs no data: dry runs, the DAG, and the `gae` modules' imports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from gae.config import load_config, parse_run_name
from gae.pipeline import (
    ALLOW_CPU_ENV,
    CPU_PRESETS,
    code_deps,
    cuda_available,
    gpu_refusal,
    record_in_dvc,
)
from tests.test_dvc import small_plan
from tests.test_pipeline import (
    BIN,
    copy_workflow,
    dvc_stage_paths,
    planned_outputs,
    snakemake,
    tool_env,
)

COMMANDS = ("prepare", "train", "sample", "parzen", "loglik", "diagnose", "figures", "tables")
COMMANDS += ("report",)
# torch made unimportable for every Python process that has this folder on PYTHONPATH
NO_TORCH = textwrap.dedent(
    """
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked (tests/test_workflow.py)")
            return None

    sys.meta_path.insert(0, _NoTorch())
    """
)


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy on tests/test_dvc.py's small plan (every rule and stage, a fifth of the jobs):
    these tests check each rule's commands, inputs and params, not the size of the plan
    (tests/test_pipeline.py checks the plan of params.yaml itself)."""
    return small_plan(copy_workflow(tmp_path_factory.mktemp("workflow")))


def dry_run_jobs(root: Path, *args: str) -> list[dict[str, str]]:
    """The jobs of `snakemake -n -p`: rule, input, threads, resources, shell command."""
    proc = snakemake(root, "-n", "-p", *args)
    assert proc.returncode == 0, proc.stderr
    jobs = []
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", proc.stdout)[1:]:
        job = {"rule": re.search(r"rule (\w+):", block)[1]}
        for key, default in (("input", ""), ("threads", "1"), ("resources", "")):
            found = re.search(rf"^    {key}: (.*)$", block, flags=re.MULTILINE)
            job[key] = found[1] if found else default  # Snakemake omits `threads: 1`
        shell = re.search(r"^(?:Shell command: )?(.*-m gae .*)$", block, flags=re.MULTILINE)
        job["shell"] = shell[1] if shell else ""
        jobs.append(job)
    return jobs


def test_the_workflow_parses_without_torch(workflow_copy: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "no_torch"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_TORCH)
    env = {**tool_env(), "PYTHONPATH": str(blocker)}
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True
    )
    assert probe.returncode != 0 and "torch is blocked" in probe.stderr  # the blocker works
    proc = subprocess.run(
        [str(BIN / "snakemake"), "-n", "--quiet", "rules"],
        cwd=workflow_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "train" in proc.stdout and "report" in proc.stdout


def test_rules_run_gae_with_the_workflows_python_and_the_configured_threads(
    workflow_copy: Path,
) -> None:
    jobs = dry_run_jobs(workflow_copy, "--config", "overlays=[config/cpu.yaml]")
    for job in jobs:
        if job["rule"] == "all":
            continue
        found = re.search(rf"(\S+) -m gae {job['rule']}\b", job["shell"])
        # the interpreter of this environment (.venv/bin/python or python3: Snakemake's own
        # shebang names one, `python -m pytest` the other), never another environment's
        assert found and Path(found[1]).parent == Path(sys.executable).parent, job
        assert Path(found[1]).name.startswith("python"), job
        assert not re.search(r"(^|[;&|]\s*)gae ", job["shell"]), job  # never `gae` from PATH
    trains = [job for job in jobs if job["rule"] == "train"]
    assert trains and {job["threads"] for job in trains} == {"1"}  # cpu.yaml: num_threads 1
    assert all("OMP_NUM_THREADS=1" in job["shell"] for job in trains)
    figures = [job for job in jobs if job["rule"] == "figures"]
    assert figures and "gpu" not in figures[0]["resources"]
    assert all("gpu=1" in job["resources"] for job in trains)


def test_training_threads_follow_train_num_threads(workflow_copy: Path) -> None:
    (workflow_copy / "config" / "threads3.yaml").write_text("train: {num_threads: 3}\n")
    jobs = dry_run_jobs(
        workflow_copy, "--cores", "4", "--config", "overlays=[config/threads3.yaml]"
    )
    assert {job["threads"] for job in jobs if job["rule"] == "train"} == {"3"}


# ---- code inputs: every module a command imports ---------------------------------------------

IMPORT_PROBE = textwrap.dedent(
    """
    import json, os, sys
    import numpy, torch  # third-party modules first: each child then imports only gae's
    for command in sys.argv[1:]:
        pid = os.fork()
        if pid == 0:
            import gae.cli, gae.config  # what gae/__main__.py and main() import
            try:  # the handler's own lazy import runs, then it fails on the missing arguments
                gae.cli.SUBCOMMANDS[command][0](None, None)
            except Exception:
                pass
            files = sorted(
                os.path.relpath(m.__file__)
                for name, m in list(sys.modules.items())
                if name.split(".")[0] == "gae" and getattr(m, "__file__", None)
            )
            print(json.dumps([command, ["gae/__main__.py", *files]]), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
    """
)


def imported_files(root: Path) -> dict[str, set[str]]:
    """command -> the gae source files `gae COMMAND` has loaded once its handler started."""
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, *COMMANDS],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    return {command: set(files) for command, files in rows}


def expand(root: Path, deps: list[str]) -> set[str]:
    files: set[str] = set()
    for dep in deps:
        path = root / dep
        if dep.startswith("gae/"):
            found = path.rglob("*.py") if path.is_dir() else [path]
            files |= {p.relative_to(root).as_posix() for p in found}
    return files


def test_every_module_a_command_imports_is_a_code_input_of_its_rule_and_stage(
    workflow_copy: Path,
) -> None:
    runtime = imported_files(workflow_copy)
    assert set(runtime) == set(COMMANDS)
    assert "gae/ops.py" in runtime["train"]  # the module issue 18 found missing
    rule_inputs: dict[str, set[str]] = {}
    for job in dry_run_jobs(workflow_copy):
        rule_inputs.setdefault(job["rule"], set()).update(
            p for p in job["input"].split(", ") if p.startswith("gae/")
        )
    stages: dict[str, list[str]] = {}
    for name, deps in dvc_stage_paths(workflow_copy, "deps").items():
        stages[name.split("@")[0]] = deps
    for command in COMMANDS:
        missing_rule = runtime[command] - rule_inputs[command]
        assert not missing_rule, f"rule {command} lacks code inputs {sorted(missing_rule)}"
        missing_dvc = runtime[command] - expand(workflow_copy, stages[command])
        assert not missing_dvc, f"dvc.yaml stage {command} lacks deps {sorted(missing_dvc)}"
        expected = set(code_deps(command, workflow_copy))
        if command == "prepare":  # its cmd also runs `gae config --runs`
            expected |= set(code_deps("config", workflow_copy))
        listed = {d for d in stages[command] if d.startswith("gae")}
        assert listed == expected, (
            f"dvc.yaml stage {command}: its code deps are {sorted(listed)}, the command imports "
            f"{sorted(expected)}; run python workflow/scripts/dvc_code_deps.py"
        )


def test_a_module_imported_lazily_counts_too(tmp_path: Path) -> None:
    """The derivation reads imports inside functions (what runs when the command does), and
    follows only the given subcommand's handler in gae/cli.py."""
    root = copy_workflow(tmp_path)
    (root / "gae" / "extra_helper.py").write_text('"""A module only sampling needs."""\n')
    sampling = root / "gae" / "sampling.py"
    sampling.write_text(
        sampling.read_text() + "\n\ndef _late():\n    from gae import extra_helper  # noqa\n"
    )
    assert "gae/extra_helper.py" in code_deps("sample", root)
    assert "gae/extra_helper.py" not in code_deps("train", root)
    assert "gae/sampling.py" not in code_deps("prepare", root)


# ---- params: what an overlay re-runs ---------------------------------------------------------

PARAMS_PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings,
    )
    config = json.loads(sys.argv[1])
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(config=config),
            snakefile=Path("Snakefile"),
        )
        workflow = workflow_api.dag(dag_settings=DAGSettings()).workflow_api._workflow
        workflow._prepare_dag(forceall=False, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        print(json.dumps({
            job.rule.name + ":" + ",".join(f"{k}={v}" for k, v in job.wildcards.items()):
            dict(job.params.items()) for job in workflow.dag.jobs
        }))
    """
)


def job_params(root: Path, config: dict) -> dict[str, dict]:
    """Each job's `params` as Snakemake computes them (what it compares to re-run a job)."""
    proc = subprocess.run(
        [sys.executable, "-c", PARAMS_PROBE, json.dumps(config)],
        cwd=root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_overlay_changes_the_params_of_only_the_jobs_that_read_its_keys(
    workflow_copy: Path,
) -> None:
    config = workflow_copy / "config"
    (config / "more-draws.yaml").write_text("evaluation:\n  loglik: {n_importance: 77}\n")
    (config / "more-candidates.yaml").write_text("models:\n  gae: {n_candidates: 64}\n")
    base = job_params(workflow_copy, {})
    cfg = load_config(base=workflow_copy / "params.yaml")

    def changed(overlay: str) -> set[str]:
        after = job_params(workflow_copy, {"overlays": [f"config/{overlay}"]})
        assert set(after) == set(base)
        return {job for job in base if base[job] != after[job]}

    loglik = {f"loglik:run={run}" for run in cfg.evaluate.loglik}
    assert changed("more-draws.yaml") == loglik | {"tables:", "report:"}
    gae_runs = {r for r in cfg.runs if parse_run_name(r).model == "gae"}
    # tables label the variants (models); the report states the overlay list itself
    trains = {f"train:run={r}" for r in gae_runs}
    assert changed("more-candidates.yaml") == trains | {"tables:", "report:"}


# ---- the paper preset needs a GPU --------------------------------------------------------------


def test_gpu_refusal_names_the_cpu_presets_and_the_opt_in() -> None:
    paper = replace(load_config(base="params.yaml", preset=False), device="auto", overlays=())
    message = gpu_refusal(paper, lambda: False, env={})
    assert message is not None and "GPU" in message and ALLOW_CPU_ENV in message
    assert all(preset in message for preset in CPU_PRESETS)
    assert gpu_refusal(replace(paper, device="cuda"), lambda: False, env={}) is not None
    assert gpu_refusal(paper, lambda: True, env={}) is None
    assert gpu_refusal(paper, lambda: False, env={ALLOW_CPU_ENV: "1"}) is None
    assert gpu_refusal(replace(paper, device="cpu"), lambda: False, env={}) is None
    for preset in CPU_PRESETS:
        assert load_config([preset], base="params.yaml").device == "cpu", preset


def test_the_paper_preset_stops_before_its_first_job_without_cuda(tmp_path: Path) -> None:
    if cuda_available(sys.executable):
        pytest.skip("this machine has CUDA: the paper preset would run")
    root = copy_workflow(tmp_path)
    env = {k: v for k, v in tool_env().items() if k != ALLOW_CPU_ENV}
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--cores", "1"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "asks for a GPU" in out, out
    assert "config/quick.yaml" in out and ALLOW_CPU_ENV in out
    assert not (root / "logs").exists() and not (root / "data" / "prepared").exists()
    assert not any((root / ".snakemake" / "locks").glob("*"))  # the lock is released


# ---- DVC: dry run on a fresh clone, dvc.lock after Snakemake ---------------------------------


def test_a_dvc_dry_run_works_on_a_fresh_clone(workflow_copy: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "dvc"), "repro", "--dry", "--force-downstream"],
        cwd=workflow_copy,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Running stage 'prepare'" in proc.stdout and "Running stage 'report'" in proc.stdout
    assert not (workflow_copy / "data" / "prepared").exists()  # nothing ran


def test_onsuccess_commits_to_dvc_only_what_dvc_can_describe(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!/bin/sh\necho \"$PWD $*\" >> {calls}\n")
    fake_python.chmod(0o755)
    out = tmp_path / "out.txt"
    assert "no DVC repository" in record_in_dvc(tmp_path, str(fake_python), [], [])
    (tmp_path / ".dvc").mkdir()
    assert "not recorded" in record_in_dvc(tmp_path, str(fake_python), [], ["config/x.yaml"])
    assert "not recorded" in record_in_dvc(tmp_path, str(fake_python), ["out.txt"], [])
    assert not calls.exists()
    out.write_text("done\n")
    assert "recorded the outputs" in record_in_dvc(tmp_path, str(fake_python), ["out.txt"], [])
    assert calls.read_text().split() == [str(tmp_path), "-m", "dvc", "commit", "--force", "--quiet"]


def test_make_run_unlocks_a_stale_lock_runs_quick_and_records_dvc() -> None:
    root = Path(__file__).resolve().parents[1]  # `make -n` only prints the commands
    proc = subprocess.run(["make", "-n", "run"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if pattern in line)
        for pattern in ("set_preset.py quick", "unlock_stale.py", "snakemake --cores", "dvc commit")
    ]
    assert order == sorted(order), proc.stdout
    assert "--rerun-incomplete" in lines[order[2]] or "--rerun-incomplete" in lines[order[2] + 1]


# ---- a killed run's lock ---------------------------------------------------------------------


def test_a_stale_lock_is_removed_and_a_live_run_is_not_disturbed(tmp_path: Path) -> None:
    root = copy_workflow(tmp_path)
    locks = root / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("stale\n")
    script = [sys.executable, "workflow/scripts/unlock_stale.py"]
    fake = tmp_path / "snakemake"  # a process named like Snakemake, working in this folder
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    fake.chmod(0o755)
    live = subprocess.Popen([str(fake)], cwd=root)
    try:
        proc = subprocess.run(script, cwd=root, env=tool_env(), capture_output=True, text=True)
        assert proc.returncode == 1 and str(live.pid) in proc.stderr, proc.stderr
        assert (locks / "0.input.lock").exists()
    finally:
        live.kill()
        live.wait()
    proc = subprocess.run(
        script, cwd=root, env=tool_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "stale lock" in proc.stderr and not any(locks.glob("*"))


# ---- validation before any job -------------------------------------------------------------


def test_a_typo_in_an_overlay_fails_before_any_job_with_the_closest_name(
    workflow_copy: Path,
) -> None:
    (workflow_copy / "config" / "typo.yaml").write_text("models:\n  gae: {n_candiates: 64}\n")
    proc = snakemake(workflow_copy, "-n", "--config", "overlays=[config/typo.yaml]")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config/typo.yaml" in out and "models.gae.n_candiates" in out, out
    assert "did you mean 'models.gae.n_candidates'" in out


def test_exponent_floats_in_params_yaml_pass_through_snakemake(tmp_path: Path) -> None:
    root = copy_workflow(tmp_path)
    params = root / "params.yaml"
    text = params.read_text()
    assert "  lr: 1.0e-3\n" in text
    params.write_text(text.replace("  lr: 1.0e-3\n", "  lr: 1e-3\n"))
    proc = snakemake(root, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr


def test_editing_ops_py_replans_the_jobs_that_import_it(tmp_path: Path) -> None:
    """Issue 18's check: every output present and up to date, then gae/ops.py is edited."""
    root = small_plan(copy_workflow(tmp_path))  # every rule, a fifth of the jobs
    for path in planned_outputs(root):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).touch()
    touch = snakemake(root, "--touch", "--cores", "1", "--no-hooks", "--quiet")
    assert touch.returncode == 0, touch.stderr
    assert "Nothing to be done" in snakemake(root, "-n").stdout
    ops = root / "gae" / "ops.py"  # an edit: Snakemake compares small inputs' checksums too
    ops.write_text(ops.read_text() + "\n# edited\n")
    later = ops.stat().st_mtime + 3600
    os.utime(ops, (later, later))
    jobs = dry_run_jobs(root)
    planned = {job["rule"] for job in jobs}
    assert {"train", "sample", "parzen", "loglik", "diagnose", "figures", "tables"} <= planned
    assert "prepare" not in planned and "report" in planned  # report: its inputs changed
    assert len([job for job in jobs if job["rule"] == "train"]) == len(
        load_config(base=root / "params.yaml").runs
    )


def test_a_continued_study_row_trains_from_the_other_rows_models(workflow_copy: Path) -> None:
    """config/study.tsv's `cpu-seeds-longer` continues `cpu-seeds`: each of its training jobs
    has that row's model.pt of the same seed and run as an input and as --init-from."""
    jobs = dry_run_jobs(workflow_copy, "docs/study/tables/cpu-seeds-longer.md")
    trains = [job for job in jobs if job["rule"] == "study_train"]
    longer = [job for job in trains if "results/study/cpu-seeds-longer/" in job["shell"]]
    assert len(longer) == 8 and len(trains) == 16  # the continued row's 8 jobs run first
    for job in longer:
        start = re.search(r"--init-from=(\S+)", job["shell"])[1]
        pattern = r"results/study/cpu-seeds/seed[23]/runs/bmnist-[a-z]+-L[12]-z50/model\.pt"
        assert re.fullmatch(pattern, start)
        assert start in job["input"].split(", ")
        seed = re.search(r"--set=seed=(\d+)", job["shell"])[1]
        assert f"/seed{seed}/" in start


def test_a_models_from_row_scores_the_other_rows_models_without_training(
    workflow_copy: Path,
) -> None:
    """config/study.tsv's `cpu-seeds-full-test` scores `cpu-seeds`' models again: its loglik
    jobs read that row's model.pt (input and --model) and it trains nothing itself."""
    jobs = dry_run_jobs(workflow_copy, "docs/study/tables/cpu-seeds-full-test.md")
    trains = [job for job in jobs if job["rule"] == "study_train"]
    assert len(trains) == 8 and all("results/study/cpu-seeds/" in j["shell"] for j in trains)
    scored = [
        job
        for job in jobs
        if job["rule"] == "study_loglik" and "results/study/cpu-seeds-full-test/" in job["shell"]
    ]
    assert len(scored) == 8
    for job in scored:
        model = re.search(r"--model=(\S+)", job["shell"])[1]
        pattern = r"results/study/cpu-seeds/seed[23]/runs/bmnist-[a-z]+-L[12]-z50/model\.pt"
        assert re.fullmatch(pattern, model) and model in job["input"].split(", ")
        assert "--set=evaluation.loglik.n_test=null" in job["shell"]
        assert "--config=config/cpu.yaml" in job["shell"]  # the scored row's overlays
    # its table reads the epochs from the source's training logs: they are its inputs
    (table,) = [job for job in jobs if job["rule"] == "study_table"]
    logs = [f for f in table["input"].split(", ") if f.endswith("/train_log.csv")]
    assert len(logs) == 8 and all(f.startswith("docs/study/record/cpu-seeds/seed") for f in logs)

