"""The smoke preset end to end, through `make run` (Snakemake + dvc commit) and `dvc repro`.

Each runs in a temporary copy of the repository (fresh data/ and results/, its own git work
tree), with the preset written into params.yaml's `overlays` so DVC sees the smoke parameters.
Checks: every table and figure and the report exist, `dvc status` is clean afterwards, DVC lists
the metrics, and both tools produce the same numbers (training is seeded and deterministic).
`make run` builds the whole smoke pipeline; `dvc repro` builds a sub-plan of it (dvc_plan: each
data set, model variant and kind of stage at least once, about a third of the stages), whose
metrics must equal Snakemake's for the same runs.
Skipped where the offline data mirror ../shared/data is absent.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
MIRROR = REPO_ROOT.parent / "shared" / "data"
VENV = Path(sys.executable).parent.parent
BIN = VENV / "bin"
IGNORE_TOP = {".venv", ".git", ".snakemake", "logs", ".pytest_cache", ".ruff_cache"}
IGNORE_ANY = {
    "__pycache__",
    "prepared",
    "raw",
    "runs",
    "figures",
    "tables",
    "report.md",
    "tmp",
    "cache",
    "out",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (MIRROR / "mnist" / "SHA256SUMS").is_file(),
        reason=f"offline data mirror not found at {MIRROR}: the smoke pipeline needs "
        f"../shared/data (mnist/ and frey/) beside the clone",
    ),
]


def copy_repo(dest: Path) -> Path:
    """The project's files without data, results, caches or venv, as a new git work tree."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder).resolve() == REPO_ROOT
        return {n for n in names if (top and n in IGNORE_TOP) or n in IGNORE_ANY} - {"README.md"}

    shutil.copytree(REPO_ROOT, dest, symlinks=True, ignore=ignore)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "GAE_DATA_MIRROR": str(MIRROR),
        "DVC_NO_ANALYTICS": "1",
    }


# A guard against a hung step, not a speed target (speed is measured by benchmarks): the smoke
# preset's `make run` takes ~4 min on 2 idle cores, but here it shares them with `dvc repro` and,
# under `make test` (two pytest-xdist workers), with the other worker's tests.
HANG_S = 1500


def run(cmd: list[str], cwd: Path, timeout: int = HANG_S) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def expected_outputs(root: Path) -> list[Path]:
    """Tables, figures and report named by the code itself, for the copy's configuration."""
    code = (
        "import json\nfrom gae.config import load_config\n"
        "from gae.figures import figure_paths\nfrom gae.tables import table_paths\n"
        "from gae.report import report_path\ncfg = load_config()\n"
        "print(json.dumps([str(p) for p in figure_paths(cfg) + table_paths(cfg)"
        " + [report_path(cfg)]]))\n"
    )
    proc = run([sys.executable, "-c", code], cwd=root)
    return [root / p for p in json.loads(proc.stdout.strip().splitlines()[-1])]


def metrics(root: Path, plan: dict | None = None) -> dict[str, object]:
    """run/kind -> the run's metrics file, for the evaluations of ``plan`` (default: the copy's
    own params.yaml)."""
    params = plan or yaml.safe_load((root / "params.yaml").read_text())
    out: dict[str, object] = {}
    for kind in ("parzen", "loglik"):
        for name in params["evaluate"][kind]:
            out[f"{name}/{kind}"] = json.loads(
                (root / "results" / "runs" / name / f"{kind}.json").read_text()
            )
    return out


def check_complete(root: Path) -> None:
    outputs = expected_outputs(root)
    missing = [str(p.relative_to(root)) for p in outputs if not p.is_file()]
    assert missing == []
    report = (root / "results" / "report.md").read_text()
    assert "Table 1: Parzen" in report and "Table 2: test log-likelihood" in report
    assert "config/smoke.yaml" in report
    for figure in (p for p in outputs if p.suffix == ".png"):
        assert f"figures/{figure.name}" in report
        assert figure.read_bytes().startswith(b"\x89PNG")
    proc = subprocess.run([str(BIN / "dvc"), "status", "--quiet"], cwd=root, env=env())
    assert proc.returncode == 0, run([str(BIN / "dvc"), "status"], cwd=root).stdout
    shown = run([str(BIN / "dvc"), "metrics", "show"], cwd=root).stdout
    assert "parzen.json" in shown and "loglik.json" in shown


# The evaluations whose runs are chosen by their (data set, model) below; `runs` follows.
EVALUATIONS = ("parzen", "loglik", "diagnostics", "latent")


def dvc_plan(params: dict) -> dict:
    """A sub-plan of params.yaml's `runs` and `evaluate` for the `dvc repro` copy.

    For each evaluation, a greedy cover of its runs: the run that adds the most (data set,
    model) pairs' parts not yet covered (its data set, its model), preferring one already
    chosen, until every data set and model of that list appears. So every data set (prepare),
    model variant (train), evaluation and figure, table and report stage runs under DVC, on
    about a third of the stages `make run` runs.
    """
    from gae.config import parse_run_name

    chosen: list[str] = []
    evaluate: dict[str, list[str]] = {}
    for kind in EVALUATIONS:
        names = list(params["evaluate"].get(kind) or [])
        parts = {
            n: {("dataset", parse_run_name(n).dataset), ("model", parse_run_name(n).model)}
            for n in names
        }
        todo = set().union(*parts.values()) if parts else set()
        picked: list[str] = []
        while todo:
            best = max(names, key=lambda n: (len(parts[n] & todo), n in chosen, -names.index(n)))
            picked.append(best)
            todo -= parts[best]
        evaluate[kind] = [n for n in names if n in picked]
        chosen += [n for n in picked if n not in chosen]
    return {"runs": [r for r in params["runs"] if r in chosen], "evaluate": evaluate}


def use_plan(root: Path, plan: dict) -> None:
    """Write ``plan`` as the copy's `runs` and `evaluate` (the end of params.yaml) and
    regenerate dvc.yaml's generated parts from it, as a user who edited `runs` would."""
    params = root / "params.yaml"
    text = params.read_text()
    start = re.search(r"^runs:", text, flags=re.MULTILINE)
    assert start and re.search(r"^evaluate:", text[start.start() :], flags=re.MULTILINE)
    params.write_text(text[: start.start()] + yaml.safe_dump(plan, sort_keys=False))
    run([sys.executable, "workflow/scripts/dvc_code_deps.py"], cwd=root)
    run([sys.executable, "workflow/scripts/dvc_code_deps.py", "--check"], cwd=root)


def test_the_dvc_plan_covers_every_data_set_model_and_stage() -> None:
    """The `dvc repro` copy's sub-plan: a part of params.yaml's plan that still runs every
    data set, model variant and evaluation (so every kind of stage), each list in its order."""
    from gae.config import parse_run_name

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    plan = dvc_plan(params)
    assert set(plan["runs"]) < set(params["runs"])
    assert plan["runs"] == [r for r in params["runs"] if r in plan["runs"]]
    listed = {r for kind in EVALUATIONS for r in plan["evaluate"][kind]}
    assert listed == set(plan["runs"])  # no run trained that no evaluation reads
    for kind in EVALUATIONS:
        full, part = params["evaluate"][kind], plan["evaluate"][kind]
        assert part == [r for r in full if r in part] and bool(part) == bool(full), kind
        for attribute in ("dataset", "model"):
            want = {getattr(parse_run_name(r), attribute) for r in full}
            assert {getattr(parse_run_name(r), attribute) for r in part} == want, (kind, attribute)
    for attribute in ("dataset", "model"):
        want = {getattr(parse_run_name(r), attribute) for r in params["runs"]}
        assert {getattr(parse_run_name(r), attribute) for r in plan["runs"]} == want, attribute


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both pipelines on the smoke preset, each in its own copy, run side by side.

    `dvc repro` runs its stages one at a time, so it runs in the background while `make run`
    (Snakemake, one job per core) runs in the foreground: the two share the 2 cores. `make run`
    builds the whole plan; `dvc repro` the sub-plan dvc_plan (its copy's params.yaml and
    generated dvc.yaml parts say so).
    """
    snake_root = copy_repo(tmp_path_factory.mktemp("smoke") / "repo")
    dvc_root = copy_repo(tmp_path_factory.mktemp("dvc") / "repo")
    use_plan(dvc_root, dvc_plan(yaml.safe_load((dvc_root / "params.yaml").read_text())))
    run([sys.executable, "workflow/scripts/set_preset.py", "smoke"], cwd=dvc_root)
    dvc_log = dvc_root.parent / "dvc-repro.log"
    started = time.perf_counter()
    with dvc_log.open("w") as log:
        dvc = subprocess.Popen(
            [str(BIN / "dvc"), "repro", "--quiet"],
            cwd=dvc_root,
            # PYTHONPATH: its stages' `gae` is the copy's package (the code its dvc.yaml deps
            # hash), not the one the venv's editable install points at
            env={
                **env(),
                "PYTHONPATH": str(dvc_root),
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            # the README's main command; -o: use this venv as it is instead of building one
            run(
                [
                    "make",
                    "run",
                    "PRESET=smoke",
                    f"VENV={VENV}",
                    f"MIRROR={MIRROR}",
                    "-o",
                    f"{VENV}/.installed",
                ],
                cwd=snake_root,
            )
            print(f"\nmake run PRESET=smoke: {time.perf_counter() - started:.0f} s wall")
            returncode = dvc.wait(timeout=HANG_S)
        finally:
            if dvc.poll() is None:
                dvc.kill()
    print(f"dvc repro (smoke): {time.perf_counter() - started:.0f} s wall")
    assert returncode == 0, dvc_log.read_text()[-4000:]
    return {"snakemake": snake_root, "dvc": dvc_root}


def test_make_run_smoke_builds_everything_and_leaves_dvc_clean(
    smoke_runs: dict[str, Path],
) -> None:
    root = smoke_runs["snakemake"]
    check_complete(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["overlays"] == ["config/smoke.yaml"]  # the preset DVC recorded
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    train = lock["stages"]["train@mnist-gae-L1-z50"]
    assert train["params"]["params.yaml"]["overlays"] == ["config/smoke.yaml"]


def test_dvc_repro_smoke_builds_the_same_artifacts(smoke_runs: dict[str, Path]) -> None:
    """DVC's sub-plan: complete for its own plan, and each of its runs' metrics (Parzen,
    log-likelihood) equal to Snakemake's for the same run. (Not diagnostics.json: it copies
    the run's parzen.json in only when that job happened to finish first.)"""
    check_complete(smoke_runs["dvc"])
    plan = yaml.safe_load((smoke_runs["dvc"] / "params.yaml").read_text())
    full = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert plan["runs"] == dvc_plan(full)["runs"] and plan["overlays"] == ["config/smoke.yaml"]
    assert_same(metrics(smoke_runs["dvc"]), metrics(smoke_runs["snakemake"], plan))


def assert_same(a: object, b: object, where: str = "") -> None:
    """Equal JSON, numbers up to float rounding (BLAS may sum in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)
