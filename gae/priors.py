"""Latent priors: N(0, I) for the VAE and the exemplar mixture (1/n) sum_j q(z|x_j) for the GAE.

The GAE prior has one diagonal-Gaussian component per TRAINING image (encoder mean and
log-variance of x_j). It is evaluated exactly over all n components with matrix products and a
streaming log-sum-exp (``gae.ops.mixture_logpdf``), so memory stays O(rows x chunk) even at
n = 60,000, and sampled by the slides' procedure: pick j uniformly, then z ~ q(z|x_j).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gae.ops import LOG_2PI, chunked_rows, mixture_logpdf


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I): the VAE's prior."""

    kind = "standard_normal"

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        # a buffer only to know the device the prior lives on
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, d) -> (N,)."""
        return -0.5 * (z * z).sum(dim=-1) - 0.5 * self.latent_dim * LOG_2PI

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(k, d) draws; the generator's device decides where the noise is drawn."""
        device = generator.device if generator is not None else self._anchor.device
        eps = torch.randn(k, self.latent_dim, generator=generator, device=device)
        return eps.to(self._anchor.device)

    def state(self) -> dict[str, Any]:
        return {"type": self.kind, "latent_dim": self.latent_dim}


class ExemplarMixturePrior(nn.Module):
    """p(z) = (1/n) sum_j N(z; means_j, diag exp(logvars_j)), one component per training image."""

    kind = "exemplar_mixture"

    def __init__(self, means: torch.Tensor, logvars: torch.Tensor, chunk_size: int = 4096) -> None:
        super().__init__()
        if means.ndim != 2 or means.shape != logvars.shape or means.shape[0] < 1:
            raise ValueError(
                f"ExemplarMixturePrior needs means and logvars of equal shape (n, d) with n >= 1, "
                f"got {tuple(means.shape)} and {tuple(logvars.shape)}"
            )
        self.register_buffer("means", means.detach().clone())
        self.register_buffer("logvars", logvars.detach().clone())
        self.chunk_size = int(chunk_size)

    @property
    def latent_dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Exact log p(z) over ALL components; z (N, d) -> (N,). Rows are chunked too."""
        z = z.to(self.means.dtype)
        return chunked_rows(
            lambda rows: mixture_logpdf(rows, self.means, self.logvars, self.chunk_size),
            z,
            self.chunk_size,
        )

    def sample_with_index(
        self, k: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The slides' steps 1-2: j ~ U{1..n}, z ~ q(z|x_j). Returns (z (k, d), j (k,))."""
        device = generator.device if generator is not None else self.means.device
        index = torch.randint(self.n_components, (k,), generator=generator, device=device)
        eps = torch.randn(k, self.latent_dim, generator=generator, device=device)
        index, eps = index.to(self.means.device), eps.to(self.means.device)
        z = self.means[index] + torch.exp(0.5 * self.logvars[index]) * eps
        return z, index

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.sample_with_index(k, generator)[0]

    def state(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "means": self.means.detach().cpu(),
            "logvars": self.logvars.detach().cpu(),
            "chunk_size": self.chunk_size,
        }


def prior_from_state(state: dict[str, Any]) -> nn.Module:
    """Rebuild a prior from ``prior.state()`` (as stored in model.pt)."""
    if state["type"] == StandardNormalPrior.kind:
        return StandardNormalPrior(state["latent_dim"])
    if state["type"] == ExemplarMixturePrior.kind:
        return ExemplarMixturePrior(state["means"], state["logvars"], state["chunk_size"])
    raise ValueError(f"unknown prior type {state['type']!r}")


__all__ = ["ExemplarMixturePrior", "StandardNormalPrior", "prior_from_state"]
