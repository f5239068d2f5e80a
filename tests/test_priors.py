"""The GAE exemplar-mixture prior against float64 brute force, and its sampler's distribution."""

from __future__ import annotations

import math

import pytest
import torch

from gae.priors import ExemplarMixturePrior, StandardNormalPrior, prior_from_state
from tests.closed_form import brute_force_mixture_logpdf


def _components(n: int, d: int, seed: int = 0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    means = (2.0 * torch.randn(n, d, generator=gen)).to(dtype)
    logvars = (torch.rand(n, d, generator=gen) * 3.0 - 2.5).to(dtype)
    z = (2.0 * torch.randn(40, d, generator=gen)).to(dtype)
    return means, logvars, z


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4096])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixture_log_prob_matches_brute_force(chunk_size: int, dtype: torch.dtype) -> None:
    means, logvars, z = _components(n=101, d=5, dtype=dtype)  # 101: no chunk size divides it
    prior = ExemplarMixturePrior(means, logvars, chunk_size=chunk_size)
    got = prior.log_prob(z).double()
    want = brute_force_mixture_logpdf(z, means, logvars)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0.0)


@pytest.mark.parametrize("shared", ["unit", "learned"])
def test_shared_variance_components_take_the_narrow_kernel_with_the_same_values(
    shared: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    means, logvars, z = _components(n=101, d=5, dtype=torch.float64)
    logvar = torch.zeros(5, dtype=torch.float64) if shared == "unit" else logvars[0]
    prior = ExemplarMixturePrior(means, logvar.expand_as(means).contiguous(), chunk_size=16)
    assert torch.equal(prior.shared_logvar(), logvar)
    want = brute_force_mixture_logpdf(z, means, logvar.expand_as(means))
    torch.testing.assert_close(prior.log_prob(z), want, rtol=1e-10, atol=0.0)
    calls = []
    import gae.priors as priors

    real = priors.shared_variance_mixture_logpdf
    monkeypatch.setattr(
        priors, "shared_variance_mixture_logpdf", lambda *a: calls.append(1) or real(*a)
    )
    prior.log_prob(z)
    assert calls, "a shared variance must use shared_variance_mixture_logpdf"
    # one component with its own variance: the general kernel again
    logvars_mixed = logvar.expand_as(means).clone()
    logvars_mixed[3, 0] += 0.5
    assert ExemplarMixturePrior(means, logvars_mixed).shared_logvar() is None


def test_mixture_log_prob_far_from_all_components_stays_finite() -> None:
    means, logvars, _ = _components(n=30, d=4)
    z = torch.full((3, 4), 60.0)  # every component density underflows in float32
    got = ExemplarMixturePrior(means, logvars, chunk_size=8).log_prob(z)
    want = brute_force_mixture_logpdf(z, means, logvars)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=0.0)


def test_mixture_sampler_picks_uniform_index_then_draws_from_its_component() -> None:
    n, d, k = 5, 3, 40_000
    means, logvars, _ = _components(n=n, d=d, seed=3)
    prior = ExemplarMixturePrior(means, logvars)
    z, index = prior.sample_with_index(k, torch.Generator().manual_seed(1))
    counts = torch.bincount(index, minlength=n).double()
    chi2 = (((counts - k / n) ** 2) / (k / n)).sum().item()
    assert chi2 < 20.5  # chi-square, 4 degrees of freedom: P(> 20.5) < 0.0004
    standardised = (z - means[index]) / torch.exp(0.5 * logvars[index])
    assert standardised.mean(0).abs().max().item() < 4.0 / math.sqrt(k)
    assert (standardised.var(0) - 1.0).abs().max().item() < 4.0 * math.sqrt(2.0 / k)
    again = prior.sample(k, torch.Generator().manual_seed(1))
    assert torch.equal(again, z)  # seeded


def test_standard_normal_prior_and_state_round_trip() -> None:
    prior = StandardNormalPrior(4)
    z = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    want = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(prior.log_prob(z), want)
    assert prior.sample(7, torch.Generator().manual_seed(0)).shape == (7, 4)
    means, logvars, zz = _components(n=9, d=4)
    mixture = ExemplarMixturePrior(means, logvars, chunk_size=3)
    rebuilt = prior_from_state(mixture.state())
    assert torch.equal(rebuilt.log_prob(zz), mixture.log_prob(zz))
    torch.testing.assert_close(prior_from_state(prior.state()).log_prob(z), want)


def test_mixture_prior_rejects_mismatched_components() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        ExemplarMixturePrior(torch.zeros(3, 2), torch.zeros(3, 4))
