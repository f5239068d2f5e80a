"""The CPU-speed options of the GAE's per-epoch extras: the neighbour search within k-means cells
(models.*.neighbour_search: ivf, FAISS's inverted file; cells, cell by cell with matrix products)
and validation every V epochs (train.validate_every)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import gae.training as training
from gae.config import load_config
from gae.errors import ConfigError
from gae.objectives import cell_nearest_exemplars, ivf_nearest_exemplars, nearest_exemplars
from tests.test_training import (  # _one_thread: autouse, one intra-op thread
    KNN_REUSED,
    REPO_ROOT,
    _assert_resume_is_bit_identical,
    _one_thread,  # noqa: F401
    _read_log,
    _synthetic_cfg,
)


def clustered_codes(n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    """Codes like an encoder's means: clusters in a low-dimensional subspace, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(10, d, generator=gen)
    label = torch.randint(0, 10, (n,), generator=gen)
    basis = torch.randn(3, d, generator=gen)
    spread = torch.randn(n, 3, generator=gen) @ basis
    return centres[label] + 0.5 * spread + 0.05 * torch.randn(n, d, generator=gen)


def recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    """The share of the exact k nearest that ``found`` holds, over all rows."""
    hits = (found[:, :, None] == exact[:, None, :]).any(dim=2).sum().item()
    return hits / exact.numel()


def test_ivf_search_finds_most_true_neighbours_and_never_the_row_itself() -> None:
    codes, k = clustered_codes(12_000), 10
    found = ivf_nearest_exemplars(codes, k)
    exact = nearest_exemplars(codes, k)
    assert found.shape == (12_000, k)
    assert not (found == torch.arange(12_000)[:, None]).any()
    assert (found.sort(dim=1).values.diff(dim=1) > 0).all()  # k distinct exemplars per row
    # the probed cells hold nearly every true neighbour; the unprobed rest is the measured loss
    assert recall(found, exact) > 0.95
    # nearest first, as the exact search returns them
    dist = ((codes[found] - codes[:, None, :]) ** 2).sum(dim=-1)
    assert (dist.diff(dim=1) >= 0).all()


def test_ivf_search_is_reproducible_for_a_seed() -> None:
    codes = clustered_codes(6_000)
    assert torch.equal(
        ivf_nearest_exemplars(codes, 5, seed=3), ivf_nearest_exemplars(codes, 5, seed=3)
    )


def test_ivf_search_falls_back_to_all_pairs_when_the_cells_cannot_be_trained() -> None:
    codes = clustered_codes(300)  # under 39 rows per cell for 2 sqrt(300) = 34 cells
    assert torch.equal(ivf_nearest_exemplars(codes, 5), nearest_exemplars(codes, 5))
    with pytest.raises(ValueError, match="1 <= k <= n - 1"):
        ivf_nearest_exemplars(codes, 300)


def test_cell_search_finds_most_true_neighbours_nearest_first_and_never_the_row_itself() -> None:
    codes, k = clustered_codes(12_000), 10
    found = cell_nearest_exemplars(codes, k)
    exact = nearest_exemplars(codes, k)
    assert found.shape == (12_000, k)
    assert not (found == torch.arange(12_000)[:, None]).any()
    assert (found.sort(dim=1).values.diff(dim=1) > 0).all()  # k distinct exemplars per row
    assert recall(found, exact) > 0.95
    # nearest first, up to the rounding of |m|^2 - 2 r.m (|m|^2 ~ 70 here: ~1e-5)
    dist = ((codes[found] - codes[:, None, :]) ** 2).sum(dim=-1)
    assert (dist.diff(dim=1) >= -1e-4).all()
    # more probed cells, more true neighbours: 4 of 219 cells miss many
    assert recall(cell_nearest_exemplars(codes, k, n_probe=4), exact) < recall(found, exact)


def test_cell_search_is_reproducible_for_a_seed_and_falls_back_to_all_pairs() -> None:
    codes = clustered_codes(8_000)
    once = cell_nearest_exemplars(codes, 5, seed=3)
    assert torch.equal(once, cell_nearest_exemplars(codes, 5, seed=3))
    assert not torch.equal(once, cell_nearest_exemplars(codes, 5, seed=4))  # cells differ
    small = clustered_codes(300)  # 34 cells, under 39 rows per cell: all pairs
    assert torch.equal(cell_nearest_exemplars(small, 5), nearest_exemplars(small, 5))
    with pytest.raises(ValueError, match="1 <= k <= n - 1"):
        cell_nearest_exemplars(small, 300)


def test_cell_search_covers_a_cell_whose_probes_hold_too_few_rows() -> None:
    """Two far-apart clumps: the cells of the small clump (5 rows) probe fewer than k + 1 rows
    among themselves only if the search does not fall back to all rows; it must."""
    gen = torch.Generator().manual_seed(1)
    big = torch.randn(3_995, 4, generator=gen)
    tiny = 1_000.0 + 0.01 * torch.randn(5, 4, generator=gen)
    codes = torch.cat([big, tiny])
    found = cell_nearest_exemplars(codes, 8, n_cells=100, n_probe=1)
    assert codes.shape[0] >= 39 * 100  # the cells, not the all-pairs fallback
    exact = nearest_exemplars(codes, 8)
    assert not (found == torch.arange(codes.shape[0])[:, None]).any()
    # the tiny clump's rows find its 4 other rows first, then the nearest of the big clump
    assert torch.equal(found[-5:].sort(dim=1).values, exact[-5:].sort(dim=1).values)


@pytest.mark.parametrize(
    ("search", "function"), [("ivf", "ivf_nearest_exemplars"), ("cells", "cell_nearest_exemplars")]
)
def test_a_gae_with_a_cell_search_uses_it_on_the_cpu(
    search: str, function: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = f"bmnist-gae-{search}-L1-z4"
    settings = {**KNN_REUSED, "neighbour_refresh_epochs": 1, "neighbour_search": search}
    cfg = _synthetic_cfg(tmp_path, [run], models={f"gae-{search}": settings}, epochs=2)
    calls = []
    real = getattr(training, function)
    monkeypatch.setattr(
        training,
        function,
        lambda means, k, seed: calls.append(seed) or real(means, k, seed=seed),
    )
    training.train_run(cfg, run)
    assert calls == [1, 2]  # one search per epoch, its cells seeded by the epoch


def test_validation_every_v_epochs_and_at_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = "bmnist-vae-L1-z4"
    cfg = _synthetic_cfg(tmp_path, [run], epochs=5, validate_every=2)
    validated = []
    validate = training.Trainer.validate
    monkeypatch.setattr(
        training.Trainer,
        "validate",
        lambda self, epoch: validated.append(epoch) or validate(self, epoch),
    )
    rows = _read_log(training.train_run(cfg, run).parent / "train_log.csv")
    assert validated == [2, 4, 5]
    assert [bool(r["valid_objective"]) for r in rows] == [False, True, False, True, True]
    best = torch.load(tmp_path / "results" / "runs" / run / "model.pt", weights_only=False)
    assert best["meta"]["best_epoch"] in validated


def test_patience_counts_epochs_when_validating_every_few(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patience 4 with validation every 2 epochs: the best at epoch 2, no gain at 4 and 6 (4
    epochs without improvement): the run stops after epoch 6, not after 2 validations x 4."""
    run = "bmnist-vae-L1-z4"
    cfg = _synthetic_cfg(tmp_path, [run], epochs=20, validate_every=2, patience=4)
    monkeypatch.setattr(training.Trainer, "validate", lambda self, epoch: -float(epoch))
    rows = _read_log(training.train_run(cfg, run).parent / "train_log.csv")
    assert len(rows) == 6


def test_a_plateau_schedule_needs_whole_validation_intervals() -> None:
    with pytest.raises(ConfigError, match=r"lr_decay_epochs \(3\).*validate_every \(2"):
        load_config(
            base=REPO_ROOT / "params.yaml",
            overrides={
                "train": {"validate_every": 2, "lr_schedule": "plateau", "lr_decay_epochs": 3}
            },
        )


def test_a_plateau_schedule_decays_after_its_epochs_without_gain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lr_decay_epochs 4, validation every 2: the rate halves after two validations (4 epochs)
    without improvement, as it would after 4 validated epochs without it."""
    run = "bmnist-vae-L1-z4"
    cfg = _synthetic_cfg(
        tmp_path,
        [run],
        epochs=8,
        validate_every=2,
        patience=20,
        lr_schedule="plateau",
        lr_decay_epochs=4,
        lr_decay_factor=0.5,
    )
    monkeypatch.setattr(training.Trainer, "validate", lambda self, epoch: -float(epoch))
    rows = _read_log(training.train_run(cfg, run).parent / "train_log.csv")
    rates = [float(r["lr"]) for r in rows]
    # best at 2; no gain at 4 and 6 -> halved for epoch 7 on
    assert rates == pytest.approx([1e-3] * 6 + [5e-4] * 2)
    assert all(math.isfinite(rate) for rate in rates)


def test_resume_is_bit_identical_with_validation_every_two_epochs(tmp_path: Path) -> None:
    run = "bmnist-gae-reuse-L1-z4"
    cfg = _synthetic_cfg(
        tmp_path, [run], models={"gae-reuse": KNN_REUSED}, epochs=3, validate_every=2
    )
    _assert_resume_is_bit_identical(tmp_path, cfg, run)


def test_the_optimizer_benchmark_times_every_adam_and_the_fused_one_makes_the_same_update(
    tmp_path: Path,
) -> None:
    """benchmarks/bench_optimizer.py at its smallest: a JSON row per kind and depth with the three
    variants' times, and the fused Adam (training's) within rounding of torch's loop after the
    same steps on the real depth-1 model's parameters."""
    import importlib.util

    path = REPO_ROOT / "benchmarks" / "bench_optimizer.py"
    spec = importlib.util.spec_from_file_location("bench_optimizer", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "optimizer.json"
    bench.main(
        ["--kinds", "vae", "--depths", "1", "--rounds", "2", "--steps", "2", "--out", str(out)]
    )
    row = json.loads(out.read_text())["rows"][0]
    assert set(row["step_ms"]) == {"loop", "foreach", "fused"}
    assert all(len(v) == 2 for v in row["step_ms_rounds"].values())
    assert row["identical_steps"] == 5
    # 5 Adam steps of lr 1e-3 move a parameter by up to ~5e-3; the variants differ by rounding
    assert 0.0 <= row["fused_vs_loop_max_abs_parameter_difference"] < 1e-6
