"""Test log-likelihood of a trained model: importance sampling and the slides' prior sampling.

(a) Importance sampling with the encoder as proposal, S draws per test image:

    log p(x) ~= logmeanexp_s [log p(x|z_s) + log p(z_s) - log q(z_s|x)],   z_s ~ q(z|x),

with log p(z) under the EXACT prior (for the GAE the mixture over all n training encodings,
``model.prior.log_prob``), or, with ``prior_components = K``, the GAE mixture restricted to the K
components nearest each test image (nearest by log q(mu(x)|x_j)) but still weighted 1/n. The
omitted components are positive terms, so every weight, hence every per-image estimate, can only
go DOWN: a certified lower bound that costs K instead of n per draw (S = 1,000 on the full test
set becomes affordable on a CPU). The exact and truncated estimates share their noise, so their
difference measures what the truncation loses. (b) The slides' estimator, z_s drawn from the prior:

    log p(x) ~= logmeanexp_s log p(x|z_s),   z_s ~ p(z).

Both are consistent lower-bound-in-expectation estimators (Jensen); (b) has far higher variance
because p(z) rarely lands where p(x|z) is large. For speed (b) draws ONE set of S prior samples
shared by every test image (each image's estimate is still unbiased in p(x); their Monte-Carlo
errors are correlated across images), so each z is decoded once for all test images.

Reproducibility: the proposal noise of test image i comes from its own generator seeded by
(seed, i), so results do not depend on the chunk sizes, on n_test or on the device. Memory is
O(rows x chunk): the log-weights are reduced by ``gae.ops.streaming_logsumexp`` chunk by chunk.
Each estimate also reports its per-image Monte-Carlo standard error (delta method) and the
effective sample size of the weights.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from gae.evaluation import eval_rows, mean_sem, require_file, resolve_device
from gae.ops import (
    LOG_2PI,
    chunked_rows,
    gather_rows,
    pairwise_diag_gaussian_logpdf,
    streaming_logsumexp,
    subset_mixture_logpdf,
)

# per-image estimates beside loglik.json (gae.tables pairs runs image by image)
from gae.paths import LOGLIK_FILE, MODEL_FILE, PER_IMAGE_FILE
from gae.settings import Config

log = logging.getLogger(__name__)


# most (image, draw) pairs per block on the pairwise path: 2^22 float64 = 32 MiB per temporary
PAIRWISE_ELEMENTS = 1 << 22


class Prior(Protocol):
    def log_prob(self, z: torch.Tensor) -> torch.Tensor: ...
    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor: ...


class GenerativeModelLike(Protocol):
    """The part of the trained-model contract (docs/architecture.md) the estimators use."""

    latent_dim: int
    prior: Prior

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
    def decoder_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor: ...


@dataclass
class LoglikEstimate:
    """Per-image estimates (float64, CPU) with their Monte-Carlo diagnostics."""

    log_px: torch.Tensor  # (N,) estimated log p(x_i)
    mc_se: torch.Tensor  # (N,) delta-method Monte-Carlo standard error of log_px
    ess: torch.Tensor  # (N,) effective sample size of the weights, (sum w)^2 / sum w^2
    n_samples: int

    def summary(self) -> dict[str, float]:
        mean, sem = mean_sem(self.log_px)
        return {
            "mean": mean,
            "sem": sem,
            "mean_mc_se": float(self.mc_se.mean()),
            "mean_ess": float(self.ess.mean()),
            "min_ess": float(self.ess.min()),
        }


def row_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of test image ``index``: independent streams via numpy's SeedSequence."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _finish(lse: torch.Tensor, n_rows: int, n_samples: int) -> tuple[torch.Tensor, ...]:
    """From logsumexp of [log w; 2 log w]: log mean w, its delta-method s.e., and the ESS."""
    lse1, lse2 = lse[:n_rows].double().cpu(), lse[n_rows:].double().cpu()
    log_px = lse1 - math.log(n_samples)
    # relative variance of the mean weight: (S * sum w^2 / (sum w)^2 - 1) / S
    rel_var = (torch.exp(math.log(n_samples) + lse2 - 2.0 * lse1) - 1.0).clamp_min(0.0) / n_samples
    ess = torch.exp(2.0 * lse1 - lse2)
    return log_px, rel_var.sqrt(), ess


def _reduce_block(
    block, n_samples: int, cols: int, out: list[torch.Tensor], r0: int, b: int
) -> None:
    """Stream the block's [log w; 2 log w] over the S draws (``streaming_logsumexp``) and write
    rows r0..r0+b of the three per-image outputs: log p(x), its Monte-Carlo s.e., the ESS."""
    lse = streaming_logsumexp(block, n_samples, cols)
    for buf, value in zip(out, _finish(lse, b, n_samples), strict=True):
        buf[r0 : r0 + b] = value


def _block_shape(n_samples: int, chunk_size: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols <= chunk_size latent draws evaluated at once."""
    cols = max(1, min(n_samples, chunk_size))
    return max(1, chunk_size // cols), cols


@torch.no_grad()
def nearest_components(
    means: torch.Tensor, logvars: torch.Tensor, anchors: torch.Tensor, k: int, chunk_size: int = 256
) -> torch.Tensor:
    """(N, k) indices of the k mixture components with the highest density at each anchor.

    Chunked over anchors: at most chunk_size x n_components scores at once (matrix products).
    """
    if not 1 <= k <= means.shape[0]:
        raise ValueError(f"need 1 <= k <= {means.shape[0]} components, got k={k}")
    return chunked_rows(
        lambda rows: torch.topk(pairwise_diag_gaussian_logpdf(rows, means, logvars), k).indices,
        anchors,
        chunk_size,
    )


def _truncation(model: GenerativeModelLike, prior_components: int | None) -> int | None:
    """K when the truncated-prior lower bound applies, None for the exact prior."""
    if prior_components is None:
        return None
    n_components = getattr(model.prior, "n_components", None)
    if n_components is None:
        raise ValueError(
            "evaluation.loglik.prior_components applies to the GAE's exemplar-mixture prior only; "
            "set it to null for this model"
        )
    return None if prior_components >= n_components else int(prior_components)


@torch.no_grad()
def importance_log_likelihood(
    model: GenerativeModelLike,
    x: torch.Tensor,
    n_samples: int,
    chunk_size: int = 4096,
    seed: int = 0,
    progress: bool = False,
    prior_components: int | None = None,
    image_ids: np.ndarray | None = None,
) -> LoglikEstimate:
    """Estimator (a): proposal q(z|x) from ``model.encode``, exact ``model.prior.log_prob``.

    ``chunk_size`` bounds how many latent draws (rows x samples) are decoded at once.
    ``image_ids`` (default 0..N-1) seed each image's draws: pass the images' rows in the test
    file, so an image gets the same draws whichever subset it is scored in.
    ``prior_components = K`` (exemplar-mixture priors only; K >= n means exact) replaces the
    exact log p(z) by the lower bound over the K components nearest each test image.
    """
    n = x.shape[0]
    ids = np.arange(n) if image_ids is None else np.asarray(image_ids, dtype=np.int64)
    if ids.shape != (n,):
        raise ValueError(f"image_ids has shape {ids.shape}, expected ({n},)")
    rows, cols = _block_shape(n_samples, chunk_size)
    k = _truncation(model, prior_components)
    nearest = None if k is None else _nearest_prior_components(model, x, k)
    out = [torch.empty(n, dtype=torch.float64) for _ in range(3)]
    bar = tqdm(total=n, unit="img", desc="loglik: importance", disable=not progress)
    for r0 in range(0, n, rows):
        xb = x[r0 : r0 + rows]
        b = xb.shape[0]
        log_prior_fn = _log_prior_fn(model.prior, None if nearest is None else nearest[r0 : r0 + b])
        block = _importance_weights(model, xb, ids[r0 : r0 + b], n_samples, seed, log_prior_fn)
        _reduce_block(block, n_samples, cols, out, r0, b)
        bar.update(b)
    bar.close()
    return LoglikEstimate(out[0], out[1], out[2], n_samples)


def _nearest_prior_components(model: GenerativeModelLike, x: torch.Tensor, k: int) -> torch.Tensor:
    """Every image's K nearest exemplar components (by encoder mean), found once: (N, K)."""
    prior = model.prior
    anchors = chunked_rows(lambda xr: model.encode(xr)[0].to(prior.means.dtype), x, 1024)
    return nearest_components(prior.means, prior.logvars, anchors, k)


def _importance_weights(
    model: GenerativeModelLike,
    xb: torch.Tensor,
    ids: np.ndarray,
    n_samples: int,
    seed: int,
    log_prior_fn,
):
    """``block(start, stop)`` -> [log w; 2 log w] (2b, stop - start) for draws start:stop of
    the images ``xb``: z = mu + std * eps from q(z|x), eps drawn per image from its own row's
    generator (so the weights do not depend on the chunking or on the subset scored)."""
    mu, logvar = model.encode(xb)
    d = mu.shape[1]
    eps = torch.stack(
        [torch.randn(n_samples, d, generator=row_generator(seed, int(i))) for i in ids]
    ).to(device=mu.device, dtype=mu.dtype)  # (b, S, d)
    std = torch.exp(0.5 * logvar)[:, None, :]
    log_q_const = -0.5 * (logvar.sum(dim=1, keepdim=True) + d * LOG_2PI)  # (b, 1)

    def block(start: int, stop: int) -> torch.Tensor:
        e = eps[:, start:stop]
        z = mu[:, None, :] + std * e  # (b, c, d)
        log_q = log_q_const - 0.5 * (e * e).sum(dim=2)
        log_lik = model.decoder_log_prob(xb, z)
        log_w = log_lik.double() + log_prior_fn(z).double() - log_q.double()
        return torch.cat([log_w, 2.0 * log_w])

    return block


def _log_prior_fn(prior: Prior, index: torch.Tensor | None):
    """z (b, c, d) -> log p(z) (b, c): exact, or the bound over the components ``index`` (b, K)."""
    if index is None:
        return lambda z: prior.log_prob(z.reshape(-1, z.shape[2])).reshape(z.shape[:2])
    means, logvars = prior.means, prior.logvars
    sub_means, sub_logvars = gather_rows(means, index), gather_rows(logvars, index)  # (b, K, d)
    return lambda z: subset_mixture_logpdf(z.to(means.dtype), sub_means, sub_logvars, len(means))


def pairwise_decoder_log_prob(
    model: GenerativeModelLike, x: torch.Tensor, z: torch.Tensor
) -> torch.Tensor:
    """``out[i, s] = log p(x_i | z_s)`` for x (B, D) and SHARED z (c, d) -> (B, c).

    Uses the model's ``pairwise_log_prob`` when it has one (gae.models: a Bernoulli decoder
    decodes each z once, then ``x @ logits^T - sum softplus(logits)``; Gaussian decoders use
    ``gae.ops.pairwise_diag_gaussian_logpdf``); otherwise falls back on the contract's
    ``decoder_log_prob`` with z broadcast to every row.
    """
    fast = getattr(model, "pairwise_log_prob", None)
    if fast is not None:
        return fast(x, z)
    return model.decoder_log_prob(x, z[None].expand(x.shape[0], *z.shape))


@torch.no_grad()
def prior_log_likelihood(
    model: GenerativeModelLike, x: torch.Tensor, n_samples: int, *, chunk_size: int = 4096,
    seed: int = 0, progress: bool = False,
) -> LoglikEstimate:  # fmt: skip
    """Estimator (b), the slides': one shared set of S prior draws, logmeanexp log p(x|z_s)."""
    n = x.shape[0]
    generator = torch.Generator().manual_seed(int(seed))
    z_all = model.prior.sample(n_samples, generator=generator).to(x.device)  # (S, d)
    fast = getattr(model, "pairwise_log_prob", None) is not None
    cols = max(1, min(n_samples, chunk_size))
    # the fast path decodes each z once whatever the rows; the fallback decodes rows x cols
    rows = max(1, min(n, PAIRWISE_ELEMENTS // cols)) if fast else max(1, chunk_size // cols)
    out = [torch.empty(n, dtype=torch.float64) for _ in range(3)]
    bar = tqdm(total=n, unit="img", desc="loglik: prior", disable=not progress)
    for r0 in range(0, n, rows):
        xb = x[r0 : r0 + rows]
        b = xb.shape[0]

        def block(start: int, stop: int, xb=xb):
            log_lik = pairwise_decoder_log_prob(model, xb, z_all[start:stop]).double()
            return torch.cat([log_lik, 2.0 * log_lik])

        _reduce_block(block, n_samples, cols, out, r0, b)
        bar.update(b)
    bar.close()
    return LoglikEstimate(out[0], out[1], out[2], n_samples)


def _without_indices(subset: dict[str, Any]) -> dict[str, Any]:
    """The subset record for the JSON: its indices live in loglik_images.npz (``test_index``)."""
    out = {k: v for k, v in subset.items() if k != "indices"}
    if "indices" in subset:
        out["indices_in"] = f"{PER_IMAGE_FILE}: test_index"
    return out


def _data_variant(cfg: Config, dataset: str) -> str | None:
    """The prepared data's variant (e.g. ``larochelle-amat``, ``bernoulli-seed0``) from its JSON."""
    from gae.config import prepared_path
    from gae.io import read_json

    path = prepared_path(cfg, dataset, "json")
    meta = read_json(path) if path.is_file() else {}
    return meta.get("variant") if isinstance(meta, dict) else None


def _prior_note(model: GenerativeModelLike, k: int | None) -> str:
    """How log p(z) was computed, for the JSON: exact, or the certified K-nearest lower bound."""
    mixture = hasattr(model.prior, "n_components")
    if k is None:
        detail = " (GAE: mixture over all n training encodings)" if mixture else ""
        return "log p(z) exact" + detail
    return (
        f"log p(z) LOWER BOUND: the {k} of n = {model.prior.n_components} mixture components "
        "nearest each test image (by log q(mu(x)|x_j)), weights 1/n: the estimate can only be "
        "lower than with the exact prior"
    )


def _estimators(
    imp: LoglikEstimate, pri: LoglikEstimate, note: str, k: int | None
) -> dict[str, Any]:
    """Both estimators' summaries with the protocol each followed."""
    return {
        "importance": {
            **imp.summary(),
            "n_importance": imp.n_samples,
            "proposal": "encoder q(z|x)",
            "log_prior": note,
            "prior_components": k,
            "draws": "independent per test image, generator seeded by (seed, its row in "
            "the test file)",
        },
        "prior": {
            **pri.summary(),
            "n_prior": pri.n_samples,
            "draws": "one set of n_prior prior samples shared by every test image",
        },
    }


def _save_per_image(
    path: Path, test_index: np.ndarray, imp: LoglikEstimate, pri: LoglikEstimate
) -> None:
    """Per-image values: paired comparisons between runs scored on the same test images."""
    from gae.io import atomic_save_npz

    atomic_save_npz(
        path,
        test_index=test_index,
        importance_log_px=imp.log_px.numpy(),
        importance_mc_se=imp.mc_se.numpy(),
        importance_ess=imp.ess.numpy(),
        prior_log_px=pri.log_px.numpy(),
    )


def loglik_run(cfg: Config, run: str, model_file: Path | None = None) -> Path:
    """``gae loglik RUN``: results/runs/{run}/loglik.json and its per-image loglik_images.npz.

    ``model_file`` (``--model``) scores another model.pt of this run, e.g. a study row that
    re-scores an earlier row's models with another estimator; its path and sha256 are recorded.
    """
    from gae.config import run_dir, run_spec
    from gae.data.prepare import load_prepared
    from gae.io import atomic_write_json, file_sha256
    from gae.run_model import load_run_model

    spec = run_spec(cfg, run)
    settings = cfg.evaluation.loglik
    device = resolve_device(cfg)
    own_file = run_dir(cfg, run) / MODEL_FILE
    model_path = require_file(model_file or own_file, f"gae train {run}")
    model = load_run_model(cfg, run, model_path, device=str(device))
    data = load_prepared(cfg, spec.dataset)
    x_test, test_index, subset = eval_rows(
        cfg, data, "test", settings.n_test, "evaluation.loglik.n_test"
    )
    x = torch.as_tensor(x_test, dtype=torch.float32, device=device)
    chunk = int(settings.chunk_size)
    seed = int(cfg.seed)
    k = settings.prior_components  # concerns exemplar-mixture (GAE) priors only
    mixture = hasattr(model.prior, "n_components")
    k = _truncation(model, int(k)) if mixture and k is not None else None
    imp = importance_log_likelihood(
        model,
        x,
        int(settings.n_importance),
        chunk,
        seed,
        progress=True,
        prior_components=k,
        image_ids=test_index,
    )
    pri = prior_log_likelihood(
        model, x, int(settings.n_prior), chunk_size=chunk, seed=seed + 1, progress=True
    )
    result = {
        "run": run,
        "dataset": spec.dataset,
        "n_test": int(x.shape[0]),
        "seed": seed,
        "data_variant": _data_variant(cfg, spec.dataset),
        "test_images": _without_indices(subset),
        "units": "nats per image, mean test log p(x); sem = std(ddof=1)/sqrt(n_test)",
        "estimators": _estimators(imp, pri, _prior_note(model, k), k),
    }
    if model_file is not None:
        result["model"] = {"path": str(model_file), "sha256": file_sha256(model_file)}
    out = run_dir(cfg, run) / LOGLIK_FILE
    _save_per_image(run_dir(cfg, run) / PER_IMAGE_FILE, test_index, imp, pri)
    atomic_write_json(out, result)
    est = result["estimators"]
    log.info(
        "loglik %s: importance %.2f +- %.2f, prior %.2f +- %.2f nats -> %s",
        run,
        est["importance"]["mean"],
        est["importance"]["sem"],
        est["prior"]["mean"],
        est["prior"]["sem"],
        out,
    )
    return out
