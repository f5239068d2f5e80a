"""The learning-rate schedules of ``train.lr_schedule``, as torch's own schedulers.

``step``: the rate is multiplied by ``lr_decay_factor`` after every ``lr_decay_epochs`` epochs
(``torch.optim.lr_scheduler.StepLR``). ``plateau``: after every ``lr_decay_epochs`` epochs in a
row without a new best validation bound (``ReduceLROnPlateau`` in ``max`` mode). ``constant``:
no scheduler.

Why these exact arguments: the schedulers replace a hand-written rule whose runs must resume and
keep their fingerprints, so they reproduce it to the bit (tests/test_training_schedules.py):

- the old plateau rule decayed when ``epochs_since_best`` reached P, 2P, 3P, ... (P =
  ``lr_decay_epochs``; a strict ``>`` improvement resets the count). ``ReduceLROnPlateau``
  decays when its bad-epoch count EXCEEDS ``patience`` and then restarts the count, so
  ``patience = P - 1``; ``threshold = 0`` makes "better" a strict ``>``; ``eps = 0`` and
  ``min_lr = 0`` make it decay every time (its default eps of 1e-8 would stop decaying a small
  rate, which the old rule never did). Its new rate ``old * factor`` is the old rule's product.
- ``StepLR`` multiplies ``group["lr"]`` by ``gamma`` when ``last_epoch % step_size == 0``, after
  the ``step()`` that ends epoch e, i.e. exactly the old ``epoch % every == 0``.

Both read the current rate from the optimizer, so a resumed run's decayed rate comes back with
the optimizer state; the scheduler's own counters are saved in the checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau, StepLR

from gae.settings import TrainSection

Scheduler = LRScheduler | ReduceLROnPlateau
SCHEDULES = ("constant", "step", "plateau")


def schedule_settings(train: TrainSection) -> dict[str, Any] | None:
    """train.lr_schedule as ``{factor, every}`` (step) or ``{factor, patience}`` (plateau); None
    when constant. This dict is what the run's fingerprint records (``lr_decay``), so its keys
    and values must not change: a changed dict would refuse every checkpoint made before."""
    if train.lr_schedule == "constant":
        return None
    key = "every" if train.lr_schedule == "step" else "patience"
    return {"factor": float(train.lr_decay_factor), key: int(train.lr_decay_epochs)}


def make_scheduler(
    optimizer: torch.optim.Optimizer, lr_decay: dict[str, Any] | None, validate_every: int = 1
) -> Scheduler | None:
    """The torch scheduler of ``schedule_settings``' dict (None: a constant rate).

    A plateau scheduler is stepped on validated epochs only (``train.validate_every`` = V), so
    its patience of P epochs is P / V validations (``gae.config`` requires V to divide P)."""
    if lr_decay is None:
        return None
    if "every" in lr_decay:
        return StepLR(optimizer, step_size=lr_decay["every"], gamma=lr_decay["factor"])
    return ReduceLROnPlateau(
        optimizer,
        mode="max",
        factor=lr_decay["factor"],
        patience=lr_decay["patience"] // validate_every - 1,
        threshold=0.0,
        threshold_mode="abs",
        min_lr=0.0,
        eps=0.0,
    )


def step_scheduler(scheduler: Scheduler | None, valid: float | None) -> None:
    """End an epoch whose validation bound is ``valid`` (None: not validated): a plateau
    scheduler judges a validated epoch, a fixed schedule only counts every epoch."""
    if isinstance(scheduler, ReduceLROnPlateau):
        if valid is not None:
            scheduler.step(valid)
    elif scheduler is not None:
        scheduler.step()


def restore_scheduler(
    scheduler: Scheduler | None,
    saved: dict[str, Any] | None,
    epoch: int,
    best_valid: float | None,
    epochs_since_best: int,
) -> None:
    """Load a checkpoint's scheduler state; a checkpoint written before the schedulers (it has
    none) gets the state the scheduler would have after ``epoch`` epochs of that run: the
    epoch count, and for a plateau the best bound and the bad epochs since the last decay."""
    if scheduler is None:
        return
    if saved is not None:
        scheduler.load_state_dict(saved)
        return
    scheduler.last_epoch = epoch
    if isinstance(scheduler, ReduceLROnPlateau):
        if best_valid is not None:
            scheduler.best = best_valid
        scheduler.num_bad_epochs = epochs_since_best % (scheduler.patience + 1)
    else:
        scheduler._step_count = epoch + 1  # what the epoch + 1 step() calls would leave
