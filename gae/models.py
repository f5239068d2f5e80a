"""Encoder, decoders and the trained model (``GenerativeModel``) with save/load.

Encoder q(z|x) = N(mu(x), diag sigma^2(x)), an MLP with ``depth`` hidden layers whose
log-variance head is clamped to [logvar_min, logvar_max] (keeps exp() finite and the mixture
prior's components from collapsing to points). Decoders p(x|z): Bernoulli (logits) for the MNIST
sets, Gaussian (sigmoid mean, per-pixel learned or fixed std with a floor) for faces, and a
linear-Gaussian decoder N(Wz + b, s^2 I) whose GAE marginal likelihood is closed form (tests).
Hidden layers are dense (linear + activation) or, for the VampPrior recipe, gated
(``GatedDense``: linear x sigmoid(linear)).

Every decoder offers ``pairwise_log_prob(x (B, D), z (M, d)) -> (B, M)``: the GAE E-step needs
log p(x_i|z_j) for all pairs of a minibatch, which is one matrix product, not B x M x D work.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gae.errors import GaeError
from gae.io import atomic_torch_save
from gae.ops import LOG_2PI, pairwise_diag_gaussian_logpdf
from gae.priors import ExemplarMixturePrior, StandardNormalPrior, VampPrior, prior_from_state
from gae.settings import DATASETS, Config

FORMAT_VERSION = 1
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus, "elu": nn.ELU}
LAYERS = ("dense", "gated")  # model.layer
KINDS = ("gae", "vae", "vamp")  # models.<variant>.kind


class GatedDense(nn.Module):
    """h(x) * sigmoid(g(x)) with two linear maps h and g: the gated dense layer of the VampPrior
    recipe (Tomczak & Welling 2018; Dauphin et al. 2017). No further activation: the gate is the
    non-linearity."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.h = nn.Linear(in_dim, out_dim)
        self.g = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


def mlp(
    in_dim: int, out_dim: int, depth: int, width: int, activation: str, layer: str = "dense"
) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units, then a linear output layer. ``dense``: linear +
    ``activation``; ``gated``: ``GatedDense`` (``activation`` unused)."""
    if not 1 <= depth <= 4:
        raise ValueError(f"depth must be 1-4, got {depth}")
    if layer not in LAYERS:
        raise GaeError(f"model.layer must be one of {', '.join(LAYERS)}, not {layer!r}")
    layers: list[nn.Module] = []
    previous = in_dim
    for _ in range(depth):
        if layer == "gated":
            layers.append(GatedDense(previous, width))
        else:
            layers += [nn.Linear(previous, width), ACTIVATIONS[activation]()]
        previous = width
    layers.append(nn.Linear(previous, out_dim))
    return nn.Sequential(*layers)


INITS = ("xavier", "torch", "he")


def initialise_mlp(net: nn.Sequential, init: str, activation: str) -> None:
    """``xavier``: Glorot-uniform weights with the activation's gain, zero biases. PyTorch's own
    Linear init (``torch``) shrinks a tanh signal ~sqrt(3)x per layer; at depth 4 (10 layers from
    x to x) the decoder then learns to ignore z and both VAE and GAE sit on the mean image.
    ``he``: the VampPrior recipe's ``he_init``, weights N(0, 2 / fan_in) on every linear map
    (gates and output layer included), biases left at nn.Linear's default as there."""
    if init == "torch":
        return
    if init not in INITS:
        raise GaeError(f"model.init must be one of {', '.join(INITS)}, not {init!r}")
    layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if init == "he":
        for layer in layers:
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / layer.in_features))
        return
    gain = nn.init.calculate_gain(activation) if activation in ("tanh", "relu") else 1.0
    for i, layer in enumerate(layers):
        nn.init.xavier_uniform_(layer.weight, gain=gain if i < len(layers) - 1 else 1.0)
        nn.init.zeros_(layer.bias)


class Encoder(nn.Module):
    """x (B, D) -> (mu, logvar), each (B, d); logvar clamped."""

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        depth: int,
        width: int,
        activation: str,
        logvar_min: float = -6.0,
        logvar_max: float = 2.0,
        layer: str = "dense",
    ) -> None:
        super().__init__()
        self.net = mlp(data_dim, 2 * latent_dim, depth, width, activation, layer)
        self.latent_dim = latent_dim
        self.logvar_min, self.logvar_max = float(logvar_min), float(logvar_max)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        mu, logvar = out[..., : self.latent_dim], out[..., self.latent_dim :]
        return mu, logvar.clamp(self.logvar_min, self.logvar_max)


class MlpDecoder(nn.Module):
    """The MLP decoders' shared body: an MLP from z to one output per pixel, whose sigmoid is
    the mean. One constructor serves every likelihood, so the network's shape is spelled once;
    a likelihood with parameters of its own (the Gaussian's noise) adds them in
    ``_init_likelihood``, after ``net`` as before, so model.pt's state_dict keys and the
    parameters' initial values are unchanged."""

    def __init__(
        self,
        latent_dim: int,
        data_dim: int,
        depth: int,
        width: int,
        activation: str,
        layer: str = "dense",
        **likelihood: Any,
    ) -> None:
        super().__init__()
        self.net = mlp(latent_dim, data_dim, depth, width, activation, layer)
        self._init_likelihood(data_dim, **likelihood)

    def _init_likelihood(self, data_dim: int) -> None:
        """No parameters beyond the MLP (the Bernoulli case); subclasses add theirs."""

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(z))


class BernoulliDecoder(MlpDecoder):
    """p(x|z) = prod_k Bernoulli(x_k; sigmoid(l_k(z))); for x in [0, 1] the cross-entropy."""

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x (B, D), z (B, S, d) -> (B, S)."""
        logits = self.net(z)
        return (x.unsqueeze(1) * logits - F.softplus(logits)).sum(dim=-1)

    def pairwise_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x_i|z_j) = x_i . l_j - sum_k softplus(l_jk); x (B, D), z (M, d) -> (B, M)."""
        logits = self.net(z)
        return x @ logits.T - F.softplus(logits).sum(dim=-1)


class GaussianDecoder(MlpDecoder):
    """p(x|z) = N(sigmoid(m(z)), diag s^2), s per pixel: learned (s = floor + exp(a)) or fixed.

    Built as ``GaussianDecoder(latent_dim, data_dim, depth, width, activation, layer,
    variance=..., std_min=..., std_init=...)``.
    """

    def _init_likelihood(
        self,
        data_dim: int,
        variance: str = "learned",
        std_min: float = 0.01,
        std_init: float = 0.1,
    ) -> None:
        """The per-pixel noise s = std_min + exp(log_excess_std): a parameter when learned, a
        buffer when fixed (so it is saved either way but trained only in the first case)."""
        self.std_min = float(std_min)
        if std_init <= std_min:
            raise GaeError(
                f"model.gaussian_std_init ({std_init}) must exceed model.gaussian_std_min "
                f"({std_min}); raise it or lower the floor"
            )
        init = torch.full((data_dim,), math.log(std_init - std_min))
        if variance == "learned":
            self.log_excess_std = nn.Parameter(init)
        elif variance == "fixed":
            self.register_buffer("log_excess_std", init)
        else:
            raise GaeError(
                f"model.gaussian_variance must be 'learned' or 'fixed', not {variance!r}"
            )

    def logvar(self) -> torch.Tensor:
        return 2.0 * torch.log(self.std_min + torch.exp(self.log_excess_std))  # (D,)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = torch.sigmoid(self.net(z))  # (B, S, D)
        logvar = self.logvar()
        sq = (x.unsqueeze(1) - mean) ** 2 * torch.exp(-logvar)
        return -0.5 * (sq.sum(dim=-1) + logvar.sum() + x.shape[-1] * LOG_2PI)

    def pairwise_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = torch.sigmoid(self.net(z))  # (M, D)
        return pairwise_diag_gaussian_logpdf(x, mean, self.logvar().expand_as(mean))


class LinearGaussianDecoder(nn.Module):
    """p(x|z) = N(W z + b, s^2 I), fixed s: the GAE marginal likelihood is then closed form."""

    def __init__(self, latent_dim: int, data_dim: int, noise_std: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(data_dim, latent_dim) / math.sqrt(latent_dim))
        self.bias = nn.Parameter(torch.zeros(data_dim))
        self.noise_std = float(noise_std)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """Unbounded (the closed-form test model); not restricted to [0, 1]."""
        return z @ self.weight.T + self.bias

    def _log_norm(self, data_dim: int) -> float:
        return -data_dim * (math.log(self.noise_std) + 0.5 * LOG_2PI)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        sq = ((x.unsqueeze(1) - self.mean(z)) ** 2).sum(dim=-1)
        return -0.5 * sq / self.noise_std**2 + self._log_norm(x.shape[-1])

    def pairwise_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = self.mean(z)
        logvar = torch.full_like(mean, 2.0 * math.log(self.noise_std))
        return pairwise_diag_gaussian_logpdf(x, mean, logvar)


# models.<variant>.prior_variance; learned: one learned variance per latent dimension, shared by
# every component; learned_scalar: ONE learned variance shared by every component and dimension
PRIOR_VARIANCES = ("posterior", "unit", "learned", "learned_scalar")


class GenerativeModel(nn.Module):
    """Encoder + decoder + prior; the object stored in ``model.pt`` (see docs/architecture.md).

    ``prior`` is N(0, I) for a VAE; for a GAE it is the exemplar mixture over all training
    encodings, set by ``set_exemplar_prior`` once training ends (``None`` before); for ``vamp``
    the VampPrior over ``architecture["n_pseudo_inputs"]`` learned pseudo-inputs, trained with
    the rest of the model.
    """

    def __init__(
        self,
        kind: str,
        encoder: Encoder,
        decoder: nn.Module,
        architecture: dict[str, Any],
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        self.kind = kind
        self.encoder = encoder
        self.decoder = decoder
        self.architecture = dict(architecture)
        self.meta: dict[str, Any] = dict(meta or {})
        self.prior: nn.Module | None = (
            StandardNormalPrior(architecture["latent_dim"]) if kind == "vae" else None
        )
        if kind == "vamp":
            self.prior = VampPrior(
                encoder, int(architecture.get("n_pseudo_inputs", 500)), architecture["data_dim"]
            )
        # prior_variance: the exemplar components' variance (docs/method.md). "posterior": each
        # component is its own q(z|x_j), the slides' model; "unit": every component N(mu_j, I);
        # "learned": every component shares one learned diagonal variance
        prior_variance = architecture.get("prior_variance", "posterior")
        if prior_variance not in PRIOR_VARIANCES:
            raise GaeError(
                f"unknown prior_variance {prior_variance!r}; use one of "
                f"{', '.join(PRIOR_VARIANCES)} (models.<variant>.prior_variance)"
            )
        if prior_variance != "posterior" and kind != "gae":
            raise GaeError(
                f"prior_variance: {prior_variance} applies to a GAE's exemplar prior only"
            )
        self.prior_variance = prior_variance
        shared_shape = {"learned": (architecture["latent_dim"],), "learned_scalar": (1,)}
        self.prior_logvar: nn.Parameter | None = (
            nn.Parameter(torch.zeros(shared_shape[prior_variance]))
            if prior_variance in shared_shape
            else None
        )

    @property
    def latent_dim(self) -> int:
        return int(self.architecture["latent_dim"])

    @property
    def data_dim(self) -> int:
        return int(self.architecture["data_dim"])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decoder_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over pixels; x (B, D), z (B, S, d) -> (B, S)."""
        return self.decoder.log_prob(x, z)

    def pairwise_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x_i|z_j) for all pairs; x (B, D), z (M, d) -> (B, M)."""
        return self.decoder.pairwise_log_prob(x, z)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., D); in [0, 1] for the Bernoulli and Gaussian decoders."""
        return self.decoder.mean(z)

    @torch.no_grad()
    def encode_all(
        self, x: torch.Tensor, batch_size: int = 2000
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder means and log-variances of every row of x, in batches, without gradients."""
        outs = [self.encoder(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def component_logvar(self, logvar: torch.Tensor) -> torch.Tensor:
        """Log-variances of the prior components whose encoder log-variances are ``logvar``.

        The slides' q(z|x_j) keeps the encoder's own. A shared variance (Exemplar VAE, Norouzi
        et al. 2020) replaces every one by the same vector: the identity ("unit"), or a learned
        one, clamped like the encoder's, with gradient from the leave-one-out bound: one value
        per dimension ("learned") or one scalar for all ("learned_scalar", the Exemplar VAE's).
        """
        if self.prior_variance == "posterior":
            return logvar
        if self.prior_variance == "unit":
            return torch.zeros_like(logvar)
        lo, hi = self.architecture["logvar_min"], self.architecture["logvar_max"]
        return self.prior_logvar.clamp(lo, hi).expand_as(logvar)

    def shared_component_logvar(self, like: torch.Tensor) -> torch.Tensor | None:
        """The one log-variance (d,) that every exemplar component shares (unit: zeros; learned:
        the clamped parameter, with its gradient), or None where each component keeps its
        encoder's own (``prior_variance: posterior``). Lets the training step use the d-wide
        kernel (``gae.ops.shared_variance_subset_logpdf``). ``like``: a tensor of codes, whose
        device and dtype the unit variance takes."""
        if self.prior_variance == "posterior":
            return None
        d = self.latent_dim
        if self.prior_variance == "unit":
            return torch.zeros(d, device=like.device, dtype=like.dtype)
        lo, hi = self.architecture["logvar_min"], self.architecture["logvar_max"]
        return self.prior_logvar.clamp(lo, hi).expand(d)

    def set_exemplar_prior(
        self, x_train: torch.Tensor, batch_size: int = 2000, chunk_size: int = 4096
    ) -> ExemplarMixturePrior:
        """The GAE prior (1/n) sum_j N(mu_j, component variance) from the current encoder over
        all of x_train; with the slides' model, (1/n) sum_j q(z|x_j)."""
        if self.kind != "gae":
            raise ValueError("only a GAE has an exemplar prior")
        means, logvars = self.encode_all(x_train, batch_size)
        with torch.no_grad():
            logvars = self.component_logvar(logvars).contiguous()
        self.prior = ExemplarMixturePrior(means, logvars, chunk_size)
        return self.prior


def build_model(kind: str, architecture: dict[str, Any], meta: dict[str, Any] | None = None):
    """A fresh (randomly initialised) GenerativeModel from an architecture dict."""
    a = architecture
    layer = a.get("layer", "dense")  # absent in older models: dense
    encoder = Encoder(
        a["data_dim"],
        a["latent_dim"],
        a["depth"],
        a["hidden_units"],
        a["activation"],
        a["logvar_min"],
        a["logvar_max"],
        layer,
    )
    likelihood = a["likelihood"]
    if likelihood == "bernoulli":
        decoder: nn.Module = BernoulliDecoder(
            a["latent_dim"], a["data_dim"], a["depth"], a["hidden_units"], a["activation"], layer
        )
    elif likelihood == "gaussian":
        decoder = GaussianDecoder(
            a["latent_dim"],
            a["data_dim"],
            a["depth"],
            a["hidden_units"],
            a["activation"],
            layer,
            variance=a.get("gaussian_variance", "learned"),
            std_min=a.get("gaussian_std_min", 0.01),
            std_init=a.get("gaussian_std_init", 0.1),
        )
    elif likelihood == "linear_gaussian":
        decoder = LinearGaussianDecoder(a["latent_dim"], a["data_dim"], a["noise_std"])
    else:
        raise GaeError(
            f"unknown likelihood {likelihood!r}; use bernoulli or gaussian (model.likelihood)"
        )
    for part in (encoder, decoder):
        if isinstance(getattr(part, "net", None), nn.Sequential):
            initialise_mlp(part.net, a.get("init", "torch"), a["activation"])
    return GenerativeModel(kind, encoder, decoder, a, meta)


def architecture_from_config(
    cfg: Config, dataset: str, depth: int, latent_dim: int, data_dim: int
) -> dict[str, Any]:
    """The architecture dict model.pt stores (and the run's fingerprint hashes): ``model.*``
    of ``cfg`` with the run's shape. Its keys and value types must not change, or every
    checkpoint made before is refused."""
    m = cfg.model
    if dataset not in DATASETS:
        raise GaeError(f"unknown data set {dataset!r}; use one of {', '.join(DATASETS)}")
    return {
        "data_dim": int(data_dim),
        "latent_dim": int(latent_dim),
        "depth": int(depth),
        "hidden_units": int(m.hidden_units),
        "activation": m.activation,
        "init": m.init,
        "logvar_min": float(m.logvar_min),
        "logvar_max": float(m.logvar_max),
        "likelihood": getattr(m.likelihood, dataset),
        "gaussian_variance": m.gaussian_variance,
        "gaussian_std_min": float(m.gaussian_std_min),
        "gaussian_std_init": float(m.gaussian_std_init),
        # only when not the default, so that the architecture (and with it the fingerprint of
        # every run trained before gated layers existed) stays as it was
        **({"layer": m.layer} if m.layer != "dense" else {}),
    }


def trained_weights(model: GenerativeModel, device: str | torch.device | None = None) -> dict:
    """Detached copies of everything training changes: encoder, decoder and, with
    ``prior_variance: learned``, ``prior_logvar`` (None otherwise), and for ``vamp`` the raw
    pseudo-inputs (``pseudo_inputs``, only then). The GAE's prior components are derived from
    these (``set_exemplar_prior``). Used by model.pt and by checkpoints."""

    def copy_of(t: torch.Tensor) -> torch.Tensor:
        return t.detach().clone() if device is None else t.detach().to(device, copy=True)

    weights = {
        "encoder": {k: copy_of(v) for k, v in model.encoder.state_dict().items()},
        "decoder": {k: copy_of(v) for k, v in model.decoder.state_dict().items()},
        "prior_logvar": None if model.prior_logvar is None else copy_of(model.prior_logvar),
    }
    if isinstance(model.prior, VampPrior):
        weights["pseudo_inputs"] = copy_of(model.prior.raw_pseudo_inputs)
    return weights


def load_trained_weights(model: GenerativeModel, weights: dict) -> None:
    """The inverse of ``trained_weights`` (into a model built with the same architecture)."""
    model.encoder.load_state_dict(weights["encoder"])
    model.decoder.load_state_dict(weights["decoder"])
    if model.prior_logvar is not None:
        model.prior_logvar.data.copy_(weights["prior_logvar"])
    if isinstance(model.prior, VampPrior):
        model.prior.raw_pseudo_inputs.data.copy_(weights["pseudo_inputs"])


def save_model(model: GenerativeModel, path: str | Path) -> None:
    """Write model.pt atomically: weights, prior buffers, architecture, config and run."""
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "architecture": model.architecture,
        **trained_weights(model, device="cpu"),
        "prior": model.prior.state() if model.prior is not None else None,
        "meta": copy.deepcopy(model.meta),
    }
    atomic_torch_save(path, payload)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """Load model.pt (needs only ``gae``); the model is in eval mode on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise GaeError(f"{path} does not exist; train the run first (gae train RUN)")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise GaeError(f"{path} is not a readable gae model ({exc}); re-run gae train") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise GaeError(f"{path} is not a gae model of format {FORMAT_VERSION}; re-run gae train")
    model = build_model(payload["kind"], payload["architecture"], payload["meta"])
    load_trained_weights(model, payload)
    if payload["prior"] is not None and payload["kind"] != "vamp":  # vamp: built with the model
        model.prior = prior_from_state(payload["prior"])
    return model.to(device).eval()
