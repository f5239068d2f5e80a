"""Parzen window: exact against float64 brute force and scikit-learn, sigma selection, run file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gae.errors import GaeError
from gae.evaluation.parzen import (
    parzen_evaluate,
    parzen_log_likelihood,
    parzen_run,
    refine_around,
    select_sigma,
    sigma_grid,
)
from gae.ops import pairwise_isotropic_gaussian_logpdf


def brute_force_parzen(x: torch.Tensor, samples: torch.Tensor, sigma: float) -> torch.Tensor:
    """float64 log (1/m) sum_j N(x_i; s_j, sigma^2 I) by explicit (n, m, D) broadcasting."""
    x, samples = x.double(), samples.double()
    sq = ((x[:, None, :] - samples[None]) ** 2).sum(-1)
    d = x.shape[1]
    log_k = -0.5 * sq / sigma**2 - d * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
    return torch.logsumexp(log_k, dim=1) - math.log(samples.shape[0])


@pytest.fixture
def small_case() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(53, 20, generator=g), torch.rand(71, 20, generator=g)


@pytest.mark.parametrize("chunk_size", [5, 16, 1000])
def test_matches_float64_brute_force_for_every_sigma(small_case, chunk_size):
    x, s = small_case
    sigmas = [0.05, 0.2, 1.0, 3.0]
    got64 = parzen_log_likelihood(x, s, sigmas, chunk_size=chunk_size, dtype=torch.float64)
    got32 = parzen_log_likelihood(x, s, sigmas, chunk_size=chunk_size)
    for k, sigma in enumerate(sigmas):
        ref = brute_force_parzen(x, s, sigma)
        torch.testing.assert_close(got64[k], ref, rtol=0, atol=1e-9)
        # float32 distances: error ~ 1e-5 in |x - s|^2, amplified by 1 / (2 sigma^2)
        torch.testing.assert_close(got32[k], ref, rtol=0, atol=1e-5 / (2 * sigma**2) + 1e-5)


def test_same_kernel_as_ops_pairwise_isotropic(small_case):
    x, s = small_case
    x, s = x.double(), s.double()
    ref = torch.logsumexp(pairwise_isotropic_gaussian_logpdf(x, s, 0.3), dim=1) - math.log(len(s))
    got = parzen_log_likelihood(x, s, 0.3, chunk_size=16, dtype=torch.float64)[0]
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-9)


def test_matches_sklearn_kernel_density(small_case):
    from sklearn.neighbors import KernelDensity

    x, s = small_case
    for sigma in (0.1, 0.5):
        kde = KernelDensity(kernel="gaussian", bandwidth=sigma).fit(s.double().numpy())
        ref = torch.from_numpy(kde.score_samples(x.double().numpy()))
        got = parzen_log_likelihood(x, s, sigma, chunk_size=10, dtype=torch.float64)[0]
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-8)


def test_large_magnitudes_stay_finite_and_exact():
    """sigma = 1e-3 with far-apart points: log-kernels near -1e7 must not underflow to -inf."""
    g = torch.Generator().manual_seed(1)
    x, s = torch.rand(9, 30, generator=g) * 10, torch.rand(11, 30, generator=g) * 10
    got = parzen_log_likelihood(x, s, [1e-3, 1e-2], chunk_size=4)
    assert torch.isfinite(got).all()
    for k, sigma in enumerate([1e-3, 1e-2]):
        torch.testing.assert_close(got[k], brute_force_parzen(x, s, sigma), rtol=1e-6, atol=0)


def test_sigma_selection_recovers_known_optimum():
    """One sample at the origin: the mean validation log-likelihood
    -mean|x|^2 / (2 s^2) - D log s is maximal exactly at s^2 = mean|x|^2 / D."""
    d = 8
    grid = sigma_grid(-1.0, 0.0, 10)
    origin = torch.zeros(1, d)
    g = torch.Generator().manual_seed(2)
    directions = torch.randn(40, d, generator=g, dtype=torch.float64)
    directions /= directions.norm(dim=1, keepdim=True)
    for target in (grid[3], math.sqrt(grid[6] * grid[7])):  # on the grid, and between two
        x = directions * math.sqrt(d) * target  # |x|^2 / D = target^2 for every row
        best, tried, scores = select_sigma(x, origin, grid, refine=0, dtype=torch.float64)
        exact = -(d * target**2) / (2 * grid**2) - d * np.log(grid)  # up to a constant
        assert best == grid[int(np.argmax(exact))]
        refined, tried, scores = select_sigma(x, origin, grid, refine=9, dtype=torch.float64)
        assert len(tried) == len(grid) + 9
        assert abs(math.log(refined / target)) <= abs(math.log(best / target)) + 1e-12
        # the refined points split the neighbours' interval into 10 log-steps
        step = (np.log(grid[1]) - np.log(grid[0])) * 2 / 10
        assert abs(math.log(refined / target)) <= step + 1e-12
        assert scores[np.argmax(scores)] == pytest.approx(max(scores))


def test_sigma_selection_is_the_argmax_of_brute_force_scores(small_case):
    x, s = small_case
    grid = sigma_grid(-1.0, 0.0, 10)
    ref = [float(brute_force_parzen(x, s, sigma).mean()) for sigma in grid]
    best, tried, scores = select_sigma(x, s, grid, refine=0, chunk_size=13)
    assert best == grid[int(np.argmax(ref))]
    np.testing.assert_allclose(scores, ref, atol=1e-3)


def test_refine_points_lie_between_the_neighbours():
    grid = sigma_grid(-1.0, 0.0, 10)
    inner = refine_around(grid, 4, 10)
    assert len(inner) == 10 and (inner > grid[3]).all() and (inner < grid[5]).all()
    edge = refine_around(grid, 0, 4)  # below the grid: one grid step further out
    assert (edge < grid[1]).all() and edge.min() < grid[0]


def test_evaluate_reports_mean_and_standard_error(small_case):
    x, s = small_case
    grid = sigma_grid(-1.0, 0.0, 5)
    res = parzen_evaluate(s, x[:20], x[20:], grid, refine=3, chunk_size=8)
    test_ll = brute_force_parzen(x[20:], s, res.sigma)
    assert res.mean == pytest.approx(float(test_ll.mean()), abs=1e-3)
    assert res.sem == pytest.approx(float(test_ll.std(unbiased=True) / math.sqrt(33)), rel=1e-3)
    assert res.n_samples == 71 and res.n_test == 33 and res.n_valid == 20


RUN = "mnist-gae-L1-z50"


def test_parzen_run_writes_json(prepared_cfg_tmp):
    from gae.config import run_dir, updated
    from gae.data.prepare import load_prepared
    from gae.data.subsets import random_rows
    from gae.io import atomic_save_npy

    parzen = {"n_valid": 100, "n_test": 150, "refine": 3, "chunk_size": 64}
    cfg = updated(prepared_cfg_tmp, {"evaluation": {"parzen": parzen}})
    data = load_prepared(cfg, "mnist")
    samples = data["x_train"][:300]
    with pytest.raises(GaeError, match=r"samples\.npy.*gae sample mnist-gae-L1-z50"):
        parzen_run(cfg, RUN)
    atomic_save_npy(run_dir(cfg, RUN) / "samples.npy", samples)
    out = parzen_run(cfg, RUN)
    result = json.loads(out.read_text())
    assert {"mean", "sem", "sigma", "n_samples", "n_test"} <= set(result)
    assert result["n_samples"] == 300 and result["n_test"] == 150
    assert len(result["validation"]["sigma"]) == 13
    test_rows = random_rows(len(data["x_test"]), 150, cfg.data.subset_seed, "test")
    assert result["test_images"]["indices"] == test_rows.tolist()
    assert len(result["valid_images"]["indices"]) == 100
    ref = brute_force_parzen(
        torch.from_numpy(data["x_test"][test_rows]), torch.from_numpy(samples), result["sigma"]
    )
    assert result["mean"] == pytest.approx(float(ref.mean()), abs=1e-2)


def test_evaluation_sizes_are_upper_bounds_shared_by_all_data_sets() -> None:
    """`parzen.n_valid: 1000` must work for Frey faces' 200 validation images (CPU preset)."""
    from gae.evaluation import take_first

    frey_valid = np.zeros((200, 3))
    assert take_first(frey_valid, 1000, "validation").shape == (200, 3)
    assert take_first(frey_valid, 50, "validation").shape == (50, 3)
    assert take_first(frey_valid, None, "validation").shape == (200, 3)
