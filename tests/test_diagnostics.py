"""Memorisation diagnostics: exact nearest neighbours, copy shares, the run's files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from gae.errors import GaeError
from gae.evaluation.diagnostics import diagnose_run, memorisation_summary, nearest_neighbours


@pytest.mark.parametrize("chunk_size", [3, 16, 1000])
def test_nearest_neighbours_match_brute_force(chunk_size):
    rng = np.random.default_rng(0)
    queries, reference = rng.random((41, 30)), rng.random((57, 30))
    dist, index = nearest_neighbours(
        queries.astype(np.float32), reference.astype(np.float32), chunk_size=chunk_size
    )
    full = cdist(
        queries.astype(np.float32).astype(np.float64),
        reference.astype(np.float32).astype(np.float64),
    )
    np.testing.assert_array_equal(index, full.argmin(axis=1))
    np.testing.assert_allclose(dist, full.min(axis=1), rtol=1e-12)


def test_exact_copies_have_distance_zero():
    rng = np.random.default_rng(1)
    train = rng.random((50, 20)).astype(np.float32)
    dist, index = nearest_neighbours(train[[4, 17, 33]], torch.from_numpy(train), chunk_size=8)
    np.testing.assert_array_equal(index, [4, 17, 33])
    np.testing.assert_array_equal(dist, 0.0)


def test_copy_shares_follow_their_definitions():
    samples = np.array([0.0, 0.5, 1.5, 2.0, 3.0, 9.0])
    test = np.linspace(1.0, 11.0, 101)  # min 1.0; 1% quantile 1.1; 5% quantile 1.5
    out = memorisation_summary(samples, test, bins=10)
    shares = out["share_closer_than_test"]
    assert shares["min_test"] == pytest.approx(2 / 6)  # 0.0 and 0.5 are below 1.0
    assert shares["test_q01"] == pytest.approx(2 / 6)
    assert shares["test_q05"] == pytest.approx(2 / 6)  # strictly below 1.5
    hist = out["histogram"]
    assert sum(hist["samples"]) == 6 and sum(hist["test"]) == 101
    assert hist["bin_edges"][0] == 0.0 and hist["bin_edges"][-1] == 11.0
    assert out["samples_to_train"]["quantiles"]["q50"] == pytest.approx(1.75)


RUN = "mnist-gae-L1-z50"


def test_diagnose_run_flags_copied_samples(prepared_cfg_tmp):
    from gae.config import run_dir, updated
    from gae.data.prepare import load_prepared
    from gae.data.subsets import random_rows
    from gae.io import atomic_save_npy

    evaluation = {
        "parzen": {"n_valid": 50, "n_test": 100, "refine": 2, "chunk_size": 256},
        "diagnostics": {"n_samples": 120, "n_train": 1000},
    }
    cfg = updated(prepared_cfg_tmp, {"evaluation": evaluation})
    with pytest.raises(GaeError, match=r"samples\.npy.*gae sample mnist-gae-L1-z50"):
        diagnose_run(cfg, RUN)
    data = load_prepared(cfg, "mnist")
    rng = np.random.default_rng(2)
    # copies of images among the 1,000 the diagnostics compare with (a seeded random sample)
    train_rows = random_rows(len(data["x_train"]), 1000, cfg.data.subset_seed, "train")
    copies = data["x_train"][train_rows[rng.choice(1000, 60, replace=False)]]
    fresh = rng.random((60, copies.shape[1]), dtype=np.float32)  # noise: far from everything
    atomic_save_npy(run_dir(cfg, RUN) / "samples.npy", np.concatenate([copies, fresh]))

    out = diagnose_run(cfg, RUN)
    result = json.loads(out.read_text())
    assert result["n_samples"] == 120 and result["n_train"] == 1000 and result["n_test"] == 100
    assert result["train_images"]["indices"] == train_rows.tolist()
    assert result["share_closer_than_test"]["min_test"] == pytest.approx(0.5)
    assert result["samples_to_train"]["quantiles"]["q00"] == 0.0
    assert result["test_to_train"]["quantiles"]["q00"] > 0.0
    baseline = result["parzen"]["training_images"]
    assert baseline["n_samples"] == 120 and baseline["n_test"] == 100
    # the real-image baseline is the training split's seeded random sample, recorded
    n_base = baseline["images"]["n"]
    expected = random_rows(len(data["x_train"]), n_base, cfg.data.subset_seed, "train")
    assert baseline["images"]["indices"] == expected.tolist()
    assert baseline["images"]["indices"] != list(range(n_base))  # not the split's head
    assert np.isfinite(baseline["mean"]) and baseline["sem"] > 0
    assert (run_dir(cfg, RUN) / "nearest_neighbours.png").stat().st_size > 1000
