"""The vectorised kernels against float64 brute force (explicit broadcasting)."""

import math

import pytest
import torch

from gae.ops import (
    chunked_rows,
    gather_rows,
    mixture_logpdf,
    pairwise_diag_gaussian_logpdf,
    pairwise_isotropic_gaussian_logpdf,
    shared_variance_mixture_logpdf,
    shared_variance_subset_logpdf,
    streaming_logsumexp,
    subset_mixture_logpdf,
)
from tests.closed_form import brute_force_mixture_logpdf


def _brute_pairwise(x, mean, std):
    return torch.distributions.Normal(mean[None], std[None]).log_prob(x[:, None]).sum(-1)


def test_pairwise_diag_matches_broadcasting():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(9, 6, generator=gen, dtype=torch.float64)
    mean = torch.randn(13, 6, generator=gen, dtype=torch.float64)
    logvar = 0.5 * torch.randn(13, 6, generator=gen, dtype=torch.float64)
    expected = _brute_pairwise(x, mean, torch.exp(0.5 * logvar))
    torch.testing.assert_close(pairwise_diag_gaussian_logpdf(x, mean, logvar), expected)


def test_pairwise_diag_batched_rows_meet_their_own_components():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)
    mean = torch.randn(3, 7, 6, generator=gen, dtype=torch.float64)
    logvar = 0.5 * torch.randn(3, 7, 6, generator=gen, dtype=torch.float64)
    out = pairwise_diag_gaussian_logpdf(x, mean, logvar)
    assert out.shape == (3, 4, 7)
    for b in range(3):
        expected = _brute_pairwise(x[b], mean[b], torch.exp(0.5 * logvar[b]))
        torch.testing.assert_close(out[b], expected)


def test_subset_mixture_is_exact_on_all_components_and_a_lower_bound_otherwise():
    gen = torch.Generator().manual_seed(6)
    means = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    logvars = 0.3 * torch.randn(20, 3, generator=gen, dtype=torch.float64)
    z = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64)
    full = mixture_logpdf(z.reshape(-1, 3), means, logvars).reshape(2, 5)
    every = torch.arange(20).expand(2, 20)
    torch.testing.assert_close(subset_mixture_logpdf(z, means[every], logvars[every], 20), full)
    some = torch.stack([torch.arange(0, 20, 2), torch.arange(1, 20, 2)])  # (2, 10)
    partial = subset_mixture_logpdf(z, means[some], logvars[some], 20)
    assert (partial < full).all()
    # the two halves together make the whole mixture: p = p_even + p_odd
    other = subset_mixture_logpdf(z, means[some.flip(0)], logvars[some.flip(0)], 20)
    torch.testing.assert_close(torch.logaddexp(partial, other), full)


@pytest.mark.parametrize("shared", ["unit", "learned"])
def test_shared_variance_subset_equals_brute_force_with_the_general_kernels_gradients(shared):
    """The training step's d-wide kernel: the values of a brute-force mixture over each row's
    own components, and the general kernel's gradients for z, the means and the shared
    log-variance (float64, where the two can only differ by rounding)."""
    gen = torch.Generator().manual_seed(8)
    b, s, k, d = 3, 4, 6, 5
    z = torch.randn(b, s, d, generator=gen, dtype=torch.float64, requires_grad=True)
    means = torch.randn(b, k, d, generator=gen, dtype=torch.float64, requires_grad=True)
    start = torch.zeros(d) if shared == "unit" else 0.4 * torch.randn(d, generator=gen)
    logvar = start.to(torch.float64).requires_grad_()
    got = shared_variance_subset_logpdf(z, means, logvar, 50)
    std = torch.exp(0.5 * logvar).expand(k, d)
    want = torch.stack(
        [torch.logsumexp(_brute_pairwise(z[r], means[r], std), dim=1) for r in range(b)]
    ) - math.log(50)
    torch.testing.assert_close(got, want)
    general = subset_mixture_logpdf(z, means, logvar.expand(b, k, d), 50)
    weights = torch.randn(b, s, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((got * weights).sum(), (z, means, logvar))
    expected = torch.autograd.grad((general * weights).sum(), (z, means, logvar))
    for one, other in zip(grads, expected, strict=True):
        torch.testing.assert_close(one, other)
    # a code at a component's mean of a one-component mixture: at most the peak, never above
    at_mean = shared_variance_subset_logpdf(means[:, :1].detach(), means[:, :1].detach(), logvar, 1)
    peak = -0.5 * (logvar.sum() + d * math.log(2 * math.pi))
    assert (at_mean <= peak).all()
    torch.testing.assert_close(at_mean, peak.expand_as(at_mean))


def test_pairwise_isotropic_matches_broadcasting():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(8, 20, generator=gen, dtype=torch.float64)
    mean = torch.rand(11, 20, generator=gen, dtype=torch.float64)
    expected = _brute_pairwise(x, mean, torch.full_like(mean, 0.2))
    torch.testing.assert_close(pairwise_isotropic_gaussian_logpdf(x, mean, 0.2), expected)


@pytest.mark.parametrize("chunk", [1, 7, 50, 1000])
def test_mixture_logpdf_chunk_invariant_and_exact(chunk):
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    means = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    logvars = 0.3 * torch.randn(50, 4, generator=gen, dtype=torch.float64)
    expected = brute_force_mixture_logpdf(z, means, logvars)
    got = mixture_logpdf(z, means, logvars, chunk_size=chunk)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_streaming_logsumexp_survives_huge_magnitudes_and_all_minus_inf():
    matrix = torch.tensor([[-1e30, -1e30 + 1e23, -2e30], [float("-inf")] * 3, [1e4, 1e4, 0.0]])
    got = streaming_logsumexp(lambda a, b: matrix[:, a:b], 3, chunk_size=1)
    expected = torch.logsumexp(matrix, dim=1)
    assert torch.isneginf(got[1])
    torch.testing.assert_close(got[[0, 2]], expected[[0, 2]])
    assert got[2].item() == pytest.approx(1e4 + math.log(2.0))


def test_chunked_rows_equals_unchunked():
    x = torch.arange(30.0).reshape(10, 3)
    torch.testing.assert_close(chunked_rows(lambda t: t.sum(1), x, 3), x.sum(1))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_gather_rows_equals_advanced_indexing_for_any_index_shape(dtype):
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(40, 3, 5, generator=gen)
    for shape in [(7,), (4, 6), (2, 3, 2)]:
        index = torch.randint(0, 40, shape, generator=gen).to(dtype)
        got = gather_rows(table, index)
        assert got.shape == (*shape, 3, 5)
        assert torch.equal(got, table[index.long()])  # the same values, bit for bit
    with pytest.raises(IndexError):
        gather_rows(table, torch.tensor([40]))



@pytest.mark.parametrize("chunk", [1, 7, 50, 1000])
def test_shared_variance_mixture_equals_brute_force_and_the_general_kernel(chunk):
    gen = torch.Generator().manual_seed(7)
    z = 2.0 * torch.randn(9, 4, generator=gen, dtype=torch.float64)
    means = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    for logvar in (torch.zeros(4, dtype=torch.float64), 0.7 * torch.randn(4, generator=gen)):
        logvar = logvar.to(torch.float64)
        logvars = logvar.expand_as(means)
        expected = brute_force_mixture_logpdf(z, means, logvars)
        got = shared_variance_mixture_logpdf(z, means, logvar, chunk_size=chunk)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
        general = mixture_logpdf(z, means, logvars.contiguous(), chunk_size=chunk)
        torch.testing.assert_close(got, general, rtol=1e-10, atol=1e-10)
    # a point exactly at a component's mean: the distance cannot round below zero
    at_mean = shared_variance_mixture_logpdf(means[:1].float(), means[:1].float(), torch.zeros(4))
    assert at_mean.item() == pytest.approx(-2.0 * math.log(2.0 * math.pi), abs=1e-6)


def test_streaming_logsumexp_in_place_blocks_give_the_same_values_and_keep_gradients():
    gen = torch.Generator().manual_seed(8)
    matrix = 30.0 * torch.randn(6, 23, generator=gen)

    def fresh(a, b):
        return matrix[:, a:b].clone()

    plain = streaming_logsumexp(fresh, 23, chunk_size=5)
    in_place = streaming_logsumexp(fresh, 23, chunk_size=5, overwrite_blocks=True)
    assert torch.equal(plain, in_place)
    leaf = matrix.clone().requires_grad_(True)
    # a block that needs its gradient is never overwritten, whatever the flag says
    out = streaming_logsumexp(lambda a, b: leaf[:, a:b] * 1.0, 23, 5, overwrite_blocks=True)
    out.sum().backward()
    torch.testing.assert_close(leaf.grad, torch.softmax(matrix, dim=1))
