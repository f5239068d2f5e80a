"""The GAE Monte-Carlo EM objective against the closed-form linear-Gaussian GAE likelihood.

With p(x|z) = N(Wz + b, s^2 I), p(x_i) = (1/n) sum_j N(x_i; W mu_j + b, s^2 I + W S_j W^T) exactly
(tests/closed_form.py). With all n images as candidates the estimate p_hat_i = exp(est_i) is an
unbiased Monte-Carlo estimate of p(x_i), and p_hat_i * grad(est_i) = grad(p_hat_i) is unbiased
for p(x_i) * grad log p(x_i). So over independent replicates,
    mean(p_hat_i / p_i) -> 1,  mean(sum_i (p_hat_i / p_i) grad(surrogate_i)) -> grad sum log p_i,
each checked within 4.5 Monte-Carlo standard errors of the exact value/gradient.
"""

from __future__ import annotations

import math

import pytest
import torch

from gae.models import build_model
from gae.objectives import (
    candidate_log_weights,
    diag_gaussian_logpdf,
    elbo_with_prior,
    gae_knn_objective,
    gae_objective,
    nearest_exemplars,
    posterior_draws,
    regulariser,
    reparameterise,
    vae_objective,
)
from gae.priors import StandardNormalPrior
from tests.closed_form import linear_gaussian_gae_logpdf
from tests.test_training import _one_thread  # noqa: F401  (autouse: one intra-op thread)

N, D, LATENT, NOISE = 6, 4, 2, 0.8




def _linear_model(kind: str = "gae", seed: int = 0):
    torch.manual_seed(seed)
    arch = {
        "data_dim": D,
        "latent_dim": LATENT,
        "depth": 1,
        "hidden_units": 8,
        "activation": "tanh",
        "logvar_min": -6.0,
        "logvar_max": 2.0,
        "likelihood": "linear_gaussian",
        "noise_std": NOISE,
    }
    model = build_model(kind, arch).double()
    x = torch.rand(N, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return model, x


def _exact_total(model, x: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    mu, logvar = model.encode(x)
    w, b = model.decoder.weight, model.decoder.bias
    if not exclude_self:
        return linear_gaussian_gae_logpdf(x, w, b, NOISE, mu, logvar)
    keep = [[j for j in range(N) if j != i] for i in range(N)]
    return torch.stack(
        [
            linear_gaussian_gae_logpdf(x[i : i + 1], w, b, NOISE, mu[k], logvar[k])[0]
            for i, k in enumerate(keep)
        ]
    )


def _replicates(model, x, exact, n_rep, n_z, leave_one_out=False, with_grad=True):
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(123)
    ratios, grads = [], []
    for _ in range(n_rep):
        terms = gae_objective(model, x, N, n_z=n_z, leave_one_out=leave_one_out, generator=gen)
        rho = torch.exp(terms.objective - exact.detach())
        ratios.append(rho)
        if with_grad:
            g = torch.autograd.grad((rho * terms.surrogate).sum(), params)
            grads.append(torch.cat([t.reshape(-1) for t in g]))
    out = torch.stack(ratios)
    return out, (torch.stack(grads) if with_grad else None)


def _assert_within_mc_error(samples: torch.Tensor, exact: torch.Tensor, k: float = 4.5) -> None:
    mean = samples.mean(0)
    se = samples.std(0) / math.sqrt(samples.shape[0])
    z = (mean - exact) / se.clamp_min(1e-12)
    assert z.abs().max().item() < k, f"max |mean - exact| / se = {z.abs().max().item():.2f}"
    # the test has power: the Monte-Carlo error is small against the quantity itself
    assert (se.norm() / exact.norm().clamp_min(1e-12)).item() < 0.05


def test_gae_estimate_and_gradient_match_closed_form() -> None:
    model, x = _linear_model()
    exact = _exact_total(model, x)
    exact_grad = torch.autograd.grad(exact.sum(), list(model.parameters()))
    exact_grad = torch.cat([g.reshape(-1) for g in exact_grad])
    ratios, grads = _replicates(model, x, exact, n_rep=300, n_z=20)
    _assert_within_mc_error(ratios, torch.ones(N, dtype=torch.float64))
    _assert_within_mc_error(grads, exact_grad)
    # with many z the log-estimate itself converges to the exact log-likelihood
    terms = gae_objective(model, x, N, n_z=20000, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(terms.objective, exact.detach(), rtol=0, atol=0.02)


def test_leave_one_out_estimates_the_other_exemplars_mixture() -> None:
    model, x = _linear_model(seed=1)
    exact = _exact_total(model, x, exclude_self=True)
    ratios, _ = _replicates(model, x, exact, n_rep=300, n_z=20, leave_one_out=True, with_grad=False)
    _assert_within_mc_error(ratios, torch.ones(N, dtype=torch.float64))


def test_surrogate_has_the_gradient_and_value_of_the_logsumexp_estimate() -> None:
    model, x = _linear_model(seed=2)
    params = list(model.parameters())
    terms = gae_objective(
        model,
        x,
        50,
        n_z=3,
        lambda_mu=0.3,
        lambda_sigma=0.7,
        generator=torch.Generator().manual_seed(5),
    )
    g_surrogate = torch.autograd.grad(terms.surrogate.sum(), params)
    # the same estimate written as a log-sum-exp, same noise
    mu, logvar = model.encode(x)
    z = reparameterise(mu, logvar, 3, torch.Generator().manual_seed(5))
    log_w = candidate_log_weights(N, 50, 3, False, dtype=torch.float64)
    est = torch.logsumexp(log_w + model.pairwise_log_prob(x, z.reshape(-1, LATENT)), dim=1)
    r_mu, r_sigma = regulariser(mu, logvar, 0.3, 0.7)
    g_direct = torch.autograd.grad((est - r_mu - r_sigma).sum(), params)
    for a, b in zip(g_surrogate, g_direct, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(terms.surrogate.detach(), terms.objective, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(terms.parts["loglik_term"], est.detach())


@pytest.mark.parametrize(
    ("b", "n", "n_z", "loo"), [(5, 100, 1, False), (5, 5, 3, False), (4, 9, 2, True)]
)
def test_candidate_weights_are_consistent(b: int, n: int, n_z: int, loo: bool) -> None:
    w = torch.exp(candidate_log_weights(b, n, n_z, loo, dtype=torch.float64))
    torch.testing.assert_close(w.sum(1), torch.ones(b, dtype=torch.float64))
    self_w = w.reshape(b, b, n_z).sum(2).diagonal()
    want = 0.0 if loo else 1.0 / n
    torch.testing.assert_close(self_w, torch.full((b,), want, dtype=torch.float64))


def test_regulariser_is_a_penalty_subtracted_from_the_objective() -> None:
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0], [math.log(2.0), 0.0]])
    r_mu, r_sigma = regulariser(mu, logvar, 0.5, 2.0)
    torch.testing.assert_close(r_mu, torch.tensor([0.0, 2.5]))
    torch.testing.assert_close(r_sigma, torch.tensor([0.0, 2.0 * (1.0 - math.log(2.0))]))
    model, x = _linear_model(seed=3)
    plain = gae_objective(model, x, N, generator=torch.Generator().manual_seed(0))
    reg = gae_objective(model, x, N, lambda_mu=1.0, generator=torch.Generator().manual_seed(0))
    mu, _ = model.encode(x)
    torch.testing.assert_close(reg.objective, plain.objective - (mu.detach() ** 2).sum(1))
    assert (reg.objective < plain.objective).all()


def test_vae_n_z_averages_its_reconstruction_same_mean_a_quarter_of_the_variance() -> None:
    model, x = _linear_model(kind="vae", seed=4)
    gen_one, gen_four = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    with torch.no_grad():
        one = torch.stack([vae_objective(model, x, gen_one).objective for _ in range(2000)])
        four = torch.stack(
            [vae_objective(model, x, gen_four, n_z=4).objective for _ in range(2000)]
        )
    se = torch.sqrt(one.var(0) / 2000 + four.var(0) / 2000)
    assert ((one.mean(0) - four.mean(0)).abs() < 4.5 * se).all()
    ratio = four.var(0) / one.var(0)  # 1/4 for independent draws
    assert ((ratio > 0.18) & (ratio < 0.35)).all(), ratio


def test_vae_elbo_analytic_kl_matches_monte_carlo_and_bounds_exact_loglik() -> None:
    model, x = _linear_model(kind="vae", seed=4)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        analytic = torch.stack([vae_objective(model, x, gen).objective for _ in range(4000)])
        mc = torch.stack(
            [elbo_with_prior(model, x, StandardNormalPrior(LATENT), 1, gen) for _ in range(4000)]
        )
    diff = analytic.mean(0) - mc.mean(0)
    se = torch.sqrt(analytic.var(0) / 4000 + mc.var(0) / 4000)
    assert (diff.abs() < 4.5 * se).all()
    w, b = model.decoder.weight.detach(), model.decoder.bias.detach()
    cov = NOISE**2 * torch.eye(D, dtype=torch.float64) + w @ w.T
    exact = torch.distributions.MultivariateNormal(b, covariance_matrix=cov).log_prob(x)
    assert (analytic.mean(0) < exact + 4.5 * analytic.std(0) / math.sqrt(4000)).all()


def test_nearest_exemplars_match_brute_force() -> None:
    means = torch.randn(37, 3, generator=torch.Generator().manual_seed(0))
    got = nearest_exemplars(means, 4, chunk_size=5)  # 5 does not divide 37
    dist = torch.cdist(means, means)
    dist.fill_diagonal_(math.inf)
    want = torch.argsort(dist, dim=1)[:, :4]
    assert torch.equal(torch.sort(got, 1).values, torch.sort(want, 1).values)


def _knn_terms(model, x, index, neighbours, n_train, gen, **options):
    nb = neighbours[index]
    in_batch = (nb[:, :, None] == index[None, None, :]).any(dim=1)
    return gae_knn_objective(model, x[index], x[nb], in_batch, n_train, generator=gen, **options)


@pytest.mark.parametrize("leave_one_out", [False, True])
def test_knn_estimate_and_gradient_match_closed_form(leave_one_out: bool) -> None:
    model, x = _linear_model(seed=5)
    exact = _exact_total(model, x, exclude_self=leave_one_out)
    exact_grad = torch.cat(
        [g.reshape(-1) for g in torch.autograd.grad(exact.sum(), list(model.parameters()))]
    )
    neighbours = nearest_exemplars(model.encode(x)[0].detach(), 2)
    index = torch.arange(N)
    gen = torch.Generator().manual_seed(7)
    ratios, grads = [], []
    for _ in range(300):
        terms = _knn_terms(model, x, index, neighbours, N, gen, n_z=20, leave_one_out=leave_one_out)
        rho = torch.exp(terms.objective - exact.detach())
        ratios.append(rho)
        g = torch.autograd.grad((rho * terms.surrogate).sum(), list(model.parameters()))
        grads.append(torch.cat([t.reshape(-1) for t in g]))
    _assert_within_mc_error(torch.stack(ratios), torch.ones(N, dtype=torch.float64))
    _assert_within_mc_error(torch.stack(grads), exact_grad)


@pytest.mark.parametrize("candidates", ["batch", "knn"])
def test_minibatch_estimates_are_unbiased_over_random_minibatches(candidates: str) -> None:
    """n = 6 images in minibatches of 3: only the consistent weights (self 1/n, the others
    standing in for the rest) make E[p_hat_i] = p(x_i) over minibatches and z."""
    model, x = _linear_model(seed=6)
    with torch.no_grad():
        exact = _exact_total(model, x)
        neighbours = nearest_exemplars(model.encode(x)[0], 1)
        gen = torch.Generator().manual_seed(11)
        ratios = []
        for _ in range(1500):
            perm = torch.randperm(N, generator=gen)
            rho = torch.empty(N, dtype=torch.float64)
            for index in perm.split(3):
                if candidates == "knn":
                    terms = _knn_terms(model, x, index, neighbours, N, gen, n_z=4)
                else:
                    terms = gae_objective(model, x[index], N, n_z=4, generator=gen)
                rho[index] = torch.exp(terms.objective - exact[index])
            ratios.append(rho)
    _assert_within_mc_error(torch.stack(ratios), torch.ones(N, dtype=torch.float64))


def test_posterior_draws_give_the_log_density_and_its_gradient_of_their_own_draws():
    """posterior_draws' log q from the noise equals diag_gaussian_logpdf at the same z, and its
    gradient through mu and logvar (with z's own dependence on them) is the same (float64)."""
    gen = torch.Generator().manual_seed(4)
    mu = torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    logvar = (0.5 * torch.randn(6, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    z, log_q = posterior_draws(mu, logvar, 3, torch.Generator().manual_seed(9))
    again = reparameterise(mu, logvar, 3, torch.Generator().manual_seed(9))
    assert torch.equal(z, again)  # the same draws as reparameterise
    want = diag_gaussian_logpdf(z, mu.unsqueeze(1), logvar.unsqueeze(1))
    torch.testing.assert_close(log_q, want)
    weights = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    # a downstream use of z as well, so the gradient's path through z counts
    other = (z**2).sum(dim=-1)
    got = torch.autograd.grad(((log_q + other) * weights).sum(), (mu, logvar), retain_graph=True)
    expected = torch.autograd.grad(((want + other) * weights).sum(), (mu, logvar))
    for one, two in zip(got, expected, strict=True):
        torch.testing.assert_close(one, two)
