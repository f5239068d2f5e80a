"""dvc.yaml for experiments: each stage declares only the params it reads, so a one-off change
(`dvc exp run -S models.gae.n_candidates=64`) re-runs exactly the stages that read the key; the
overlay files are params of every stage; the generated parts (workflow/dvc_runs.yaml, the
top-level `plots:`) are current; metrics and the per-data-set training-curve plots are declared.

Every test works in a temporary copy of the workflow (tests/test_pipeline.py's copy_workflow);
none runs a stage: outputs are stand-in files recorded with `dvc commit`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gae.config import parse_run_name
from tests.test_pipeline import BIN, REPO_ROOT, copy_workflow, planned_outputs, tool_env

SCRIPT = "workflow/scripts/dvc_code_deps.py"
# a small plan: two data sets, three model variants, every kind of stage
SMALL_PLAN = """runs:
  - mnist-gae-L1-z50
  - mnist-vae-L1-z50
  - frey-gae-L1-z50
  - frey-vae-L1-z50
  - mnist-gae-L1-z2
evaluate:
  parzen: [mnist-gae-L1-z50, mnist-vae-L1-z50, frey-vae-L1-z50]
  loglik: [mnist-gae-L1-z50, mnist-vae-L1-z50]
  diagnostics: [frey-gae-L1-z50]
  latent: [mnist-gae-L1-z2]
"""
STAGE_PARAMS_PROBE = """
import json
from dvc.repo import Repo
with Repo('.') as repo:
    print(json.dumps({
        s.addressing: {d.def_path: list(d.params) for d in s.deps if hasattr(d, 'params')}
        for s in repo.index.stages
    }))
"""


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dvc"), *args],
        cwd=root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def stage_params(root: Path) -> dict[str, dict[str, list[str]]]:
    """stage -> {params file: the keys it declares ([] = the whole file)}, as DVC resolves it."""
    proc = subprocess.run(
        [sys.executable, "-c", STAGE_PARAMS_PROBE],
        cwd=root,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def small_plan(root: Path) -> Path:
    """Replace the copy's runs and evaluate (the end of params.yaml) by SMALL_PLAN and
    regenerate dvc.yaml's generated parts, as a user who edited `runs` would."""
    params = root / "params.yaml"
    text = params.read_text()
    start = re.search(r"^runs:", text, flags=re.MULTILINE)
    assert start and re.search(r"^evaluate:", text[start.start() :], flags=re.MULTILINE)
    params.write_text(text[: start.start()] + SMALL_PLAN)
    check = subprocess.run([sys.executable, SCRIPT, "--check"], cwd=root, capture_output=True)
    assert check.returncode == 1  # the vars file and the plots are stale now
    subprocess.run([sys.executable, SCRIPT], cwd=root, check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("dvc-workflow"))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small-plan copy whose every output exists (stand-ins) and is recorded in dvc.lock."""
    root = small_plan(copy_workflow(tmp_path_factory.mktemp("dvc-recorded")))
    for name in planned_outputs(root):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".csv":
            path.write_text("epoch,valid_objective\n1,-120.5\n2,-110.25\n")
        elif path.suffix == ".json":
            path.write_text(json.dumps({"test": {"mean": -100.0}}) + "\n")
        else:
            path.write_text(f"{name}\n")
    proc = dvc(root, "commit", "--force", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = dvc(root, "status", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == {}, proc.stdout + proc.stderr
    return root


def changed_stages(root: Path) -> set[str]:
    proc = dvc(root, "status", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return set(json.loads(proc.stdout))


def test_the_generated_parts_of_dvc_yaml_are_current() -> None:
    """workflow/dvc_runs.yaml, the overlay params and the plots match params.yaml and config/
    (run `python workflow/scripts/dvc_code_deps.py` after editing `runs` or adding a preset)."""
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--check"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_the_vars_file_maps_each_run_to_its_data_set_and_model(workflow_copy: Path) -> None:
    params = yaml.safe_load((workflow_copy / "params.yaml").read_text())
    plan = yaml.safe_load((workflow_copy / "workflow" / "dvc_runs.yaml").read_text())["plan"]
    lists = {"runs": params["runs"], **{k: params["evaluate"][k] for k in ("parzen", "loglik")}}
    lists["diagnostics"] = params["evaluate"]["diagnostics"]
    for name, runs in lists.items():
        assert list(plan[name]) == runs, name
        for run in runs:
            spec = parse_run_name(run)
            assert plan[name][run] == {"dataset": spec.dataset, "model": spec.model}


def test_stages_declare_only_the_params_they_read(workflow_copy: Path) -> None:
    stages = stage_params(workflow_copy)
    overlays = sorted(
        p.relative_to(workflow_copy).as_posix() for p in (workflow_copy / "config").glob("*.yaml")
    )
    vae = stages["train@bmnist-vae-L1-z50"]["params.yaml"]
    assert "models.vae" in vae and "model.likelihood.bmnist" in vae
    assert not [k for k in vae if k.startswith("models.gae") or k == "models"], vae
    assert [k for k in vae if k.startswith("model.likelihood")] == ["model.likelihood.bmnist"]
    assert "models.gae" in stages["train@bmnist-gae-L1-z50"]["params.yaml"]
    # the train stage reads `model` key by key: together they cover every key of params.yaml's
    params = yaml.safe_load((workflow_copy / "params.yaml").read_text())
    declared = {k.split(".")[1] for k in vae if k.startswith("model.")}
    assert declared == set(params["model"]), "dvc.yaml's train stage misses a model.* key"
    for name, files in stages.items():
        assert "overlays" in files["params.yaml"], name  # which preset is active
        assert {f: k for f, k in files.items() if f != "params.yaml"} == {f: [] for f in overlays}
        assert not any(k.startswith("models") for k in files["params.yaml"]) or name.startswith(
            "train@"
        ), name
    deps = yaml.safe_load((workflow_copy / "dvc.yaml").read_text())["stages"]
    for name, stage in deps.items():
        body = stage.get("do", stage)
        assert "config" not in body.get("deps", []), name  # not the whole folder (study.tsv)


def test_a_one_off_change_reruns_exactly_the_stages_that_read_it(recorded: Path) -> None:
    """What `dvc exp run -S KEY=VALUE` would re-run first: the stages whose params changed
    (the stages downstream of them follow when their inputs change)."""
    params = recorded / "params.yaml"
    before = params.read_text()
    try:
        assert "    n_candidates: 32\n" in before
        params.write_text(before.replace("    n_candidates: 32\n", "    n_candidates: 64\n", 1))
        gae_runs = {"mnist-gae-L1-z50", "frey-gae-L1-z50", "mnist-gae-L1-z2"}
        assert changed_stages(recorded) == {f"train@{run}" for run in gae_runs}

        params.write_text(before.replace("    frey: gaussian\n", "    frey: bernoulli\n", 1))
        assert changed_stages(recorded) == {"train@frey-gae-L1-z50", "train@frey-vae-L1-z50"}

        # a preset: every stage reads keys an overlay may set
        params.write_text(before.replace("overlays: []", "overlays: [config/smoke.yaml]", 1))
        preset = changed_stages(recorded)
        assert {"prepare", "train@mnist-vae-L1-z50", "report"} <= preset and len(preset) > 10
    finally:
        params.write_text(before)
    assert changed_stages(recorded) == set()
    smoke = recorded / "config" / "smoke.yaml"
    text = smoke.read_text()
    try:  # an edit of an overlay file's values re-runs every stage; a comment does not
        smoke.write_text(text + "\n# a comment\n")
        assert changed_stages(recorded) == set()
        smoke.write_text(text + "\nseed: 7\n")
        assert "train@mnist-vae-L1-z50" in changed_stages(recorded)
    finally:
        smoke.write_text(text)


def test_metrics_and_per_data_set_training_curves_are_declared(recorded: Path) -> None:
    proc = dvc(recorded, "metrics", "show", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = proc.stdout
    for name in ("mnist-vae-L1-z50/parzen.json", "mnist-gae-L1-z50/loglik.json"):
        assert name in shown, shown
    proc = dvc(recorded, "plots", "show", "--json")
    assert proc.returncode == 0, proc.stderr
    plots = json.loads(proc.stdout)["data"]
    assert {"training_curves_mnist", "training_curves_frey"} <= set(plots), sorted(plots)
    top = yaml.safe_load((recorded / "dvc.yaml").read_text())["plots"]
    curves = {next(iter(entry)): next(iter(entry.values())) for entry in top}
    assert sorted(curves["training_curves_frey"]["y"]) == [
        "results/runs/frey-gae-L1-z50/train_log.csv",
        "results/runs/frey-vae-L1-z50/train_log.csv",
    ]
    assert curves["training_curves_frey"]["x"] == "epoch"
    assert set(curves["training_curves_mnist"]["y"].values()) == {"valid_objective"}


FAKE_GAE = '''#!{python}
"""A stand-in `gae`: logs the call and writes the stage's outputs, made from its inputs."""
import hashlib, json, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from gae.config import load_config, parse_run_name
from gae.paths import figure_paths, report_path, table_paths
command, run = sys.argv[1], (sys.argv[2:] or [""])[0]
with open({calls!r}, "a") as calls:
    calls.write(f"{{command}} {{run}}\\n")
cfg = load_config(base="params.yaml")
runs = Path("results/runs")
if command == "train":
    model = parse_run_name(run).model
    made = json.dumps([run, cfg.to_dict()["models"][model]], sort_keys=True)
    outs = [runs / run / "model.pt", runs / run / "train_log.csv"]
elif command in ("sample", "parzen", "loglik", "diagnose"):
    made = (runs / run / "model.pt").read_text()
    outs = {{
        "sample": ["samples.npy"],
        "parzen": ["parzen.json"],
        "loglik": ["loglik.json", "loglik_images.npz"],
        "diagnose": ["diagnostics.json", "nearest_neighbours.png"],
    }}[command]
    outs = [runs / run / name for name in outs]
else:
    made = "".join(sorted(p.read_text() for p in runs.rglob("*") if p.is_file()))
    planned = {{"figures": figure_paths, "tables": table_paths}}
    outs = planned.get(command, lambda c: [report_path(c)])(cfg)
digest = hashlib.sha256(made.encode()).hexdigest()
for out in outs:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        out.write_text(json.dumps({{"test": {{"mean": int(digest[:4], 16)}}}}))
    elif out.suffix == ".csv":
        out.write_text(f"epoch,valid_objective\\n1,{{int(digest[:4], 16)}}\\n")
    else:
        out.write_text(digest)
'''


@pytest.mark.slow  # a real `dvc exp run` of 20 stages: about 40 s on 2 idle cores
def test_dvc_exp_run_reruns_the_gae_runs_and_what_follows_only(
    recorded: Path, tmp_path: Path
) -> None:
    """`dvc exp run -S models.gae.n_candidates=64` with a stand-in `gae` on PATH: it trains
    the GAE runs again, then scores them and redraws the figures, tables and report; no VAE
    stage and no data preparation runs. `dvc exp show` then lists the metrics. Runs last: the
    experiment's results stay in the module's copy."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "gae"
    fake.parent.mkdir()
    fake.write_text(FAKE_GAE.format(python=sys.executable, repo=str(REPO_ROOT), calls=str(calls)))
    fake.chmod(0o755)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "add", "-A"], cwd=recorded, check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=recorded, check=True, capture_output=True)
    env = {**tool_env(), "PATH": f"{fake.parent}:{tool_env()['PATH']}"}
    proc = subprocess.run(
        [str(BIN / "dvc"), "exp", "run", "-S", "models.gae.n_candidates=64"],
        cwd=recorded,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = set(calls.read_text().splitlines())
    gae_runs = {"mnist-gae-L1-z50", "frey-gae-L1-z50", "mnist-gae-L1-z2"}
    assert ran == {f"train {r}" for r in gae_runs} | {f"sample {r}" for r in gae_runs} | {
        "parzen mnist-gae-L1-z50",
        "loglik mnist-gae-L1-z50",
        "diagnose frey-gae-L1-z50",
        "figures ",
        "tables ",
        "report ",
    }
    shown = dvc(recorded, "exp", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert "mnist-gae-L1-z50/loglik.json" in shown.stdout and "n_candidates" in shown.stdout
