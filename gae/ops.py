"""Pairwise Gaussian log-densities as matrix products, and streaming log-sum-exp over chunks.

These kernels serve the exemplar-mixture prior, the GAE E-step and the Parzen window alike.
They never build an n x m x d tensor: the squared Mahalanobis distance between rows ``x_i`` and
components ``(mu_j, var_j)`` expands into matrix products,

    sum_k (x_ik - mu_jk)^2 / var_jk
        = (x^2) @ (1/var)^T  -  2 x @ (mu/var)^T  +  sum_k mu_jk^2 / var_jk,

stacked into ONE product of [x^2, x, 1] with [-1/(2 var), mu/var, log-normaliser - ...] that gives
the log-density directly (one pass over the n x m output instead of five),
and the log-sum-exp over components is accumulated chunk by chunk with a running maximum, so
memory is O(n * chunk) whatever m is.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

LOG_2PI = math.log(2.0 * math.pi)
EXP_FLOOR = -80.0
# log-densities evaluated at once by the mixture kernels: 2^21 (8 MB of float32) fits a cache
BLOCK_ENTRIES = 1 << 21


def pairwise_diag_gaussian_logpdf(
    x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    """``out[..., i, j] = log N(x_i; mean_j, diag(exp(logvar_j)))``.

    x (..., n, d), mean/logvar (..., m, d) -> (..., n, m); leading dimensions broadcast, so a
    batch of images can each meet its own set of components (batched matrix products).
    """
    precision = torch.exp(-logvar)  # (..., m, d)
    log_norm = -0.5 * (logvar.sum(dim=-1) + x.shape[-1] * LOG_2PI)  # (..., m)
    # one matrix product yields the log-density: [x^2, x, 1] . [-p/2, mu p, log_norm - mu^2 p/2]
    offset = log_norm - 0.5 * (mean * mean * precision).sum(dim=-1)
    lhs = torch.cat([x * x, x, torch.ones_like(x[..., :1])], dim=-1)
    rhs = torch.cat([-0.5 * precision, mean * precision, offset[..., None]], dim=-1)
    # rounding may push a point at a component's mean a hair above its peak: cap at the peak
    return torch.minimum(lhs @ rhs.mT, log_norm[..., None, :])


def pairwise_isotropic_gaussian_logpdf(
    x: torch.Tensor, mean: torch.Tensor, sigma: float, mean_sq_norm: torch.Tensor | None = None
) -> torch.Tensor:
    """``out[i, j] = log N(x_i; mean_j, sigma^2 I)``; the Parzen-window kernel.

    ``mean_sq_norm`` (the row norms of ``mean``) may be passed when it is reused across calls.
    """
    if mean_sq_norm is None:
        mean_sq_norm = (mean * mean).sum(dim=1)
    sq_dist = (x * x).sum(dim=1, keepdim=True) - 2.0 * (x @ mean.T) + mean_sq_norm
    d = x.shape[1]
    return -0.5 * sq_dist.clamp_min(0.0) / sigma**2 - d * (math.log(sigma) + 0.5 * LOG_2PI)


def streaming_logsumexp(
    block_fn: Callable[[int, int], torch.Tensor],
    n_columns: int,
    chunk_size: int,
    n_rows: int | None = None,
    overwrite_blocks: bool = False,
) -> torch.Tensor:
    """``logsumexp`` over all columns of a virtual (n, n_columns) matrix, one block at a time.

    ``block_fn(start, stop)`` returns columns ``start:stop`` as an (n, stop - start) tensor.
    A running maximum keeps the sum finite whatever the magnitudes; rows whose every entry is
    ``-inf`` come out as ``-inf``. ``overwrite_blocks``: each block is a fresh tensor that may
    be overwritten; without autograd the shift, floor and ``exp`` then run in place on it, one
    pass of memory instead of three (the same values).
    """
    if n_columns < 1:
        raise ValueError("streaming_logsumexp needs at least one column")
    running_max: torch.Tensor | None = None
    running_sum: torch.Tensor | None = None
    for start in range(0, n_columns, chunk_size):
        block = block_fn(start, min(start + chunk_size, n_columns))
        block_max = block.amax(dim=1)
        new_max = block_max if running_max is None else torch.maximum(running_max, block_max)
        shift = torch.where(torch.isfinite(new_max), new_max, 0.0)
        if overwrite_blocks and not block.requires_grad:
            block_sum = block.sub_(shift[:, None]).clamp_min_(EXP_FLOOR).exp_().sum(dim=1)
        else:
            block_sum = _exp_floored(block - shift[:, None]).sum(dim=1)
        if running_sum is None:
            running_sum = block_sum
        else:
            running_sum = running_sum * _exp_floored(running_max - shift) + block_sum
        running_max = new_max
    shift = torch.where(torch.isfinite(running_max), running_max, 0.0)
    out = torch.log(running_sum) + shift
    # a row whose maximum is -inf has only -inf entries; the floor must not make it finite
    return torch.where(torch.isneginf(running_max), running_max, out)


def _exp_floored(shifted: torch.Tensor) -> torch.Tensor:
    """``exp`` of arguments <= 0, floored at EXP_FLOOR.

    Terms below e^-80 (1.8e-35) relative to the running maximum cannot change a float64 sum
    of up to 1e15 terms, while ``exp`` of very negative arguments takes a slow underflow path
    (about 10x slower on this CPU), which dominates the mixture prior's cost.
    """
    return torch.exp(shifted.clamp_min(EXP_FLOOR))


def _block_rows(chunk_size: int, m: int) -> int:
    """Rows per block of the mixture kernels: blocks of about ``BLOCK_ENTRIES`` log-densities
    over columns of ``chunk_size`` of the ``m`` components."""
    return max(1, BLOCK_ENTRIES // max(1, min(chunk_size, m)))


def mixture_logpdf(
    x: torch.Tensor,
    means: torch.Tensor,
    logvars: torch.Tensor,
    chunk_size: int = 4096,
) -> torch.Tensor:
    """``log (1/m) sum_j N(x_i; means_j, diag exp(logvars_j))`` for each row of ``x``.

    Equal weights (the GAE prior p(z) = (1/n) sum_j q(z|x_j)); chunked over components, and
    over rows so that a block of log-densities stays near ``BLOCK_ENTRIES`` (cache-sized: a
    4,096 x 4,096 block spent most of its time moving memory, 2-3x slower).
    """
    m = means.shape[0]
    rows = _block_rows(chunk_size, m)

    def row_block(xr: torch.Tensor) -> torch.Tensor:
        def block(start: int, stop: int) -> torch.Tensor:
            return pairwise_diag_gaussian_logpdf(xr, means[start:stop], logvars[start:stop])

        return streaming_logsumexp(block, m, chunk_size, overwrite_blocks=True)

    return chunked_rows(row_block, x, rows) - math.log(m)


def shared_variance_mixture_logpdf(
    x: torch.Tensor, means: torch.Tensor, logvar: torch.Tensor, chunk_size: int = 4096
) -> torch.Tensor:
    """``mixture_logpdf`` when every component has the same diagonal variance ``exp(logvar)``
    (d,): the default GAE's unit variance, or one learned shared one.

    In coordinates scaled by exp(-logvar / 2) each log-density is
    x'.mu'_j - |mu'_j|^2 / 2 - |x'|^2 / 2 plus one constant. The row's -|x'|^2 / 2 and the
    constant leave the log-sum-exp, so a block is ONE d-wide matrix product with a bias (no
    other pass over it; the general kernel's product is 2d + 1 wide). A mixture of equal-weight
    components cannot exceed their common peak: the result is capped there, as the general
    kernel caps each component. Equal to ``mixture_logpdf`` up to float rounding
    (tests/test_ops.py); the GAE's validation bound and exact-prior log-likelihood.
    """
    m, d = means.shape
    scale = torch.exp(-0.5 * logvar).to(means.dtype)
    scaled = means * scale
    half_sq = -0.5 * (scaled * scaled).sum(dim=1)[None, :]
    peak = -0.5 * float(logvar.sum() + d * LOG_2PI)
    rows = _block_rows(chunk_size, m)

    def row_block(xr: torch.Tensor) -> torch.Tensor:
        xs = xr * scale

        def block(start: int, stop: int) -> torch.Tensor:
            return torch.addmm(half_sq[:, start:stop], xs, scaled[start:stop].T)

        lse = streaming_logsumexp(block, m, chunk_size, overwrite_blocks=True)
        return lse - 0.5 * (xs * xs).sum(dim=1)

    out = chunked_rows(row_block, x, rows) + (peak - math.log(m))
    return torch.minimum(out, torch.full_like(out, peak))


def subset_mixture_logpdf(
    z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor, n_total: int
) -> torch.Tensor:
    """``log (1/n_total) sum_{j in subset_b} N(z_bs; means_bj, diag exp(logvars_bj))``, (B, S).

    z (B, S, d); means/logvars (B, k, d): each row b meets its own k components out of a
    mixture of ``n_total`` equal-weight ones. The omitted components are positive terms, so this
    is a LOWER bound on the full mixture's log-density, exact when the subset is all of it.
    """
    return torch.logsumexp(pairwise_diag_gaussian_logpdf(z, means, logvars), dim=-1) - math.log(
        n_total
    )


def shared_variance_subset_logpdf(
    z: torch.Tensor, means: torch.Tensor, logvar: torch.Tensor, n_total: int
) -> torch.Tensor:
    """``subset_mixture_logpdf`` when every component has the same diagonal variance
    ``exp(logvar)`` (d,): the default GAE's unit variance, or a learned shared one (its
    gradient flows through ``logvar``). (B, S).

    The training step's counterpart of ``shared_variance_mixture_logpdf``: in coordinates
    scaled by exp(-logvar / 2), row b's log-densities are z'.mu'_j - |mu'_j|^2 / 2 - |z'|^2 / 2
    plus one constant, so the (B, S, k) block is ONE batched d-wide product with a bias
    (``baddbmm``) and the row's -|z'|^2 / 2 and the constant leave the log-sum-exp. The general
    kernel's product is 2d + 1 wide, and it builds and differentiates the stacked operands and
    the precisions: 3.8 ms against 1.1 ms forward and backward for a training step's
    100 x 4 x 32 x 50 on one CPU thread. Capped at the components' common peak, as
    ``shared_variance_mixture_logpdf``. Equal to ``subset_mixture_logpdf`` up to float rounding
    (tests/test_ops.py).
    """
    scale = torch.exp(-0.5 * logvar)
    zs = z * scale
    ms = means * scale
    half_sq = -0.5 * (ms * ms).sum(dim=-1)  # (B, k)
    dots = torch.baddbmm(half_sq[:, None, :], zs, ms.mT)  # (B, S, k)
    peak = -0.5 * (logvar.sum() + z.shape[-1] * LOG_2PI)
    out = torch.logsumexp(dots, dim=-1) - 0.5 * (zs * zs).sum(dim=-1) + (peak - math.log(n_total))
    return torch.minimum(out, peak)


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for an integer ``index`` of any shape: rows of ``table`` (n, ...) ->
    (*index.shape, ...). The same values as advanced indexing, through ``index_select``, which
    is 3-5x faster on the CPU for a training step's gathers (a minibatch of images, each
    image's k cached neighbour codes; benchmarks/bench_training.py measures the steps)."""
    rows = table.index_select(0, index.reshape(-1))
    return rows.view(*index.shape, *table.shape[1:])


def chunked_rows(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """Apply a row-wise ``fn`` to ``x`` in row chunks and concatenate (bounds peak memory)."""
    return torch.cat([fn(x[i : i + chunk_size]) for i in range(0, x.shape[0], chunk_size)])
