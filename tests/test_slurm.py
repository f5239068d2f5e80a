"""The cluster path on a real scheduler: the smoke preset through profiles/slurm.

Opt-in (GAE_SLURM_TEST=1) and only where SLURM's `sbatch` is on PATH. On one machine:
    bash tests/slurm/start.sh && GAE_SLURM_TEST=1 .venv/bin/pytest tests/test_slurm.py
(start.sh brings up a single-node SLURM: Debian's slurm-wlm and munge; docs/cluster.md).

In a repository copy (tests/test_pipeline_e2e.py's helpers), the copy's profiles/slurm is
adapted to the cluster at hand the way docs/cluster.md tells a user to: the CHANGE_ME partitions
become real ones, the account line goes (unless GAE_SLURM_ACCOUNT names one), GPU rules ask for
gpu=0 where no node has a `gpu` GRES, memory requests are capped at a node's memory, and job
status comes from `squeue` where `sacct` has no accounting database. Nothing else of the profile
changes. Then `snakemake --workflow-profile profiles/slurm` runs, and a second copy runs the same
plan locally (profiles/default, `--cores 2`).

The plan is a reduced smoke plan (PLAN: three runs, one of each evaluation, then figures, tables
and report: 14 jobs, every rule of `all`), not the ~90 jobs of the full smoke pipeline: each job
is an sbatch whose job step parses the workflow again and is polled for; on 2 cores the 14 jobs
take ~5 min through SLURM against ~3 min locally, so the full plan would take about half an
hour. Checks: every job went through sbatch (Snakemake's log gives a SLURM job id for each
job but `all`; SLURM lists each of them COMPLETED), every rule of the plan ran, and the
outputs equal the local run's (metrics as tests/test_pipeline_e2e.py compares them, tables byte
for byte, samples exactly), and `onsuccess` recorded them in dvc.lock (`dvc status` clean).
Environment: GAE_SLURM_PARTITION / GAE_SLURM_GPU_PARTITION (default: the default partition and
`gpu` if there is one), GAE_SLURM_ACCOUNT (default: none).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.test_pipeline_e2e import (
    BIN,
    MIRROR,
    REPO_ROOT,
    assert_same,
    copy_repo,
    expected_outputs,
    metrics,
    run,
    use_plan,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("GAE_SLURM_TEST") != "1",
        reason="opt-in: set GAE_SLURM_TEST=1 to run the smoke preset through SLURM "
        "(a single-node SLURM on this machine: bash tests/slurm/start.sh)",
    ),
    pytest.mark.skipif(
        shutil.which("sbatch") is None,
        reason="sbatch is not on PATH: no SLURM here (bash tests/slurm/start.sh installs and "
        "starts a single-node one)",
    ),
    pytest.mark.skipif(
        not (MIRROR / "mnist" / "SHA256SUMS").is_file(),
        reason=f"offline data mirror not found at {MIRROR}: the smoke pipeline needs it",
    ),
]

# Three runs, each evaluation once (Parzen, log-likelihood, diagnostics, latent figures): every
# rule of `all` (prepare, train, sample, parzen, loglik, diagnose, figures, tables, report).
PLAN = {
    "runs": ["mnist-gae-L1-z50", "bmnist-gae-L1-z50", "mnist-gae-L1-z2"],
    "evaluate": {
        "parzen": ["mnist-gae-L1-z50"],
        "loglik": ["bmnist-gae-L1-z50"],
        "diagnostics": ["mnist-gae-L1-z50"],
        "latent": ["mnist-gae-L1-z2"],
    },
}
RULES = set("prepare train sample parzen loglik diagnose figures tables report".split())
CPU_PLACEHOLDER = "CHANGE_ME_cpu_partition"
GPU_PLACEHOLDER = "CHANGE_ME_gpu_partition"
HANG_S = 2400  # a guard against a hung scheduler, not a speed target
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: ([^)]*)\)")


def slurm(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)


def partitions() -> tuple[str, str]:
    """The CPU and GPU partitions to use: the environment's, else SLURM's default partition and
    `gpu` where it exists (else the default one again)."""
    names = slurm("sinfo", "-h", "-o", "%P").stdout.split()
    default = next((n.rstrip("*") for n in names if n.endswith("*")), names[0].rstrip("*"))
    plain = [n.rstrip("*") for n in names]
    cpu = os.environ.get("GAE_SLURM_PARTITION", default)
    gpu = os.environ.get("GAE_SLURM_GPU_PARTITION", "gpu" if "gpu" in plain else cpu)
    return cpu, gpu


def resource_entries(entries: list[str]) -> list[tuple[str, str, str]]:
    """`[rule:]name=value` strings as (rule or "", name, value)."""
    out = []
    for entry in entries:
        key, value = str(entry).split("=", 1)
        rule, _, name = key.rpartition(":")
        out.append((rule, name, value.split("#")[0].strip()))
    return out


def adapt_profile(profile: dict) -> dict:
    """profiles/slurm as a user adapts it to this cluster (docs/cluster.md): partitions,
    account, GPU requests, memory requests, job-status command. Nothing else changes."""
    cpu, gpu = partitions()
    has_gpus = "gpu" in slurm("sinfo", "-h", "-o", "%G").stdout
    node_mem = min(int(m.rstrip("+")) for m in slurm("sinfo", "-h", "-o", "%m").stdout.split())
    account = os.environ.get("GAE_SLURM_ACCOUNT")
    placeholders = {CPU_PLACEHOLDER: cpu, GPU_PLACEHOLDER: gpu}

    def adapt(entries: list[str]) -> list[str]:
        out = []
        for rule, name, value in resource_entries(entries):
            if name == "slurm_account":
                if not account:
                    continue  # a cluster without accounts: the line goes
                value = account
            value = placeholders.get(value, value)
            if name == "mem_mb":
                value = str(min(int(value), node_mem))
            out.append(f"{rule}:{name}={value}" if rule else f"{name}={value}")
        return out

    adapted = dict(profile)
    adapted["default-resources"] = adapt(profile["default-resources"])
    adapted["set-resources"] = adapt(profile["set-resources"])
    if not has_gpus:  # the rules sent to the GPU partition ask for no GPU
        gpu_rules = sorted(
            {r for r, n, v in resource_entries(profile["set-resources"]) if v == GPU_PLACEHOLDER}
        )
        adapted["set-resources"] += [f"{rule}:gpu=0" for rule in gpu_rules]
    if slurm("sacct", "-X", "-n", "--format=JobIDRaw").returncode != 0:
        adapted["slurm-status-command"] = "squeue"  # no accounting database
    adapted["slurm-init-seconds-before-status-checks"] = 5  # short jobs: look soon
    return adapted


def prepared_copy(dest: Path) -> Path:
    """A repository copy on PLAN and the smoke preset."""
    root = copy_repo(dest)
    use_plan(root, PLAN)
    run([sys.executable, "workflow/scripts/set_preset.py", "smoke"], cwd=root)
    return root


def job_states(ids: list[str]) -> dict[str, str]:
    """SLURM job id -> state, from squeue (finished jobs stay for MinJobAge) or sacct."""
    listed = slurm("squeue", "-h", "--states=all", "-o", "%i|%T", "--jobs", ",".join(ids))
    states = dict(line.split("|", 1) for line in listed.stdout.split())
    missing = [i for i in ids if i not in states]
    if missing:
        acct = slurm("sacct", "-X", "-n", "-P", "--format=JobIDRaw,State", "-j", ",".join(missing))
        states |= dict(line.split("|", 1)[:2] for line in acct.stdout.split())
    return states


@pytest.fixture(scope="module")
def slurm_and_local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    info = slurm("sinfo", "-h", "-o", "%P %a %T")
    if info.returncode != 0 or not info.stdout.strip():
        pytest.fail(f"SLURM does not answer ({info.stderr.strip()}); run tests/slurm/start.sh")

    local = prepared_copy(tmp_path_factory.mktemp("local") / "repo")
    started = time.perf_counter()
    local_proc = run(
        [str(BIN / "snakemake"), "--cores", "2", "--resources", "gpu=2"], cwd=local, timeout=HANG_S
    )
    local_s = time.perf_counter() - started

    root = prepared_copy(tmp_path_factory.mktemp("slurm") / "repo")
    profile_file = root / "profiles" / "slurm" / "config.yaml"
    profile = adapt_profile(yaml.safe_load(profile_file.read_text()))
    profile_file.write_text(yaml.safe_dump(profile, sort_keys=False))
    started = time.perf_counter()
    proc = run(
        [str(BIN / "snakemake"), "--workflow-profile", "profiles/slurm"], cwd=root, timeout=HANG_S
    )
    slurm_s = time.perf_counter() - started
    log = proc.stdout + proc.stderr
    (root.parent / "snakemake-slurm.log").write_text(log)
    submitted = SUBMITTED.findall(log)
    print(
        f"\nlocal run: {local_s:.0f} s wall; SLURM run: {slurm_s:.0f} s wall, "
        f"{len(submitted)} jobs through sbatch (log: {root.parent / 'snakemake-slurm.log'})"
    )
    return {
        "local": local,
        "slurm": root,
        "profile": profile,
        "submitted": submitted,
        "local_log": local_proc.stdout + local_proc.stderr,
        "log": log,
    }


def finished_rules(log: str) -> collections.Counter[str]:
    return collections.Counter(
        r for r in re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log) if r != "all"
    )


def test_every_job_went_through_sbatch(slurm_and_local: dict) -> None:
    submitted = slurm_and_local["submitted"]
    # the rule, from the SLURM log path .snakemake/slurm_logs/rule_<rule>/...
    rules = collections.Counter(
        re.search(r"slurm_logs/rule_(\w+)/", path).group(1) for _, path in submitted
    )
    assert set(rules) == RULES
    assert rules == finished_rules(slurm_and_local["local_log"])  # the local run's jobs, each
    ids = [job_id for job_id, _ in submitted]
    assert len(set(ids)) == len(ids)
    states = job_states(ids)
    assert {i: states.get(i) for i in ids} == dict.fromkeys(ids, "COMPLETED")


def test_the_profile_was_used_as_a_user_adapts_it(slurm_and_local: dict) -> None:
    """Only the cluster-specific values differ from profiles/slurm (docs/cluster.md)."""
    profile = slurm_and_local["profile"]
    original = yaml.safe_load((REPO_ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert {k: v for k, v in profile.items() if k in original and "resources" not in k} == {
        k: v for k, v in original.items() if "resources" not in k
    }
    text = yaml.safe_dump(profile)
    assert "CHANGE_ME" not in text


def test_slurm_outputs_equal_a_local_run(slurm_and_local: dict) -> None:
    local, root = slurm_and_local["local"], slurm_and_local["slurm"]
    outputs = expected_outputs(root)
    assert [p for p in outputs if not p.is_file()] == []
    assert_same(metrics(root), metrics(local))
    for table in (p for p in outputs if p.parent.name == "tables"):
        assert table.read_bytes() == (local / table.relative_to(root)).read_bytes(), table.name
    for name in PLAN["runs"]:
        samples = Path("results", "runs", name, "samples.npy")
        assert np.array_equal(np.load(root / samples), np.load(local / samples)), name


def test_dvc_records_the_slurm_run(slurm_and_local: dict) -> None:
    """Snakemake's `onsuccess` runs on the submitting side too: dvc.lock records the outputs."""
    assert "gae: recorded the outputs in dvc.lock" in slurm_and_local["log"]
    root = slurm_and_local["slurm"]
    assert run([str(BIN / "dvc"), "status", "--quiet"], cwd=root).returncode == 0
