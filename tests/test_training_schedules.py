"""The learning-rate schedules are torch's schedulers, and they give the hand-written rule's rates.

Until the trainer was split (issue 18) the rate was decayed by hand (``_lr_decay`` /
``_decay_due`` in gae/training.py). ``hand_written_rates`` below is that rule; every run
trained with it must keep its learning rates when resumed or retrained, so the torch schedulers
must give the same rate in every epoch, to the bit, for any sequence of validation bounds,
also across a resume from a checkpoint (with the scheduler's state, or without it: checkpoints
written by the hand-written rule).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import gae.training as training
from gae.config import load_config, updated
from gae.schedules import make_scheduler, restore_scheduler, schedule_settings, step_scheduler
from tests.test_training import (  # _one_thread: the autouse fixture, active here too
    _one_thread,  # noqa: F401
    _read_log,
    _synthetic_cfg,
)


def hand_written_rates(lr: float, lr_decay: dict[str, Any], valids: list[float]) -> list[float]:
    """The rate each epoch trained with under the hand-written rule (gae/training.py before the
    split): after epoch e, decay when e % every == 0 (step), or when the epochs since the best
    bound reach a positive multiple of patience (plateau)."""
    rates, best, since = [], None, 0
    for epoch, valid in enumerate(valids, start=1):
        rates.append(lr)
        if best is None or valid > best:
            best, since = valid, 0
        else:
            since += 1
        if "every" in lr_decay:
            due = epoch % lr_decay["every"] == 0
        else:
            due = since > 0 and since % lr_decay["patience"] == 0
        if due:
            lr *= lr_decay["factor"]
    return rates


def _optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def torch_rates(
    lr: float, lr_decay: dict[str, Any], valids: list[float], resume_after: int | None = None
) -> list[float]:
    """The rates under ``gae.schedules``; with ``resume_after`` = k the optimizer and scheduler
    are rebuilt after epoch k from their state dicts, as a resumed run does."""
    optimizer = _optimizer(lr)
    scheduler = make_scheduler(optimizer, lr_decay)
    rates = []
    for epoch, valid in enumerate(valids, start=1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        step_scheduler(scheduler, valid)
        if epoch == resume_after:
            saved_opt, saved_sched = optimizer.state_dict(), scheduler.state_dict()
            optimizer = _optimizer(lr)
            scheduler = make_scheduler(optimizer, lr_decay)
            optimizer.load_state_dict(saved_opt)
            restore_scheduler(scheduler, saved_sched, epoch, None, 0)
    return rates


def _validation_sequences() -> list[list[float]]:
    """Plateaus, ties (equal bounds are not improvements), steady gains and random walks."""
    rng = random.Random(0)
    walks = [[round(rng.gauss(0, 1), 1) for _ in range(40)] for _ in range(6)]
    return [
        [-10.0, -9.0, -9.5, -9.6, -9.7, -8.0, -8.5, -8.6],  # tests/test_training.py's sequence
        [-5.0] * 12,  # one value throughout: only epoch 1 improves
        [float(-100 + e) for e in range(15)],  # always improving
        [-3.0, -3.0, -2.0, -2.0, -2.0, -2.0, -1.0, -1.5, -1.0, -1.0, -1.0, -1.0, -1.0],
        *walks,
    ]


SCHEDULES = [
    {"factor": 0.5, "every": 1},
    {"factor": 0.5, "every": 3},
    {"factor": 0.1, "every": 5},
    {"factor": 0.5, "patience": 1},
    {"factor": 0.5, "patience": 2},
    {"factor": 0.3, "patience": 3},
    {"factor": 0.5, "patience": 5},
]


@pytest.mark.parametrize(
    "lr_decay", SCHEDULES, ids=lambda d: "-".join(f"{k}{v}" for k, v in d.items())
)
def test_torch_schedulers_give_the_hand_written_rates_in_every_epoch(
    lr_decay: dict[str, Any],
) -> None:
    for valids in _validation_sequences():
        want = hand_written_rates(1e-3, lr_decay, valids)
        assert torch_rates(1e-3, lr_decay, valids) == want, valids  # exact, not approximate
        for k in (1, 2, 4, 7):  # a resume from the scheduler's own saved state
            assert torch_rates(1e-3, lr_decay, valids, resume_after=k) == want, (k, valids)
    if "every" not in lr_decay:  # the test has power: some sequence decays more than once
        rates = hand_written_rates(1e-3, lr_decay, [-5.0] * 12)
        assert len(set(rates)) > 2


@pytest.mark.parametrize(
    "lr_decay", SCHEDULES, ids=lambda d: "-".join(f"{k}{v}" for k, v in d.items())
)
def test_a_checkpoint_without_scheduler_state_resumes_at_the_hand_written_rates(
    lr_decay: dict[str, Any],
) -> None:
    """Checkpoints written by the hand-written rule hold the epoch, the best bound and the epochs
    since it, not a scheduler: ``restore_scheduler`` rebuilds the state from those."""
    for valids in _validation_sequences():
        want = hand_written_rates(1e-3, lr_decay, valids)
        for k in (1, 3, 6):
            best, since, lr = None, 0, want[k]  # the hand-written loop's state after epoch k
            for valid in valids[:k]:
                best, since = (valid, 0) if best is None or valid > best else (best, since + 1)
            optimizer = _optimizer(lr)
            scheduler = make_scheduler(optimizer, lr_decay)
            restore_scheduler(scheduler, None, k, best, since)
            rates = []
            for valid in valids[k:]:
                rates.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                step_scheduler(scheduler, valid)
            assert rates == want[k:], (k, valids)


def test_schedule_settings_are_the_fingerprinted_dict_and_constant_has_no_scheduler() -> None:
    train = load_config(base=Path(__file__).resolve().parents[1] / "params.yaml").train
    assert schedule_settings(replace(train, lr_schedule="constant")) is None
    assert make_scheduler(_optimizer(1e-3), None) is None
    step = replace(train, lr_schedule="step", lr_decay_factor=0.1, lr_decay_epochs=3)
    assert schedule_settings(step) == {"factor": 0.1, "every": 3}
    plateau = replace(train, lr_schedule="plateau", lr_decay_factor=0.5, lr_decay_epochs=2)
    assert schedule_settings(plateau) == {"factor": 0.5, "patience": 2}
    assert isinstance(
        make_scheduler(_optimizer(1e-3), schedule_settings(plateau)),
        torch.optim.lr_scheduler.ReduceLROnPlateau,
    )
    assert isinstance(
        make_scheduler(_optimizer(1e-3), schedule_settings(step)), torch.optim.lr_scheduler.StepLR
    )


def test_the_checkpoint_carries_the_scheduler_and_an_old_checkpoint_resumes_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run resumed from a checkpoint without the scheduler's state (as the hand-written rule
    wrote them) logs the same rates as one resumed with it."""
    run = "bmnist-vae-L1-z4"
    scores = [-10.0, -9.0, -9.5, -9.6, -9.7, -8.0, -8.5, -8.6]
    decay = {"lr_schedule": "plateau", "lr_decay_factor": 0.5, "lr_decay_epochs": 2}
    logs = {}
    for name in ("saved", "old"):
        values = itertools.chain(scores, itertools.repeat(0.0))
        monkeypatch.setattr(training, "validation_elbo", lambda *a, v=values, **k: next(v))
        cfg = _synthetic_cfg(tmp_path / name, [run], epochs=3, patience=10, **decay)
        training.train_run(cfg, run)
        ckpt_path = tmp_path / name / "results" / "runs" / run / "checkpoint.pt"
        ckpt = torch.load(ckpt_path, weights_only=False)
        assert ckpt["scheduler"]["num_bad_epochs"] == 1 and ckpt["scheduler"]["best"] == -9.0
        if name == "old":
            del ckpt["scheduler"]
            torch.save(ckpt, ckpt_path)
        cfg = updated(cfg, {"train": {"epochs": 8}})
        logs[name] = [
            float(r["lr"]) for r in _read_log(training.train_run(cfg, run).parent / "train_log.csv")
        ]
    want = hand_written_rates(1e-3, {"factor": 0.5, "patience": 2}, scores)
    assert logs["saved"] == logs["old"] == want
