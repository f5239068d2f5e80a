"""The GPU training path (issue 20): no per-step host synchronisation, the device-side epoch log,
fused Adam on CUDA, opt-in ``train.compile``. The CUDA tests skip without a CUDA device (run them
on a lent GPU: ``benchmarks/gpu_session.sh``, or ``pytest tests/test_gpu_path.py -k cuda``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import gae.objectives as objectives
import gae.training as training
from gae.config import updated
from gae.objectives import ObjectiveTerms
from tests.test_training import (  # _one_thread: autouse, one intra-op thread
    KNN_REUSED,
    _assert_resume_is_bit_identical,
    _one_thread,  # noqa: F401
    _read_log,
    _synthetic_cfg,
)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GAE_KNN = {"gae-knn": {**KNN_REUSED, "neighbour_refresh_epochs": 1}}




def _per_step_sums(rows: list[list[float]], sizes: list[int], names, limit) -> dict[str, float]:
    """What the loop's per-step ``.item()`` version added up (the reference)."""
    sums: dict[str, float] = {}
    for row, size in zip(rows, sizes, strict=True):
        values = list(row[1:])
        if limit is not None:
            norm = values.pop(0)
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + norm * size
            sums["clipped_share"] = sums.get("clipped_share", 0.0) + float(norm > limit) * size
        for name, value in zip(names, values, strict=True):
            sums[name] = sums.get(name, 0.0) + value
    return sums


@pytest.mark.parametrize("limit", [None, 1.0])
def test_step_log_sums_are_the_per_step_item_sums_bit_for_bit(limit: float | None) -> None:
    gen = torch.Generator().manual_seed(0)
    sizes = [32, 32, 33]
    log = training.StepLog(len(sizes))
    reference_rows = []
    for step, size in enumerate(sizes, start=1):
        objective = torch.randn(size, generator=gen) * 100
        parts = {"recon": torch.randn(size, generator=gen), "kl": torch.rand(size, generator=gen)}
        loss = -objective.mean()
        norm = torch.rand((), generator=gen) * 2 if limit is not None else None
        log.add(step, size, loss, norm, ObjectiveTerms(objective, objective, parts))
        row = [loss.item()] + ([norm.item()] if norm is not None else [])
        reference_rows.append(
            row + [objective.sum().item()] + [v.sum().item() for v in parts.values()]
        )
    rows = log.read()
    assert rows == reference_rows
    got = log.sums(rows, limit)
    want = _per_step_sums(reference_rows, sizes, ["train_objective", "recon", "kl"], limit)
    assert list(got) == list(want)  # the log's column order
    assert got == want  # exact floats


def test_no_step_reads_a_number_back_from_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train_step never calls .item() / .tolist() / bool() on a tensor (each a host sync on
    CUDA); train_epoch reads the device-side log once (one .tolist())."""
    run = "bmnist-gae-knn-L1-z4"
    cfg = _synthetic_cfg(tmp_path, [run], models=GAE_KNN)
    trainer = training.Trainer(cfg, run)
    calls: list[str] = []
    gae_dir = str(Path(training.__file__).parent)

    def spy(name: str):
        real = getattr(torch.Tensor, name)

        def wrapped(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(gae_dir):
                calls.append(f"{name} from {Path(caller).name}:{sys._getframe(1).f_lineno}")
            return real(self, *args, **kwargs)

        return wrapped

    trainer.objective.start_epoch(trainer.model, trainer.x_train, 1)  # not a step: may read
    monkeypatch.setattr(trainer.objective, "start_epoch", lambda *args: None)
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, spy(name))
    sums = trainer.train_epoch(1)
    monkeypatch.undo()
    assert len(calls) == 1 and calls[0].startswith("tolist from training.py"), calls
    assert set(sums) >= {"train_objective", "grad_norm", "clipped_share", "log_prior"}


def test_a_nan_in_the_last_step_of_an_epoch_is_caught_before_it_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = "bmnist-vae-L1-z4"
    cfg = _synthetic_cfg(tmp_path, [run])
    real = training.vae_objective
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 10:  # epoch 2, step 5: the epoch's last (150 images / 32)
            terms.surrogate = terms.surrogate * float("inf")
        return terms

    monkeypatch.setattr(training.VaeObjective, "elbo", staticmethod(poisoned))
    with pytest.raises(training.TrainingError, match=r"became (-)?(inf|nan) at epoch 2, step 5"):
        training.train_run(cfg, run)
    folder = tmp_path / "results" / "runs" / run
    assert torch.load(folder / "checkpoint.pt", weights_only=False)["state"]["epoch"] == 1
    assert len(_read_log(folder / "train_log.csv")) == 1


def test_adam_is_fused_and_an_older_checkpoint_resumes_with_its_own_variant(tmp_path: Path) -> None:
    run = "bmnist-vae-L1-z4"
    trainer = training.Trainer(_synthetic_cfg(tmp_path, [run]), run)
    assert trainer.optimizer.defaults.get("fused") is True  # CPU and CUDA alike
    # a checkpoint of torch's default (unfused) Adam, as CPU runs before 2026-12-02 made them:
    # loading it restores that variant, so the resumed run continues bit-identically
    params = [torch.nn.Parameter(torch.linspace(-1.0, 1.0, 5))]
    params[0].grad = torch.linspace(0.5, 2.0, 5)
    older = torch.optim.Adam(params, lr=1e-3)
    older.step()
    resumed = training._make_adam(params, 1e-3)
    resumed.load_state_dict(older.state_dict())
    assert not resumed.param_groups[0]["fused"]
    twin = [torch.nn.Parameter(params[0].detach().clone())]
    twin[0].grad = params[0].grad.clone()
    reference = torch.optim.Adam(twin, lr=1e-3)
    reference.load_state_dict(older.state_dict())
    resumed.step()
    reference.step()
    assert torch.equal(params[0], twin[0])


def test_compile_is_opt_in_and_in_the_fingerprint_only_when_set(tmp_path: Path) -> None:
    run = "bmnist-vae-L1-z4"
    eager = training.Trainer(_synthetic_cfg(tmp_path, [run]), run)
    assert eager.train_cfg.compile is False
    assert "compile" not in eager._fingerprint_parts()  # existing runs keep their fingerprint
    compiled = training.Trainer(_synthetic_cfg(tmp_path, [run], compile=True), run)
    assert compiled._fingerprint_parts()["compile"] is True
    assert compiled.fingerprint != eager.fingerprint
    # in place: the checkpoint's and model.pt's keys are unchanged
    assert compiled.model.state_dict().keys() == eager.model.state_dict().keys()


def _inductor_works() -> str | None:
    """None if torch.compile (Inductor, which needs a C++ compiler on the CPU) runs here, else
    the reason it does not."""
    if shutil.which("g++") is None and shutil.which("c++") is None:
        return "torch.compile's Inductor needs a C++ compiler (g++) on the CPU; none found"
    try:
        torch.compile(lambda x: torch.tanh(x) * 2)(torch.ones(3))
    except Exception as exc:  # noqa: BLE001 (any failure is the reason)
        return f"torch.compile does not run here: {type(exc).__name__}: {exc}"
    return None


def test_a_compiled_run_trains_and_resumes_bit_identically(tmp_path: Path) -> None:
    """train.compile: true at tiny size on the CPU: it trains (finite log) and a run killed after
    epoch 2 and resumed in a new process reaches the uninterrupted run's weights and log."""
    reason = _inductor_works()
    if reason:
        pytest.skip(reason)
    run = "bmnist-vae-L1-z4"
    cfg = _synthetic_cfg(tmp_path, [run], compile=True, batch_size=50)
    cfg = updated(cfg, {"evaluation": {"batch_size": 40}})  # few shapes: few graphs to compile
    _assert_resume_is_bit_identical(tmp_path, cfg, run)
    rows = _read_log(tmp_path / "results_a" / "runs" / run / "train_log.csv")
    assert all(float(r["train_objective"]) < 0 for r in rows)


# ---- CUDA only -------------------------------------------------------------------------------


def _cpu_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same reparameterisation noise on every device: drawn on the CPU, then moved."""
    gen = torch.Generator().manual_seed(123)

    def reparameterise(mu, logvar, n_z, generator=None):
        eps = torch.randn(mu.shape[0], n_z, mu.shape[1], generator=gen, dtype=mu.dtype)
        return mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps.to(mu.device)

    monkeypatch.setattr(objectives, "reparameterise", reparameterise)


@CUDA
@pytest.mark.parametrize(
    ("run", "models", "train"),
    [
        ("bmnist-vae-L2-z4", {}, {}),
        ("bmnist-gae-knn-L2-z4", GAE_KNN, {}),
        ("bmnist-vamp-L1-z4", {}, {"optimizer": "adam_normgrad"}),
    ],
)
def test_cuda_a_training_step_equals_the_cpu_one(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run: str,
    models: dict[str, Any],
    train: dict[str, Any],
) -> None:
    """One train_step on CUDA (fused Adam, foreach AdamNormGrad) and on the CPU from the same
    weights, minibatch and noise: the logged numbers agree to rtol 1e-5 and the gradients to
    rtol 1e-4 / atol 1e-6 (float32, TF32 off: only the kernels' summation order differs)."""
    assert not torch.backends.cuda.matmul.allow_tf32
    logs, grads = {}, {}
    for device in ("cpu", "cuda"):
        cfg = _synthetic_cfg(tmp_path, [run], models=models, **train)
        cfg = replace(cfg, device=device)
        _cpu_noise(monkeypatch)
        trainer = training.Trainer(cfg, run)
        assert bool(trainer.optimizer.defaults.get("fused")) == (device == "cuda")
        trainer.objective.start_epoch(trainer.model, trainer.x_train, 1)
        log = training.StepLog(1)
        index = torch.arange(32, device=trainer.device)
        trainer.train_step(index, 1, 1, log)
        logs[device] = log.read()[0]
        grads[device] = [p.grad.cpu() for p in trainer.model.parameters() if p.grad is not None]
    assert logs["cuda"] == pytest.approx(logs["cpu"], rel=1e-5)
    for cpu, cuda in zip(grads["cpu"], grads["cuda"], strict=True):
        torch.testing.assert_close(cuda, cpu, rtol=1e-4, atol=1e-6)


@CUDA
@pytest.mark.parametrize(
    ("run", "models", "train"),
    [
        ("bmnist-gae-knn-L1-z4", GAE_KNN, {}),
        ("bmnist-vae-L1-z4", {}, {"optimizer": "adam_normgrad"}),
    ],
)
def test_cuda_resume_with_fused_adam_is_bit_identical(
    tmp_path: Path, run: str, models: dict[str, Any], train: dict[str, Any]
) -> None:
    cfg = _synthetic_cfg(tmp_path, [run], models=models, **train)
    cfg = replace(cfg, device="cuda")
    _assert_resume_is_bit_identical(tmp_path, cfg, run)


@CUDA
def test_cuda_train_step_does_not_synchronise(tmp_path: Path) -> None:
    """torch.cuda's sync debug mode: no step of an epoch waits for the GPU (the default GAE)."""
    run = "bmnist-gae-knn-L1-z4"
    cfg = _synthetic_cfg(tmp_path, [run], models=GAE_KNN)
    cfg = replace(cfg, device="cuda")
    trainer = training.Trainer(cfg, run)
    trainer.objective.start_epoch(trainer.model, trainer.x_train, 1)
    log = training.StepLog(3)
    perm = torch.randperm(trainer.n_train).to(trainer.device)
    for step in (1, 2):  # warm-up: first calls may allocate and initialise
        trainer.train_step(perm[:32], 1, step, log)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.train_step(perm[32:64], 1, 3, log)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(log.read()) == 3


@CUDA
def test_cuda_reduce_overhead_compile_trains(tmp_path: Path) -> None:
    run = "bmnist-vae-L1-z4"
    cfg = _synthetic_cfg(tmp_path, [run], compile="reduce-overhead", batch_size=50)
    cfg = replace(cfg, device="cuda")
    training.train_run(cfg, run)
    rows = _read_log(tmp_path / "results" / "runs" / run / "train_log.csv")
    assert len(rows) == 3 and all(float(r["train_objective"]) < 0 for r in rows)


# ---- benchmarks/gpu_session.sh, its non-GPU parts --------------------------------------------

SESSION = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_session.sh"


def test_gpu_session_dry_run_prints_every_command_within_nine_minutes(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SESSION), "--dry", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    text = done.stdout
    assert "pytest tests/test_gpu_path.py tests/test_training.py -k cuda" in text
    assert "bench_training.py --device cuda --out " + str(tmp_path / "out") in text
    for run in ("bmnist-vae-L2-z50", "bmnist-gae-L2-z50"):
        assert f"gae train {run} --no-preset" in text and f"gae loglik {run}" in text
    limits = [int(line.split("<= ")[1].split("s]")[0]) for line in lines if "<= " in line]
    concurrent = [line for line in lines if "(concurrent)" in line]
    assert len(concurrent) == 4  # train and loglik of each run, two at a time
    # every stage's limit, the concurrent ones counted once: within 9 minutes
    assert sum(limits) - limits[3] - limits[6] <= 540 + 90  # + prepare, only without data
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_gpu_session_fails_fast_without_cuda(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SESSION), str(tmp_path / "out")], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr and "Nothing was run" in done.stderr
    assert not (tmp_path / "out" / "training.json").exists()


def test_a_stopped_run_is_finalised_at_the_epochs_it_has_and_resumes_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What gpu_session.sh does with a run its time limit stopped: ``--set train.epochs=<done>``
    writes model.pt from the checkpoint without training (epochs is not in the fingerprint),
    and the full setting later resumes the same run."""
    run = "bmnist-vae-L1-z4"
    cfg = _synthetic_cfg(tmp_path, [run], epochs=4)
    real = training.Trainer.save_checkpoint

    def killed_after_epoch_2(self):
        real(self)
        if self.state["epoch"] == 2:
            raise KeyboardInterrupt  # the session's timeout

    monkeypatch.setattr(training.Trainer, "save_checkpoint", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        training.train_run(cfg, run)
    monkeypatch.undo()
    folder = tmp_path / "results" / "runs" / run
    assert not (folder / "model.pt").exists()
    training.train_run(updated(cfg, {"train": {"epochs": 2}}), run)
    assert (folder / "model.pt").exists() and len(_read_log(folder / "train_log.csv")) == 2
    training.train_run(cfg, run)
    assert len(_read_log(folder / "train_log.csv")) == 4
