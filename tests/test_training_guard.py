"""A diverged run is stopped and never saved, and a --restart replaces a run only once it succeeds.

Issue 19, item 1: at ``train.lr: 1.0e+3`` clipping and Adam keep the objective finite, so the
old "is it finite" guard saved a model with a validation ELBO of -6.9e8 nats, and a ``--restart``
had already overwritten the previous run's checkpoint and log by then.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import gae.training as training
from gae.cli import main
from gae.config import updated
from gae.errors import TrainingError
from gae.models import load_model
from gae.objectives import trivial_log_likelihood
from tests.test_training import (  # _one_thread: the autouse fixture, active here too
    REPO_ROOT,
    _one_thread,  # noqa: F401
    _read_log,
    _synthetic_cfg,
)

RUN = "bmnist-vae-L1-z4"
THREE = ("model.pt", "checkpoint.pt", "train_log.csv")


def _digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in THREE}


def _run_folder(cfg: Any, run: str = RUN) -> Path:
    return Path(cfg.paths.results) / "runs" / run


# ---- the trivial model and the criterion ----------------------------------------------------


def test_the_trivial_model_is_independent_pixels_at_the_training_statistics() -> None:
    gen = torch.Generator().manual_seed(0)
    x_train = (torch.rand(50, 6, generator=gen) < 0.3).float()
    x_train[:, 0] = 0.0  # a pixel never on in training: smoothed, finite
    x_valid = (torch.rand(20, 6, generator=gen) < 0.3).float()
    x_valid[0, 0] = 1.0
    p = (x_train.double().sum(0) + 1) / (50 + 2)
    want = torch.distributions.Bernoulli(probs=p).log_prob(x_valid.double()).sum(1).mean()
    got = trivial_log_likelihood(x_train, x_valid, "bernoulli")
    assert got == pytest.approx(want.item(), rel=1e-12)

    grey_train, grey_valid = torch.rand(50, 6, generator=gen), torch.rand(20, 6, generator=gen)
    grey_train[:, 1] = 0.5  # a constant pixel: its std is the decoder's floor
    mean, std = grey_train.double().mean(0), grey_train.double().std(0, correction=0)
    std = std.clamp_min(0.01)
    assert std[1] == 0.01
    want = torch.distributions.Normal(mean, std).log_prob(grey_valid.double()).sum(1).mean()
    got = trivial_log_likelihood(grey_train, grey_valid, "gaussian", std_min=0.01)
    assert got == pytest.approx(want.item(), rel=1e-12)
    assert trivial_log_likelihood(grey_train, grey_valid, "linear_gaussian") is None


@pytest.mark.parametrize(("offset", "stops"), [(+1.0, False), (-1.0, True)])
def test_the_guard_stops_exactly_beyond_the_margin_below_the_trivial_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offset: float, stops: bool
) -> None:
    """The criterion: validation ELBO < trivial - DIVERGENCE_MARGIN nats x pixels."""
    cfg = _synthetic_cfg(tmp_path, [RUN], epochs=2)
    data = np.load(tmp_path / "data" / "prepared" / "bmnist.npz")
    baseline = trivial_log_likelihood(
        torch.as_tensor(data["x_train"]), torch.as_tensor(data["x_valid"]), "bernoulli"
    )
    limit = baseline - training.DIVERGENCE_MARGIN * data["x_valid"].shape[1]
    monkeypatch.setattr(training, "validation_elbo", lambda *args, **kwargs: limit + offset)
    if not stops:
        training.train_run(cfg, RUN)
        assert (_run_folder(cfg) / "model.pt").exists()
        return
    with pytest.raises(TrainingError, match=r"implausible.*train\.lr \(now 0\.001\)"):
        training.train_run(cfg, RUN)
    assert not (_run_folder(cfg) / "model.pt").exists()


@pytest.mark.parametrize("run", [RUN, "bmnist-gae-L1-z4", "bmnist-gae-slides-L1-z4"])
def test_a_diverged_run_is_stopped_with_the_setting_to_change_and_not_saved(
    tmp_path: Path, run: str
) -> None:
    cfg = _synthetic_cfg(tmp_path, [run], epochs=2, lr=1.0e3)
    with pytest.raises(TrainingError) as info:
        training.train_run(cfg, run)
    message = str(info.value)
    assert f"run {run}: the validation ELBO" in message and "implausible" in message
    assert "trivial model" in message and "diverged" in message
    assert "train.lr (now 1000)" in message and "--restart" in message
    assert "no checkpoint or model was written" in message  # it diverged in epoch 1
    assert not (_run_folder(cfg, run) / "model.pt").exists()


# ---- a restart is a transaction ---------------------------------------------------------------


def test_a_failed_restart_leaves_the_previous_run_exactly_as_it_was(tmp_path: Path) -> None:
    cfg = _synthetic_cfg(tmp_path, [RUN], epochs=2)
    training.train_run(cfg, RUN)
    folder = _run_folder(cfg)
    before = _digests(folder)

    diverging = updated(cfg, {"train": {"lr": 1.0e3}})
    with pytest.raises(TrainingError, match="previous run's model.pt, checkpoint.pt and") as info:
        training.train_run(diverging, RUN, restart=True)
    assert "train.lr (now 1000)" in str(info.value)
    assert _digests(folder) == before
    assert load_model(folder / "model.pt").meta["config"]["train"]["lr"] == cfg.train.lr


def test_a_successful_restart_replaces_all_three_files_and_leaves_no_temporary_ones(
    tmp_path: Path,
) -> None:
    cfg = _synthetic_cfg(tmp_path, [RUN], epochs=2)
    training.train_run(cfg, RUN)
    folder = _run_folder(cfg)
    before = _digests(folder)
    cfg = updated(cfg, {"train": {"lr": 2e-3, "epochs": 1}})
    training.train_run(cfg, RUN, restart=True)
    after = _digests(folder)
    assert all(after[name] != before[name] for name in THREE)
    assert load_model(folder / "model.pt").meta["config"]["train"]["lr"] == 2e-3
    assert len(_read_log(folder / "train_log.csv")) == 1
    assert not list(folder.glob("*.restart.*")) and not list(folder.glob(".*.tmp"))
    cfg = updated(cfg, {"train": {"epochs": 2}})
    training.train_run(cfg, RUN)  # checkpoint.pt is the restart's: it resumes, epoch 2
    assert [r["epoch"] for r in _read_log(folder / "train_log.csv")] == ["1", "2"]


def test_an_interrupted_restart_keeps_the_old_run_and_resumes_to_the_uninterrupted_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after its first epoch, a restart has touched none of the run's files; a plain
    `gae train` with the new settings then resumes the restart (not the old checkpoint) and
    reaches the same model as a restart that ran straight through."""
    new_settings = {"lr": 2e-3, "epochs": 3}
    straight = _synthetic_cfg(tmp_path / "a", [RUN], **new_settings)
    training.train_run(straight, RUN, restart=True)

    cfg = _synthetic_cfg(tmp_path / "b", [RUN], epochs=2)
    training.train_run(cfg, RUN)
    folder = _run_folder(cfg)
    before = _digests(folder)
    save = training.atomic_torch_save

    def killed_after_epoch_1(path, obj):
        save(path, obj)
        raise KeyboardInterrupt  # stands in for SIGKILL: nothing after the save runs

    monkeypatch.setattr(training, "atomic_torch_save", killed_after_epoch_1)
    cfg = updated(cfg, {"train": new_settings})
    with pytest.raises(KeyboardInterrupt):
        training.train_run(cfg, RUN, restart=True)
    monkeypatch.setattr(training, "atomic_torch_save", save)
    assert _digests(folder) == before
    assert (folder / training.RESTART_CHECKPOINT_NAME).exists()

    training.train_run(cfg, RUN)  # resumes the restart after its epoch 1
    assert not list(folder.glob("*.restart.*"))
    a = load_model(_run_folder(straight) / "model.pt").state_dict()
    b = load_model(folder / "model.pt").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in _read_log(folder / "train_log.csv")] == ["1", "2", "3"]


def test_the_issue_repro_through_the_command_line(
    prepared_cfg: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gae train bmnist-vae-L4-z50 --config config/smoke.yaml, then --restart with an overlay
    `train: {lr: 1.0e+3}`: exits 1 saying why, and the good model.pt stays."""
    run = "bmnist-vae-L4-z50"
    overlay = tmp_path / "diverge.yaml"
    overlay.write_text("train: {lr: 1.0e+3}\n")
    common = [
        "--params",
        str(REPO_ROOT / "params.yaml"),
        "--config",
        str(REPO_ROOT / "config" / "smoke.yaml"),
        "--set",
        f"paths.data={prepared_cfg.paths.data}",
        "--set",
        f"paths.results={tmp_path / 'results'}",
    ]
    assert main(["train", run, *common]) == 0
    folder = tmp_path / "results" / "runs" / run
    before = _digests(folder)
    capsys.readouterr()
    assert main(["train", run, *common, "--config", str(overlay), "--restart"]) == 1
    err = capsys.readouterr().err
    assert "gae train: error: run bmnist-vae-L4-z50: the validation ELBO" in err
    assert "implausible" in err and "train.lr (now 1000)" in err
    assert _digests(folder) == before


# ---- a checkpoint that cannot be resumed (the pipeline's --restart-if-stale) -----------------


def test_restart_if_stale_starts_afresh_only_when_the_checkpoint_cannot_be_resumed(
    tmp_path: Path,
) -> None:
    """The rules run `gae train --restart-if-stale`: no grep of a log decides a restart."""
    from gae.errors import StaleCheckpointError

    cfg = _synthetic_cfg(tmp_path, [RUN], epochs=1)
    training.train_run(cfg, RUN)
    folder = _run_folder(cfg)
    (folder / "checkpoint.pt").write_bytes(b"not a checkpoint")  # e.g. a truncated write
    with pytest.raises(StaleCheckpointError, match="is unreadable.*--restart"):
        training.train_run(cfg, RUN)
    training.train_run(cfg, RUN, restart_if_stale=True)
    assert torch.load(folder / "checkpoint.pt", weights_only=False)["state"]["epoch"] == 1

    # another preset: the checkpoint's settings no longer match
    other = updated(cfg, {"train": {"lr": 2.0e-3}})
    with pytest.raises(StaleCheckpointError, match="was made with other settings"):
        training.train_run(other, RUN)
    before = _digests(folder)
    training.train_run(other, RUN, restart_if_stale=True)
    assert _digests(folder)["checkpoint.pt"] != before["checkpoint.pt"]
    # a matching checkpoint is resumed, not restarted: one more epoch continues from it
    more = updated(other, {"train": {"epochs": 2}})
    training.train_run(more, RUN, restart_if_stale=True)
    assert [row["epoch"] for row in _read_log(folder / "train_log.csv")] == ["1", "2"]
