"""Latent priors: N(0, I) for the VAE and the exemplar mixture (1/n) sum_j q(z|x_j) for the GAE.

The GAE prior has one diagonal-Gaussian component per TRAINING image (encoder mean and
log-variance of x_j). It is evaluated exactly over all n components with matrix products and a
streaming log-sum-exp (``gae.ops.mixture_logpdf``), so memory stays O(rows x chunk) even at
n = 60,000, and sampled by the slides' procedure: pick j uniformly, then z ~ q(z|x_j).

The VampPrior baseline (``VampPrior``) is the same kind of mixture with K learned pseudo-inputs
in place of the training images, encoded by the current encoder (with gradient in training).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gae.ops import LOG_2PI, chunked_rows, mixture_logpdf, shared_variance_mixture_logpdf


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
        """Exact log p(z) over ALL components; z (N, d) -> (N,). Rows are chunked too.

        Components that share one variance (the default GAE's unit variance, a learned shared
        one) take the d-wide kernel (``shared_variance_mixture_logpdf``), about twice as fast.
        """
        z = z.to(self.means.dtype)
        shared = self.shared_logvar()
        if shared is not None:
            return shared_variance_mixture_logpdf(z, self.means, shared, self.chunk_size)
        return chunked_rows(
            lambda rows: mixture_logpdf(rows, self.means, self.logvars, self.chunk_size),
            z,
            self.chunk_size,
        )

    def shared_logvar(self) -> torch.Tensor | None:
        """The one log-variance (d,) every component has, or None where they differ."""
        first = self.logvars[:1]
        return first[0] if torch.equal(self.logvars, first.expand_as(self.logvars)) else None

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


class VampPrior(nn.Module):
    """p(z) = (1/K) sum_k q(z | u_k): the VampPrior (Tomczak & Welling 2018), K learned
    pseudo-inputs u_k pushed through the model's OWN encoder.

    The pseudo-inputs are ``hardtanh(U)`` of a free parameter U (K, D), so they stay in the
    data's [0, 1] range while the gradient passes unchanged inside it (the recipe's final
    parametrisation). The components are recomputed from the current encoder on every call with
    gradient enabled, so training moves both U and the encoder through the prior. Without
    gradient (validation, evaluation, sampling) the K components are computed once and cached
    until a parameter changes (keyed on the tensors' versions), since ``gae loglik`` calls
    ``log_prob`` thousands of times with the same weights.

    The encoder is held by reference, not registered: it belongs to the model, and registering
    it twice would duplicate its weights in every state dict.
    """

    kind = "vamp"

    def __init__(
        self, encoder: nn.Module, n_pseudo_inputs: int, data_dim: int, chunk_size: int = 4096
    ) -> None:
        super().__init__()
        if n_pseudo_inputs < 1:
            raise ValueError(f"a VampPrior needs at least one pseudo-input, got {n_pseudo_inputs}")
        self.raw_pseudo_inputs = nn.Parameter(torch.empty(int(n_pseudo_inputs), int(data_dim)))
        self.initialise(mean=0.05, std=0.01)
        self._encoder = (encoder,)  # a tuple: nn.Module does not register what it holds
        self.chunk_size = int(chunk_size)
        self._cache: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def n_pseudo_inputs(self) -> int:
        return int(self.raw_pseudo_inputs.shape[0])

    @torch.no_grad()
    def initialise(
        self,
        mean: float = 0.05,
        std: float = 0.01,
        images: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """U ~ N(mean, std^2) per pixel (the recipe's static-MNIST default: 0.05, 0.01), or, with
        ``images`` (K, D), U = images + N(0, std^2) (the recipe's training-data init)."""
        shape = self.raw_pseudo_inputs.shape
        dtype = self.raw_pseudo_inputs.dtype  # drawn on the CPU (the generator's), then moved
        noise = torch.randn(shape, generator=generator, dtype=dtype) * std
        if images is None:
            values = noise + mean
        else:
            if tuple(images.shape) != tuple(shape):
                raise ValueError(f"need {tuple(shape)} images, got {tuple(images.shape)}")
            values = images.detach().cpu().to(noise.dtype) + noise
        self.raw_pseudo_inputs.copy_(values.to(self.raw_pseudo_inputs))

    def pseudo_inputs(self) -> torch.Tensor:
        """u_k = hardtanh(U_k) in [0, 1], (K, D)."""
        return torch.nn.functional.hardtanh(self.raw_pseudo_inputs, 0.0, 1.0)

    def _version_key(self) -> tuple:
        tensors = [self.raw_pseudo_inputs, *self._encoder[0].parameters()]
        return tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(means, logvars), each (K, d): q(z|u_k) under the current encoder."""
        if torch.is_grad_enabled():
            self._cache = None
            return self._encoder[0](self.pseudo_inputs())
        key = self._version_key()
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._encoder[0](self.pseudo_inputs()))
        return self._cache[1]

    @property
    def latent_dim(self) -> int:
        return int(self._encoder[0].latent_dim)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Exact log p(z) over all K components; z (N, d) -> (N,), differentiable in z, U and
        the encoder. Rows are chunked so memory stays O(chunk x K)."""
        means, logvars = self.components()
        z = z.to(means.dtype)
        return chunked_rows(
            lambda rows: mixture_logpdf(rows, means, logvars, self.chunk_size), z, self.chunk_size
        )

    @torch.no_grad()
    def sample_with_index(
        self, k: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """k ~ U{1..K}, z ~ q(z|u_k). Returns (z (k, d), index (k,))."""
        means, logvars = self.components()
        device = generator.device if generator is not None else means.device
        index = torch.randint(self.n_pseudo_inputs, (k,), generator=generator, device=device)
        eps = torch.randn(k, means.shape[1], generator=generator, device=device)
        index, eps = index.to(means.device), eps.to(means.device, means.dtype)
        return means[index] + torch.exp(0.5 * logvars[index]) * eps, index

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.sample_with_index(k, generator)[0]

    def state(self) -> dict[str, Any]:
        """What model.pt records; the pseudo-inputs travel with the trained weights
        (``gae.models.trained_weights``) and the encoder with the model."""
        return {"type": self.kind, "n_pseudo_inputs": self.n_pseudo_inputs}


def prior_from_state(state: dict[str, Any]) -> nn.Module:
    """Rebuild a prior from ``prior.state()`` (as stored in model.pt)."""
    if state["type"] == VampPrior.kind:
        raise ValueError("a VampPrior is rebuilt with its model's encoder: use load_model")
    if state["type"] == StandardNormalPrior.kind:
        return StandardNormalPrior(state["latent_dim"])
    if state["type"] == ExemplarMixturePrior.kind:
        return ExemplarMixturePrior(state["means"], state["logvars"], state["chunk_size"])
    raise ValueError(f"unknown prior type {state['type']!r}")


__all__ = ["ExemplarMixturePrior", "StandardNormalPrior", "VampPrior", "prior_from_state"]
