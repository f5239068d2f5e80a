"""Exact references for tests: the GAE marginal likelihood with a linear-Gaussian decoder.

With p(x|z) = N(W z + b, s^2 I) and exemplar components q(z|x_j) = N(mu_j, diag sigma_j^2),

    p(x) = (1/n) sum_j N(x; W mu_j + b, s^2 I + W diag(sigma_j^2) W^T),

computed here in float64 by Cholesky factorisation, one component at a time (small n only).
"""

from __future__ import annotations

import math

import torch


def linear_gaussian_gae_logpdf(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    noise_std: float,
    means: torch.Tensor,
    logvars: torch.Tensor,
) -> torch.Tensor:
    """Exact ``log p(x_i)`` for each row of x (N, D); weight (D, d), bias (D,), means (n, d)."""
    x = x.double()
    weight, bias = weight.double(), bias.double()
    means, variances = means.double(), torch.exp(logvars.double())
    d_x = x.shape[1]
    per_component = []
    for mu, var in zip(means, variances, strict=True):
        cov = noise_std**2 * torch.eye(d_x, dtype=torch.float64) + (weight * var) @ weight.T
        dist = torch.distributions.MultivariateNormal(weight @ mu + bias, covariance_matrix=cov)
        per_component.append(dist.log_prob(x))
    stacked = torch.stack(per_component, dim=1)  # (N, n)
    return torch.logsumexp(stacked, dim=1) - math.log(means.shape[0])


def brute_force_mixture_logpdf(
    z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor
) -> torch.Tensor:
    """float64 ``log (1/n) sum_j N(z; mu_j, diag exp(logvar_j))`` by explicit broadcasting."""
    z, means, logvars = z.double(), means.double(), logvars.double()
    diff = z[:, None, :] - means[None]
    log_comp = -0.5 * (
        (diff**2 / torch.exp(logvars)[None]).sum(-1)
        + logvars.sum(-1)[None]
        + z.shape[1] * math.log(2 * math.pi)
    )
    return torch.logsumexp(log_comp, dim=1) - math.log(means.shape[0])
