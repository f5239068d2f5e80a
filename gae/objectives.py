"""Training objectives: the VAE ELBO and the GAE's Monte-Carlo EM objective with regulariser R
(and the VampPrior baseline's ELBO, ``vamp_objective``).

GAE (docs/method.md has the derivation). The marginal likelihood of a training image is

    p(x_i) = (1/n) sum_j int p(x_i|z) q(z|x_j) dz,

a mixture over the n training exemplars. Per minibatch of B images the candidates j are the
minibatch's own images, each with ``n_z`` reparameterised draws z_js ~ q(z|x_j). To keep the
estimate of (1/n) sum_j ... consistent, the self term j = i carries its true weight 1/n and the
B - 1 others stand in for the n - 1 other exemplars, weight (n - 1) / (n (B - 1)) each:

    est_i = logsumexp_{j,s} [ log w_ij - log n_z + log p(x_i|z_js) ].

E-step: responsibilities r_ijs = softmax_{j,s}(...) (detached). M-step: a gradient step on
sum r_ijs log p(x_i|z_js) - R_i. Since d/dtheta logsumexp_k a_k = sum_k softmax(a)_k da_k/dtheta,
this has exactly the gradient of est_i - R_i with reparameterised z (tests check it).

R_i = lambda_mu sum_k mu_ik^2 + lambda_sigma sum_k (sigma_ik^2 - 1 - log sigma_ik^2) >= 0 is
SUBTRACTED from the maximised objective (the slides print lambda_1 sum mu^2 added, which would
reward large means; see docs/method.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gae.models import GenerativeModel
from gae.ops import (
    LOG_2PI,
    chunked_rows,
    pairwise_diag_gaussian_logpdf,
    shared_variance_subset_logpdf,
    subset_mixture_logpdf,
)


@dataclass
class ObjectiveTerms:
    """Per-example terms of one minibatch; ``surrogate`` is what the optimiser maximises.

    ``objective`` is the reported value (the estimate of the maximised objective); the two
    agree in gradient. ``parts`` holds per-example diagnostics for the training log.
    """

    surrogate: torch.Tensor  # (B,)
    objective: torch.Tensor  # (B,)
    parts: dict[str, torch.Tensor]


def regulariser(
    mu: torch.Tensor, logvar: torch.Tensor, lambda_mu: float, lambda_sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(R_mu, R_sigma), each (B,): the two non-negative penalties of R."""
    r_mu = lambda_mu * (mu * mu).sum(dim=-1)
    r_sigma = lambda_sigma * (torch.exp(logvar) - 1.0 - logvar).sum(dim=-1)
    return r_mu, r_sigma


def reparameterise(
    mu: torch.Tensor, logvar: torch.Tensor, n_z: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z (B, n_z, d) = mu + sigma * eps."""
    return posterior_draws(mu, logvar, n_z, generator)[0]


def posterior_draws(
    mu: torch.Tensor, logvar: torch.Tensor, n_z: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """z (B, n_z, d) = mu + sigma * eps (``reparameterise``'s draws), and log q(z|x) (B, n_z).

    At its own draw, (z - mu)^2 / sigma^2 is eps^2, so log q = -(|eps|^2 + sum logvar
    + d log 2 pi) / 2: the value of ``diag_gaussian_logpdf(z, mu, logvar)`` and, through z, the
    same gradient (the path through z and the direct one cancel for mu and sum to -1/2 per
    log-variance), without its subtraction, exp and division on (B, n_z, d) and their
    backward: about 1 ms of a 20 ms CPU training step (tests/test_objectives.py)."""
    eps = torch.randn(
        mu.shape[0], n_z, mu.shape[1], generator=generator, device=mu.device, dtype=mu.dtype
    )
    z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps
    log_q = -0.5 * ((eps * eps).sum(dim=-1) + (logvar.sum(dim=-1) + mu.shape[1] * LOG_2PI)[:, None])
    return z, log_q


def candidate_log_weights(
    batch_size: int, n_train: int, n_z: int, leave_one_out: bool, device=None, dtype=None
) -> torch.Tensor:
    """log w (B, B * n_z): row i's weight on candidate column (j, s), j = column // n_z.

    Consistent in-batch weights: self 1/n, others (n - 1)/(n (B - 1)); leave-one-out: self
    excluded, others 1/(B - 1). Each of the n_z draws of a candidate shares its weight.
    """
    b = batch_size
    if b < 2 and (leave_one_out or n_train > 1):
        raise ValueError("the in-batch GAE objective needs at least 2 images per minibatch")
    eye = torch.eye(b, dtype=torch.bool, device=device)
    if leave_one_out:
        self_w, other_w = -math.inf, -math.log(b - 1)
    else:
        self_w = -math.log(n_train)
        other_w = math.log(n_train - 1) - math.log(n_train) - math.log(b - 1) if b > 1 else 0.0
    log_w = torch.where(
        eye,
        torch.tensor(self_w, dtype=dtype, device=device),
        torch.tensor(other_w, dtype=dtype, device=device),
    )
    return log_w.repeat_interleave(n_z, dim=1) - math.log(n_z)


def _em_step(
    log_w: torch.Tensor,
    loglik: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    lambda_mu: float,
    lambda_sigma: float,
) -> tuple[ObjectiveTerms, torch.Tensor]:
    """E-step responsibilities over the candidate columns and the M-step surrogate.

    est_i = logsumexp_c(log w_ic + log p(x_i|z_c)); resp = softmax (detached). The surrogate
    sum_c resp_ic log p(x_i|z_c) plus the constant E_resp[log w] + H(resp) EQUALS est_i at this
    point and has its gradient; -inf weights (leave-one-out) carry zero responsibility.
    """
    scores = log_w + loglik
    estimate = torch.logsumexp(scores, dim=1)  # (B,)
    resp = torch.softmax(scores, dim=1).detach()
    finite = torch.isfinite(log_w)
    expected_loglik = (resp * torch.where(finite, loglik, torch.zeros_like(loglik))).sum(dim=1)
    log_w_finite = torch.where(finite, log_w, torch.zeros_like(log_w))
    constant = (resp * log_w_finite).sum(dim=1) - torch.special.xlogy(resp, resp).sum(dim=1)
    r_mu, r_sigma = regulariser(mu, logvar, lambda_mu, lambda_sigma)
    penalty = r_mu + r_sigma
    terms = ObjectiveTerms(
        surrogate=expected_loglik + constant - penalty,
        objective=estimate.detach() - penalty.detach(),
        parts={
            "loglik_term": estimate.detach(),
            "r_mu": r_mu.detach(),
            "r_sigma": r_sigma.detach(),
        },
    )
    return terms, resp


def gae_objective(
    model: GenerativeModel,
    x: torch.Tensor,
    n_train: int,
    n_z: int = 1,
    leave_one_out: bool = False,
    lambda_mu: float = 0.0,
    lambda_sigma: float = 0.0,
    generator: torch.Generator | None = None,
) -> ObjectiveTerms:
    """One minibatch of the GAE's Monte-Carlo EM with the minibatch as candidate exemplars."""
    mu, logvar = model.encode(x)
    z = reparameterise(mu, logvar, n_z, generator)  # (B, n_z, d)
    loglik = model.pairwise_log_prob(x, z.reshape(-1, z.shape[-1]))  # (B, B * n_z)
    log_w = candidate_log_weights(
        x.shape[0], n_train, n_z, leave_one_out, device=x.device, dtype=loglik.dtype
    )
    terms, resp = _em_step(log_w, loglik, mu, logvar, lambda_mu, lambda_sigma)
    terms.parts["self_responsibility"] = (
        resp.reshape(x.shape[0], x.shape[0], n_z).sum(dim=2).diagonal()
    )
    return terms


@torch.no_grad()
def nearest_exemplars(means: torch.Tensor, k: int, chunk_size: int = 2048) -> torch.Tensor:
    """(n, k) indices of each row's k nearest OTHER rows of ``means`` (Euclidean), by chunked
    matrix products and top-k; never an n x n x d tensor, at most chunk x n distances at once."""
    n = means.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"need 1 <= k <= n - 1 nearest exemplars, got k={k}, n={n}")
    sq = (means * means).sum(dim=1)[None, :]
    out = []
    for start in range(0, n, chunk_size):
        rows = means[start : start + chunk_size]
        # |m_j|^2 - 2 r.m_j in one fused pass; the row's own |r|^2 cannot change its ranking
        dist = torch.addmm(sq, rows, means.T, alpha=-2.0)
        own = torch.arange(start, start + rows.shape[0], device=means.device)
        dist[torch.arange(rows.shape[0], device=means.device), own] = math.inf
        out.append(torch.topk(dist, k, dim=1, largest=False).indices)
    return torch.cat(out)


def ivf_nearest_exemplars(
    means: torch.Tensor, k: int, n_lists: int | None = None, n_probe: int = 16, seed: int = 0
) -> torch.Tensor:
    """(n, k) indices of each row's k nearest OTHER rows of ``means``, searched in an inverted
    file index (FAISS ``IndexIVFFlat``): the codes are split into ``n_lists`` k-means cells
    and each row is compared, with exact distances, only with the rows of its ``n_probe``
    nearest cells, about n * n_probe / n_lists of them instead of all n.

    Approximate: a true neighbour in an unprobed cell is missed (the recall is measured by
    ``benchmarks/bench_neighbours.py``). Any list of other exemplars keeps the GAE's bound a
    bound, so a missed neighbour loosens it slightly and never invalidates it (docs/method.md,
    "Neighbour refresh"). Falls back to the exact ``nearest_exemplars`` where the probed cells
    hold fewer than k + 1 rows. CPU only (FAISS's CPU index); the codes are copied to it.
    """
    import faiss  # optional: only the ivf search needs it (pip install faiss-cpu)

    n, d = means.shape
    if not 1 <= k <= n - 1:
        raise ValueError(f"need 1 <= k <= n - 1 nearest exemplars, got k={k}, n={n}")
    n_lists = n_lists or max(1, int(2 * math.sqrt(n)))
    if n < 39 * n_lists or n_probe >= n_lists:  # too few rows to train the cells: all pairs
        return nearest_exemplars(means, k)
    codes = means.detach().to("cpu", torch.float32).contiguous().numpy()
    faiss.omp_set_num_threads(torch.get_num_threads())
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, n_lists)
    index.cp.seed = seed
    index.cp.niter = 10
    index.train(codes)
    index.add(codes)
    index.nprobe = n_probe
    found = torch.from_numpy(index.search(codes, k + 1)[1])  # (n, k + 1), nearest first
    if bool((found < 0).any()):
        return nearest_exemplars(means, k)
    own = found == torch.arange(n)[:, None]
    # drop the row itself (found first, at distance 0) or, if a duplicate code took its place,
    # the farthest of the k + 1
    drop = torch.where(own.any(dim=1), own.int().argmax(dim=1), k)
    keep = torch.ones_like(found, dtype=torch.bool)
    keep[torch.arange(n), drop] = False
    return found[keep].reshape(n, k).to(means.device)


TRAIN_ROWS_PER_CELL = 64  # k-means sample for cell_nearest_exemplars (FAISS warns below 39)


def _kmeans_cells(
    codes: torch.Tensor, n_cells: int, iterations: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means by matrix products: (centroids (n_cells, d), each row's cell (n,)).

    Trained on a seeded sample of ``TRAIN_ROWS_PER_CELL`` rows per cell (as FAISS samples),
    from distinct random rows; an emptied cell keeps its centroid. Then every row is assigned.
    """
    n = codes.shape[0]
    picked = torch.randperm(n, generator=generator)[: min(n, TRAIN_ROWS_PER_CELL * n_cells)]
    sample = codes.index_select(0, picked.to(codes.device))
    centroids = sample[:n_cells].clone()
    for _ in range(iterations):
        cells = _nearest_centroid(sample, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, cells, sample)
        counts = torch.bincount(cells, minlength=n_cells)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None].to(codes.dtype)
    return centroids, _nearest_centroid(codes, centroids)


def _nearest_centroid(codes: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Each row's nearest centroid, (n,), by chunked matrix products."""
    c_sq = (centroids * centroids).sum(dim=1)[None, :]
    return chunked_rows(
        lambda rows: torch.addmm(c_sq, rows, centroids.T, alpha=-2.0).argmin(dim=1), codes, 4096
    )


def _k_smallest(dist: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices of each row's k smallest entries, nearest first. NumPy's introselect for
    short rows: torch.topk costs ~35 us per row of ~2,000 on this CPU, 4-5x argpartition."""
    values = dist.numpy()
    part = np.argpartition(values, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(values, part, axis=1), axis=1, kind="stable")
    return torch.from_numpy(np.take_along_axis(part, order, axis=1))


def cell_nearest_exemplars(
    means: torch.Tensor,
    k: int,
    n_cells: int | None = None,
    n_probe: int = 32,
    seed: int = 0,
    iterations: int = 5,
) -> torch.Tensor:
    """(n, k) indices of each row's k nearest OTHER rows of ``means``, searched cell by cell.

    The codes are split into ``n_cells`` k-means cells (2 sqrt(n) by default, Lloyd's
    algorithm by matrix products, seeded). All rows of one cell are compared at once, by one
    matrix product, with every row of the ``n_probe`` cells whose centroids are nearest that
    cell's centroid (its own first): about n * n_probe / n_cells candidates each instead of
    all n. The FAISS inverted file (``ivf_nearest_exemplars``) probes the cells nearest each
    row instead, which finds a few more true neighbours but scans row by row (the recall and
    seconds of both: ``benchmarks/bench_neighbours.py``). Approximate like it: any list of
    other exemplars keeps the GAE's bound a bound. CPU only. Below 39 rows per cell (n < ~6,000)
    it is the exact search; a cell whose probed cells hold fewer than k + 1 rows is searched
    against all rows.
    """
    n = means.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"need 1 <= k <= n - 1 nearest exemplars, got k={k}, n={n}")
    n_cells = n_cells or max(1, int(2 * math.sqrt(n)))
    if n_probe >= n_cells or n < 39 * n_cells:  # too few rows for the cells (as ivf)
        return nearest_exemplars(means, k)
    codes = means.detach().to("cpu", torch.float32).contiguous()
    generator = torch.Generator().manual_seed(seed)
    centroids, cells = _kmeans_cells(codes, n_cells, iterations, generator)
    c_sq = (centroids * centroids).sum(dim=1)[None, :]
    between = torch.addmm(c_sq, centroids, centroids.T, alpha=-2.0)
    between.fill_diagonal_(-math.inf)  # a cell probes itself first
    probes = torch.topk(between, n_probe, dim=1, largest=False).indices.tolist()
    order = torch.argsort(cells, stable=True)
    counts = torch.bincount(cells, minlength=n_cells).tolist()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
    sq = (codes * codes).sum(dim=1)
    found = torch.empty(n, k, dtype=torch.long)
    for cell, size in enumerate(counts):
        if size == 0:
            continue
        members = [order[starts[c] : starts[c] + counts[c]] for c in probes[cell]]
        own = members[0]
        candidates = torch.cat(members)  # the cell's own rows first
        itself = torch.arange(size)  # each row's own column
        if candidates.shape[0] <= k:  # too few: all rows
            candidates, itself = torch.arange(n), own
        rows = codes.index_select(0, candidates)
        queries = codes.index_select(0, own)
        dist = torch.addmm(sq.index_select(0, candidates)[None, :], queries, rows.T, alpha=-2.0)
        dist[torch.arange(size), itself] = math.inf
        found[own] = candidates[_k_smallest(dist, k)]
    return found.to(means.device)


def gae_knn_objective(
    model: GenerativeModel,
    x: torch.Tensor,
    x_neighbours: torch.Tensor,
    neighbour_in_batch: torch.Tensor,
    n_train: int,
    *,
    generator: torch.Generator | None = None,
    n_z: int = 1,
    leave_one_out: bool = False,
    lambda_mu: float = 0.0,
    lambda_sigma: float = 0.0,
) -> ObjectiveTerms:
    """GAE Monte-Carlo EM with each image's k nearest exemplars as extra candidates.

    A stratified estimate of (1/n) sum_j f_ij, f_ij = int p(x_i|z) q(z|x_j) dz: the self term and
    the k neighbours N_i are summed exactly (weight 1/n each); the remaining n - 1 - k exemplars
    are estimated from the m_i other minibatch images NOT in N_i, weight (n - 1 - k)/(n m_i)
    each (a uniform sample of that remainder, hence unbiased). Leave-one-out drops the self term
    and divides by n - 1 instead of n.

    x (B, D); x_neighbours (B, k, D) the images of N_i; neighbour_in_batch (B, B) bool, True
    where minibatch image j is one of i's neighbours (excluded from the remainder sample). The
    options (as for ``gae_objective``) are keyword-only: after four tensors, a positional one
    would be easy to misplace.
    """
    b, k = x.shape[0], x_neighbours.shape[1]
    n_others = n_train - 1 - k
    if n_others < 0:
        raise ValueError(f"k = {k} neighbours need at least k + 1 training images, n = {n_train}")
    mu, logvar = model.encode(x)
    z = reparameterise(mu, logvar, n_z, generator)  # (B, n_z, d)
    batch_loglik = model.pairwise_log_prob(x, z.reshape(-1, z.shape[-1]))  # (B, B n_z)
    mu_nb, logvar_nb = model.encode(x_neighbours.reshape(b * k, -1))
    z_nb = reparameterise(mu_nb, logvar_nb, n_z, generator).reshape(b, k * n_z, -1)
    nb_loglik = model.decoder_log_prob(x, z_nb)  # (B, k n_z): only the pairs (i, N_i)

    total = n_train - 1 if leave_one_out else n_train
    eye = torch.eye(b, dtype=torch.bool, device=x.device)
    remainder = ~eye & ~neighbour_in_batch
    m = remainder.sum(dim=1, keepdim=True)  # (B, 1)
    log_rest = torch.log(torch.tensor(float(max(n_others, 0)), device=x.device)) - torch.log(
        (total * m).to(batch_loglik.dtype)
    )
    log_w = torch.where(remainder, log_rest, torch.full_like(log_rest, -math.inf))
    if not leave_one_out:
        log_w = torch.where(eye, torch.full_like(log_w, -math.log(total)), log_w)
    log_w = log_w.to(batch_loglik.dtype).repeat_interleave(n_z, dim=1) - math.log(n_z)
    log_w_nb = torch.full_like(nb_loglik, -math.log(total) - math.log(n_z))
    log_w = torch.cat([log_w, log_w_nb], dim=1)
    loglik = torch.cat([batch_loglik, nb_loglik], dim=1)

    terms, resp = _em_step(log_w, loglik, mu, logvar, lambda_mu, lambda_sigma)
    terms.parts["self_responsibility"] = resp[:, : b * n_z].reshape(b, b, n_z).sum(dim=2).diagonal()
    terms.parts["neighbour_responsibility"] = resp[:, b * n_z :].sum(dim=1)
    return terms


def batch_exemplar_log_prior(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    """Leave-one-out in-batch estimate of log p(z) = log (1/(n-1)) sum_{j != i} q(z|x_j), (B, S).

    z (B, S, d) are row i's draws; the components are the other minibatch encodings (with
    gradient), a uniform sample of the n - 1 other exemplars.
    """
    b, s, d = z.shape
    if b < 2:
        raise ValueError("the in-batch exemplar prior needs at least 2 images per minibatch")
    log_comp = pairwise_diag_gaussian_logpdf(z.reshape(b * s, d), mu, logvar).reshape(b, s, b)
    own = torch.eye(b, dtype=torch.bool, device=z.device)[:, None, :]
    log_comp = log_comp.masked_fill(own, -math.inf)
    return torch.logsumexp(log_comp, dim=2) - math.log(b - 1)


def neighbour_exemplar_log_prior(
    z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor, n_train: int
) -> torch.Tensor:
    """Lower bound on the leave-one-out log p(z) from each row's k nearest exemplars, (B, S).

    z (B, S, d); means/logvars (B, k, d) are the cached encodings of row i's k nearest OTHER
    training images: log (1/(n-1)) sum_{j in N_i} q(z|x_j) <= log (1/(n-1)) sum_{j != i} q(z|x_j),
    since the omitted terms are positive (``gae.ops.subset_mixture_logpdf``).
    """
    return subset_mixture_logpdf(z, means, logvars, n_train - 1)


def shared_variance_neighbour_log_prior(
    z: torch.Tensor, means: torch.Tensor, logvar: torch.Tensor, n_train: int
) -> torch.Tensor:
    """``neighbour_exemplar_log_prior`` when every component has the variance exp(logvar)
    (d,): the default GAE's unit variance, or a learned shared one. The same lower bound by the
    d-wide kernel (``gae.ops.shared_variance_subset_logpdf``), a training step's fastest."""
    return shared_variance_subset_logpdf(z, means, logvar, n_train - 1)


def gae_posterior_objective(
    model: GenerativeModel,
    x: torch.Tensor,
    log_prior: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    n_z: int = 1,
    lambda_mu: float = 0.0,
    lambda_sigma: float = 0.0,
    generator: torch.Generator | None = None,
    prior_weight: float = 1.0,
) -> ObjectiveTerms:
    """GAE by variational EM: the E-step over z uses the encoder's posterior q(z|x_i).

    For the same model p(x) = (1/n) sum_j int p(x|z) q(z|x_j) dz, Jensen's inequality with
    q(z|x_i) as the E-step distribution over z (and the exact posterior over j given z) gives

        log p(x_i) >= E_{q(z|x_i)} [log p(x_i|z) + log p(z) - log q(z|x_i)],

    with p(z) the exemplar mixture (leave-one-out in training, so that an image cannot explain
    itself). ``log_prior(z, mu, logvar)`` -> (B, S) supplies log p(z) (in-batch or nearest
    exemplars). The slides' E-step instead samples z from every candidate's q(z|x_j), a
    prior-sampling estimate whose variance grows with the spread of the exemplars.

    ``prior_weight`` (beta, warm-up) scales the KL part E[log p(z) - log q(z|x_i)] of the
    surrogate only; the logged objective is always the bound itself (beta = 1).
    """
    mu, logvar = model.encode(x)
    z, log_q = posterior_draws(mu, logvar, n_z, generator)  # (B, S, d), (B, S)
    recon = model.decoder_log_prob(x, z)  # (B, S)
    log_p = log_prior(z, mu, logvar)
    elbo = (recon + log_p - log_q).mean(dim=1)
    r_mu, r_sigma = regulariser(mu, logvar, lambda_mu, lambda_sigma)
    penalty = r_mu + r_sigma
    surrogate = elbo if prior_weight == 1.0 else (recon + prior_weight * (log_p - log_q)).mean(1)
    return ObjectiveTerms(
        surrogate=surrogate - penalty,
        objective=(elbo - penalty).detach(),
        parts={
            "recon": recon.mean(dim=1).detach(),
            "log_prior": log_p.mean(dim=1).detach(),
            "entropy": -log_q.mean(dim=1).detach(),
            "r_mu": r_mu.detach(),
            "r_sigma": r_sigma.detach(),
        },
    )


def gaussian_kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)), (B,)."""
    return 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).sum(dim=-1)


def vae_objective(
    model: GenerativeModel,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    prior_weight: float = 1.0,
    n_z: int = 1,
) -> ObjectiveTerms:
    """ELBO with N(0, I) prior: the reconstruction averaged over ``n_z`` reparameterised
    samples (the same bound, a lower-variance gradient; the GAE's ``n_z`` counterpart),
    analytic KL.

    ``prior_weight`` (beta, KL warm-up) scales the KL in the surrogate only.
    """
    mu, logvar = model.encode(x)
    z = reparameterise(mu, logvar, n_z, generator)
    recon = model.decoder_log_prob(x, z).mean(dim=1)
    return _elbo_terms(recon, gaussian_kl_standard_normal(mu, logvar), prior_weight)


def _elbo_terms(recon: torch.Tensor, kl: torch.Tensor, prior_weight: float) -> ObjectiveTerms:
    """The ELBO recon - KL, each (B,), as terms; warm-up (beta) scales the surrogate's KL only."""
    elbo = recon - kl
    return ObjectiveTerms(
        surrogate=elbo if prior_weight == 1.0 else recon - prior_weight * kl,
        objective=elbo.detach(),
        parts={"recon": recon.detach(), "kl": kl.detach()},
    )


def vamp_objective(
    model: GenerativeModel,
    x: torch.Tensor,
    *,
    n_z: int = 1,
    generator: torch.Generator | None = None,
    prior_weight: float = 1.0,
) -> ObjectiveTerms:
    """ELBO under the model's VampPrior, E_q[log p(x|z)] - E_q[log q(z|x) - log p(z)], both
    parts averaged over ``n_z`` reparameterised draws. The KL has no closed form against a
    mixture, so it is the Monte-Carlo one (as in Tomczak & Welling 2018). ``model.prior.log_prob``
    encodes the pseudo-inputs with gradient, so one step moves the encoder, the decoder and the
    pseudo-inputs. ``prior_weight`` (beta, warm-up) scales the KL in the surrogate only.
    The options are keyword-only (a newer function: no caller passes them by position).
    """
    mu, logvar = model.encode(x)
    z, log_q = posterior_draws(mu, logvar, n_z, generator)  # (B, S, d), (B, S)
    recon = model.decoder_log_prob(x, z).mean(dim=1)
    log_p = model.prior.log_prob(z.reshape(-1, z.shape[-1])).reshape(z.shape[:2])
    return _elbo_terms(recon, (log_q - log_p).mean(dim=1), prior_weight)


def diag_gaussian_logpdf(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag e^logvar) row by row (same shapes), summed over the last axis."""
    return -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + math.log(2.0 * math.pi)).sum(
        dim=-1
    )


@torch.no_grad()
def elbo_with_prior(
    model: GenerativeModel,
    x: torch.Tensor,
    prior: torch.nn.Module,
    n_z: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Monte-Carlo ELBO E_q[log p(x|z) + log p(z) - log q(z|x)] under any prior, (B,).

    The honest validation criterion for both kinds: a lower bound on log p(x) under the model's
    own prior (the GAE's: the exact mixture over ALL training encodings).
    """
    mu, logvar = model.encode(x)
    z = reparameterise(mu, logvar, n_z, generator)  # (B, S, d)
    recon = model.decoder_log_prob(x, z)  # (B, S)
    log_q = diag_gaussian_logpdf(z, mu.unsqueeze(1), logvar.unsqueeze(1))
    log_p = prior.log_prob(z.reshape(-1, z.shape[-1])).reshape(z.shape[0], n_z)
    return (recon + log_p - log_q).mean(dim=1)


def trivial_log_likelihood(
    x_train: torch.Tensor, x_valid: torch.Tensor, likelihood: str, std_min: float = 0.01
) -> float | None:
    """Mean log-likelihood (nats per image) of ``x_valid`` under the trivial model of
    ``x_train``: every pixel independent, with no latent code at all. ``bernoulli``: a product
    of Bernoullis at the per-pixel mean image (Laplace-smoothed, (sum + 1) / (n + 2), so that a
    pixel never on in training costs a finite log(n + 2) nats); ``gaussian``: a per-pixel
    Gaussian with the training mean and std (floored at ``std_min``, the decoder's own floor).
    None for any other likelihood (the closed-form test decoder).

    Why: any trained model should beat this. The training loop's divergence guard compares the
    validation bound with it (``gae.training.DIVERGENCE_MARGIN``).
    """
    train, valid = x_train.double(), x_valid.double()
    if likelihood == "bernoulli":
        p = (train.sum(dim=0) + 1.0) / (train.shape[0] + 2.0)
        loglik = valid * torch.log(p) + (1.0 - valid) * torch.log1p(-p)
    elif likelihood == "gaussian":
        mean, std = train.mean(dim=0), train.std(dim=0, correction=0).clamp_min(std_min)
        loglik = -0.5 * (((valid - mean) / std) ** 2 + math.log(2.0 * math.pi)) - torch.log(std)
    else:
        return None
    return loglik.sum(dim=1).mean().item()
