"""The pipeline definitions: Snakemake's planned outputs == dvc.yaml's stage outs, presets keep
the DAG, bad configuration fails with a clear message, lint is clean.

Every test works in a temporary copy of the workflow files (Snakemake and DVC write state into
the folder they run in), so it never touches the repository's own data/ or results/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOW_FILES = (
    "Snakefile",
    "workflow",
    "profiles",
    "params.yaml",
    "config",
    "dvc.yaml",
    ".dvc/config",
    ".dvcignore",
    "gae",
)
# The one lint we accept, explained in README "Pipeline": every rule runs the same pinned venv.
ACCEPTED_LINTS = {"Specify a conda environment or container for each rule."}


def copy_workflow(dest: Path) -> Path:
    """The workflow definition (not data/results) in ``dest``, as a git work tree for DVC."""
    for name in WORKFLOW_FILES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(
                src,
                dest / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    # the paper preset, whatever preset `make run` last wrote into the repository's params.yaml
    subprocess.run(
        [sys.executable, "workflow/scripts/set_preset.py", "paper"],
        cwd=dest,
        check=True,
        capture_output=True,
    )
    return dest


def tool_env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
    }


def snakemake(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "snakemake"), *args],
        cwd=root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def planned_outputs(root: Path, *args: str) -> set[str]:
    """Every output file of Snakemake's DAG (`--summary` is a dry run listing them)."""
    proc = snakemake(root, "--summary", *args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("output_file\t"))
    return {line.split("\t")[0] for line in lines[start + 1 :] if line.strip()}


def dvc_stage_paths(root: Path, kind: str) -> dict[str, list[str]]:
    """stage name -> the paths of its ``kind`` ("outs": outs, metrics, plots; or "deps"),
    resolved by DVC itself (foreach, ${...})."""
    code = (
        "import json, sys\nfrom dvc.repo import Repo\n"
        "with Repo('.') as repo:\n"
        "    print(json.dumps({s.addressing: [str(o.def_path) for o in getattr(s, sys.argv[1])]"
        " for s in repo.index.stages}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, kind],
        cwd=root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    return json.loads(proc.stdout.strip().splitlines()[-1])


def covered(path: str, outs: set[str]) -> bool:
    return any(path == out or path.startswith(out.rstrip("/") + "/") for out in outs)


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


@pytest.fixture(scope="module")
def paper_outputs(workflow_copy: Path) -> set[str]:
    """Snakemake's planned outputs for the copy's params.yaml (the paper preset), computed once
    for the tests that compare with it."""
    return planned_outputs(workflow_copy)


def test_snakemake_and_dvc_plan_the_same_artifacts(
    workflow_copy: Path, paper_outputs: set[str]
) -> None:
    params = yaml.safe_load((workflow_copy / "params.yaml").read_text())
    snake = set(paper_outputs)
    stages = dvc_stage_paths(workflow_copy, "outs")
    dvc = {out for outs in stages.values() for out in outs}

    # the paper preset's DAG lists every run of params.yaml, and DVC has a stage for each
    for run in params["runs"]:
        for name in ("model.pt", "train_log.csv", "samples.npy"):
            assert f"results/runs/{run}/{name}" in snake
        assert f"results/runs/{run}/model.pt" in stages[f"train@{run}"]
        assert f"results/runs/{run}/samples.npy" in stages[f"sample@{run}"]
    for run in params["evaluate"]["parzen"]:
        assert stages[f"parzen@{run}"] == [f"results/runs/{run}/parzen.json"]
    for run in params["evaluate"]["loglik"]:
        assert sorted(stages[f"loglik@{run}"]) == [
            f"results/runs/{run}/loglik.json",
            f"results/runs/{run}/loglik_images.npz",
        ]

    # no drift: each side's outputs are exactly covered by the other's
    assert sorted(p for p in snake if not covered(p, dvc)) == []
    assert sorted(o for o in dvc if not any(covered(p, {o}) for p in snake)) == []
    # per-run artifacts are tracked file by file on both sides
    assert {p for p in snake if p.startswith("results/runs/")} == {
        o for o in dvc if o.startswith("results/runs/")
    }
    assert {
        "results/tables/table1_parzen.md",
        "results/tables/table2_loglik.tex",
        "results/report.md",
        "results/figures/latent_density.png",
    } <= snake


@pytest.mark.parametrize("preset", ["config/smoke.yaml", "config/cpu.yaml"])
def test_presets_change_scale_not_the_dag(
    workflow_copy: Path, paper_outputs: set[str], preset: str
) -> None:
    assert planned_outputs(workflow_copy, "--config", f"overlays=[{preset}]") == paper_outputs


def test_bad_configuration_fails_before_any_job(tmp_path: Path) -> None:
    root = copy_workflow(tmp_path)
    params = (root / "params.yaml").read_text()

    (root / "params.yaml").write_text(params.replace("  epochs: 300", "  epochs: 0"))
    proc = snakemake(root, "-n")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "epochs" in out and "minimum" in out, out

    (root / "params.yaml").write_text(params)
    (root / "config" / "bad.yaml").write_text("evaluate: {latent: []}\n")
    proc = snakemake(root, "-n", "--config", "overlays=[config/bad.yaml]")
    assert proc.returncode != 0 and "presets must keep" in proc.stdout + proc.stderr

    (root / "config" / "bad.yaml").write_text("model: {activation: sigmoid}\n")
    proc = snakemake(root, "-n", "--config", "overlays=[config/bad.yaml]")
    assert proc.returncode != 0 and "model.activation" in proc.stdout + proc.stderr

    proc = snakemake(root, "-n", "--config", "seed=7")
    assert proc.returncode != 0 and "may only set 'overlays'" in proc.stdout + proc.stderr


def test_set_preset_changes_only_the_overlays_line(tmp_path: Path) -> None:
    root = copy_workflow(tmp_path)
    before = (root / "params.yaml").read_text()
    script = [sys.executable, "workflow/scripts/set_preset.py"]
    subprocess.run([*script, "smoke"], cwd=root, check=True, capture_output=True)
    after = (root / "params.yaml").read_text()
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert changed == [("overlays: []", "overlays: [config/smoke.yaml]")]
    assert yaml.safe_load(after)["overlays"] == ["config/smoke.yaml"]
    proc = subprocess.run([*script, "nosuch"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 1 and "config/nosuch.yaml does not exist" in proc.stderr
    subprocess.run([*script, "paper"], cwd=root, check=True, capture_output=True)
    assert (root / "params.yaml").read_text() == before


def test_every_rule_has_log_benchmark_and_only_the_accepted_lint(workflow_copy: Path) -> None:
    rules_text = "\n".join(p.read_text() for p in (workflow_copy / "workflow/rules").glob("*.smk"))
    rules = re.findall(r"^rule (\w+):", rules_text, flags=re.MULTILINE)
    assert set(rules) >= {
        "prepare",
        "train",
        "sample",
        "parzen",
        "loglik",
        "diagnose",
        "figures",
        "tables",
        "report",
    }
    blocks = re.split(r"^rule ", rules_text, flags=re.MULTILINE)[1:]
    for block in blocks:
        assert "    log:" in block and "    benchmark:" in block and "    threads:" in block, block
    for block in blocks:
        name = block.split(":", 1)[0]
        if name in {"train", "sample", "parzen", "loglik", "diagnose"}:
            assert "gpu=1" in block, name
    proc = snakemake(workflow_copy, "--lint")  # exit status 1 whenever any lint is shown
    assert "Lints for rule" in proc.stderr or proc.returncode == 0, proc.stderr
    lints = set(re.findall(r"^\s+\* (.+?):?$", proc.stdout + proc.stderr, flags=re.MULTILINE))
    assert lints <= ACCEPTED_LINTS, lints


def test_default_profile_is_found_by_itself(workflow_copy: Path) -> None:
    proc = snakemake(workflow_copy, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr
    assert "profiles/default" in proc.stdout + proc.stderr


def test_both_tools_rerun_a_step_when_the_same_code_changes(workflow_copy: Path) -> None:
    """Each Snakemake rule's code inputs equal the code deps of the matching dvc.yaml stage."""
    proc = snakemake(workflow_copy, "-n")
    assert proc.returncode == 0, proc.stderr
    snake_code: dict[str, set[str]] = {}
    for rule, inputs in re.findall(
        r"^(?:local)?rule (\w+):\n    input: (.*)$", proc.stdout, flags=re.MULTILINE
    ):
        snake_code.setdefault(rule, set()).update(
            p for p in inputs.split(", ") if p.startswith("gae/")
        )
    # foreach stages (name@item) share their code deps: one entry per stage name
    dvc_deps = {
        name.split("@")[0]: deps for name, deps in dvc_stage_paths(workflow_copy, "deps").items()
    }
    snake_code.pop("all", None)
    assert set(snake_code) == set(dvc_deps)
    for rule, files in snake_code.items():
        expected: set[str] = set()
        for dep in dvc_deps[rule]:
            path = workflow_copy / dep
            if dep.startswith("gae/"):
                expected |= (
                    {str(p.relative_to(workflow_copy)) for p in path.glob("*.py")}
                    if path.is_dir()
                    else {dep}
                )
        assert files == expected, rule
