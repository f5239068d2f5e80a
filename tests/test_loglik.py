"""Test log-likelihood estimators against the closed form of a linear-Gaussian GAE / VAE."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from gae.errors import GaeError
from gae.evaluation.loglik import (
    importance_log_likelihood,
    loglik_run,
    prior_log_likelihood,
)
from gae.models import GenerativeModel, LinearGaussianDecoder
from gae.priors import ExemplarMixturePrior, StandardNormalPrior
from tests.closed_form import linear_gaussian_gae_logpdf

D, LATENT, N_COMPONENTS, NOISE = 6, 2, 25, 0.4


class LinearProposal(nn.Module):
    """q(z|x) = N(A x + c, diag exp(logvar)): a fixed linear encoder for the closed-form tests."""

    def __init__(self, a: torch.Tensor, c: torch.Tensor, logvar: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("c", c)
        self.register_buffer("logvar", logvar)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x @ self.a.T + self.c, self.logvar.expand(x.shape[0], -1)


def linear_model(prior: nn.Module, seed: int = 0) -> GenerativeModel:
    """Linear-Gaussian decoder, the given prior, and as proposal the Gaussian posterior of a
    moment-matched Gaussian prior, variances doubled (a valid, heavier-tailed proposal)."""
    torch.manual_seed(seed)
    decoder = LinearGaussianDecoder(LATENT, D, noise_std=NOISE)
    with torch.no_grad():
        decoder.bias.copy_(torch.randn(D))
    w, b = decoder.weight.detach().double(), decoder.bias.detach().double()
    if isinstance(prior, ExemplarMixturePrior):
        means, var = prior.means.double(), torch.exp(prior.logvars.double())
        m0 = means.mean(0)
        p0 = torch.cov(means.T, correction=0) + torch.diag(var.mean(0))
    else:
        m0, p0 = torch.zeros(LATENT, dtype=torch.float64), torch.eye(LATENT, dtype=torch.float64)
    p0_inv = torch.linalg.inv(p0)
    post_cov = torch.linalg.inv(w.T @ w / NOISE**2 + p0_inv)
    a = post_cov @ w.T / NOISE**2
    c = post_cov @ (p0_inv @ m0 - w.T @ b / NOISE**2)
    encoder = LinearProposal(a.float(), c.float(), torch.log(2 * torch.diag(post_cov)).float())
    model = GenerativeModel("gae", encoder, decoder, {"latent_dim": LATENT, "data_dim": D})
    model.prior = prior
    return model.eval()


def exemplar_prior(seed: int = 1, shared: bool = False) -> ExemplarMixturePrior:
    """Components with their own variances (the slides' q(z|x_j)), or one variance shared by
    all of them (prior_variance: unit / learned)."""
    g = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(N_COMPONENTS, LATENT, generator=g)
    logvars = math.log(0.05) + torch.rand(N_COMPONENTS, LATENT, generator=g)
    if shared:
        logvars = math.log(0.3) + torch.rand(LATENT, generator=g).expand(N_COMPONENTS, LATENT)
    return ExemplarMixturePrior(means, logvars)


def prior_of_kind(kind: str):
    if kind == "standard_normal":
        return StandardNormalPrior(LATENT)
    return exemplar_prior(shared=kind == "exemplar_shared")


def draw_data(model: GenerativeModel, n: int, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = model.prior.sample(n, generator=g)
    return model.decode_mean(z) + NOISE * torch.randn(n, D, generator=g)


@torch.no_grad()
def exact_logpdf(model: GenerativeModel, x: torch.Tensor) -> torch.Tensor:
    dec = model.decoder
    if isinstance(model.prior, ExemplarMixturePrior):
        means, logvars = model.prior.means, model.prior.logvars
    else:  # N(0, I): one component at 0 with unit variance, i.e. N(b, s^2 I + W W^T)
        means, logvars = torch.zeros(1, LATENT), torch.zeros(1, LATENT)
    return linear_gaussian_gae_logpdf(x, dec.weight, dec.bias, NOISE, means, logvars)


def assert_within_mc_error(estimate, exact: torch.Tensor, n_se: float = 4.0) -> None:
    """The mean over images within n_se Monte-Carlo standard errors (from the samples)."""
    n = exact.shape[0]
    diff = float((estimate.log_px - exact.detach()).mean())
    se = float(estimate.mc_se.pow(2).sum().sqrt()) / n
    assert se > 0
    assert abs(diff) < n_se * se, f"mean error {diff:.4g} vs Monte-Carlo s.e. {se:.4g}"
    per_image = (estimate.log_px - exact.detach()).abs() / estimate.mc_se
    assert float(per_image.max()) < 5.0, f"worst image off by {float(per_image.max()):.1f} s.e."


@pytest.mark.parametrize("prior_kind", ["exemplar", "exemplar_shared", "standard_normal"])
def test_importance_sampling_matches_closed_form(prior_kind):
    prior = prior_of_kind(prior_kind)
    model = linear_model(prior)
    x = draw_data(model, 60)
    exact = exact_logpdf(model, x)
    est = importance_log_likelihood(model, x, n_samples=2000, chunk_size=1500, seed=3)
    assert_within_mc_error(est, exact)
    assert float(est.mc_se.max()) < 0.1  # the comparison above is sharp, not vacuous
    assert float(est.ess.min()) > 50


@pytest.mark.parametrize("prior_kind", ["exemplar", "exemplar_shared", "standard_normal"])
def test_prior_sampling_matches_closed_form(prior_kind):
    prior = prior_of_kind(prior_kind)
    model = linear_model(prior)
    x = draw_data(model, 60)
    exact = exact_logpdf(model, x)
    est = prior_log_likelihood(model, x, n_samples=20000, chunk_size=3000, seed=4)
    assert_within_mc_error(est, exact)
    assert float(est.mc_se.max()) < 0.5


def test_prior_sampling_fallback_without_pairwise_decoder():
    """A model with only the contract's decoder_log_prob gives the same numbers."""
    model = linear_model(exemplar_prior())
    x = draw_data(model, 9)

    class ContractOnly:
        latent_dim = LATENT
        prior = model.prior
        encode = model.encode
        decoder_log_prob = model.decoder_log_prob

    fast = prior_log_likelihood(model, x, n_samples=300, chunk_size=64, seed=5)
    slow = prior_log_likelihood(ContractOnly(), x, n_samples=300, chunk_size=64, seed=5)
    torch.testing.assert_close(fast.log_px, slow.log_px, rtol=0, atol=1e-4)


def test_estimators_do_not_depend_on_chunking_or_subset():
    """Same draws whatever the chunks; in float64 so BLAS rounding of differently shaped
    float32 batches (~1e-6 relative) does not mask a real difference."""
    model = linear_model(exemplar_prior())
    x = draw_data(model, 23).double()
    model = model.double()
    imp = [importance_log_likelihood(model, x, 200, chunk_size=c, seed=6) for c in (50, 333, 5000)]
    pri = [prior_log_likelihood(model, x, 200, chunk_size=c, seed=7) for c in (7, 150, 5000)]
    for est in (imp, pri):
        for other in est[1:]:
            torch.testing.assert_close(other.log_px, est[0].log_px, rtol=0, atol=1e-9)
            torch.testing.assert_close(other.mc_se, est[0].mc_se, rtol=0, atol=1e-9)
    # image i's draws depend only on (seed, i): the first 5 images alone give the same numbers
    first = importance_log_likelihood(model, x[:5], 200, chunk_size=50, seed=6)
    torch.testing.assert_close(first.log_px, imp[0].log_px[:5], rtol=0, atol=1e-9)


def test_far_away_images_stay_finite():
    """log p(x) around -1e8 (every weight underflows exp in float32 AND float64): the float32
    model gives finite estimates equal to those of the same model in float64."""
    model = linear_model(exemplar_prior())
    x = draw_data(model, 4) + 5e3
    assert float(exact_logpdf(model, x).max()) < -1e7
    model64 = linear_model(exemplar_prior()).double()
    for estimator in (importance_log_likelihood, prior_log_likelihood):
        est = estimator(model, x, 100, chunk_size=40, seed=8)
        ref = estimator(model64, x.double(), 100, chunk_size=40, seed=8)
        assert torch.isfinite(est.log_px).all() and torch.isfinite(est.mc_se).all()
        assert float(est.log_px.max()) < -1e7
        torch.testing.assert_close(est.log_px, ref.log_px, rtol=1e-5, atol=0)


def test_truncated_prior_is_a_lower_bound_that_becomes_exact():
    """prior_components = K: same noise as the exact estimator, so per image the estimate can
    only be lower (omitted mixture terms are positive), equals it at K = n, and closes the gap
    as K grows. In float64, so that rounding (not the bound) cannot decide the comparisons."""
    model = linear_model(exemplar_prior()).double()
    x = draw_data(model, 40).double()
    exact = importance_log_likelihood(model, x, 64, chunk_size=50, seed=5)
    previous_gap = None
    for k in (1, 3, 10, N_COMPONENTS - 1):
        bound = importance_log_likelihood(model, x, 64, chunk_size=50, seed=5, prior_components=k)
        gap = exact.log_px - bound.log_px
        assert (gap >= -1e-9).all(), f"K={k}: the truncated estimate exceeded the exact one"
        if previous_gap is not None:
            assert (gap <= previous_gap + 1e-9).all()
        previous_gap = gap
    for k in (N_COMPONENTS, N_COMPONENTS + 7):  # K >= n is the exact prior
        same = importance_log_likelihood(model, x, 64, chunk_size=50, seed=5, prior_components=k)
        torch.testing.assert_close(same.log_px, exact.log_px, rtol=0, atol=0)
    # a single component loses a measurable amount on this well-spread mixture
    one = importance_log_likelihood(model, x, 64, chunk_size=50, seed=5, prior_components=1)
    assert float((exact.log_px - one.log_px).mean()) > 0.05


def test_truncated_prior_matches_exact_when_neighbours_hold_the_mass():
    """Two far-apart clusters: the 12 nearest components of an image hold all of p(z) near it.
    In float64: the exact prior's shared-variance kernel and the truncated one round float32
    differently (~2e-4 nats at |z| ~ 20, each as far from float64), which is not the point."""
    g = torch.Generator().manual_seed(3)
    means = torch.cat(
        [torch.randn(12, 2, generator=g) - 20.0, torch.randn(12, 2, generator=g) + 20.0]
    )
    prior = ExemplarMixturePrior(means, torch.full_like(means, math.log(0.3)))
    model = linear_model(prior).double()
    x = draw_data(model, 30).double()
    exact = importance_log_likelihood(model, x, 32, chunk_size=64, seed=1)
    bound = importance_log_likelihood(model, x, 32, chunk_size=64, seed=1, prior_components=12)
    assert_within_mc_error(bound, exact_logpdf(model, x))
    torch.testing.assert_close(bound.log_px, exact.log_px, rtol=0, atol=1e-6)


def test_truncation_applies_to_mixture_priors_only():
    model = linear_model(StandardNormalPrior(LATENT))
    x = draw_data(model, 4)
    with pytest.raises(ValueError, match="prior_components.*exemplar-mixture prior only"):
        importance_log_likelihood(model, x, 8, prior_components=3)


RUN = "bmnist-gae-L1-z50"


def test_loglik_run_writes_json(prepared_cfg_tmp):
    from gae.config import run_dir, updated
    from gae.data.prepare import load_prepared
    from gae.data.subsets import random_rows
    from gae.models import architecture_from_config, build_model, save_model

    loglik = {"n_importance": 16, "n_prior": 24, "n_test": 30, "chunk_size": 40}
    cfg = updated(prepared_cfg_tmp, {"evaluation": {"loglik": loglik}})
    with pytest.raises(GaeError, match=r"model\.pt.*gae train bmnist-gae-L1-z50"):
        loglik_run(cfg, RUN)
    data = load_prepared(cfg, "bmnist")
    cfg = updated(cfg, {"model": {"hidden_units": 16}})
    arch = architecture_from_config(cfg, "bmnist", 1, 50, data["x_train"].shape[1])
    torch.manual_seed(0)
    model = build_model("gae", arch, {"run": RUN})
    model.set_exemplar_prior(torch.from_numpy(data["x_train"][:200]))
    save_model(model, run_dir(cfg, RUN) / "model.pt")

    out = loglik_run(cfg, RUN)
    result = json.loads(out.read_text())
    assert result["n_test"] == 30
    imp, pri = result["estimators"]["importance"], result["estimators"]["prior"]
    assert imp["n_importance"] == 16 and pri["n_prior"] == 24
    # the 30 images are the seeded random sample of the test split, recorded as test_index
    rows = random_rows(len(data["x_test"]), 30, cfg.data.subset_seed, "test")
    assert result["test_images"]["complete"] is False and result["test_images"]["n"] == 30
    x = torch.from_numpy(data["x_test"][rows])
    ref = importance_log_likelihood(
        model.eval(), x, 16, chunk_size=40, seed=cfg.seed, image_ids=rows
    )
    assert imp["mean"] == pytest.approx(float(ref.log_px.mean()), rel=1e-6)
    assert imp["mean"] < 0 and pri["mean"] < 0 and imp["sem"] > 0
    assert imp["prior_components"] is None and "exact" in imp["log_prior"]
    with np.load(run_dir(cfg, RUN) / "loglik_images.npz") as per_image:
        assert per_image["importance_log_px"].shape == (30,)
        np.testing.assert_array_equal(per_image["test_index"], rows)
        np.testing.assert_allclose(per_image["importance_log_px"], ref.log_px.numpy(), rtol=1e-6)
        assert float(per_image["prior_log_px"].mean()) == pytest.approx(pri["mean"], rel=1e-12)

    # of 200 training encodings
    cfg = updated(cfg, {"evaluation": {"loglik": {"prior_components": 20}}})
    bound = json.loads(loglik_run(cfg, RUN).read_text())["estimators"]["importance"]
    assert bound["prior_components"] == 20 and "LOWER BOUND" in bound["log_prior"]
    assert bound["mean"] <= imp["mean"]


def test_loglik_run_scores_another_model_file_and_records_it(prepared_cfg_tmp, tmp_path):
    """``gae loglik RUN --model FILE`` (a study row's models_from): that file's model is
    scored and its path and sha256 are recorded; a missing file is named."""
    import hashlib
    import shutil

    from gae.config import run_dir, updated
    from gae.data.prepare import load_prepared
    from gae.models import architecture_from_config, build_model, save_model

    loglik = {"n_importance": 8, "n_prior": 8, "n_test": 20, "chunk_size": 40}
    small = {"evaluation": {"loglik": loglik}, "model": {"hidden_units": 16}}
    cfg = updated(prepared_cfg_tmp, small)
    data = load_prepared(cfg, "bmnist")
    arch = architecture_from_config(cfg, "bmnist", 1, 50, data["x_train"].shape[1])
    torch.manual_seed(0)
    model = build_model("gae", arch, {"run": RUN})
    model.set_exemplar_prior(torch.from_numpy(data["x_train"][:100]))
    elsewhere = tmp_path / "elsewhere" / "model.pt"
    save_model(model, elsewhere)
    with pytest.raises(GaeError, match="nope.pt"):
        loglik_run(cfg, RUN, model_file=tmp_path / "nope.pt")
    result = json.loads(loglik_run(cfg, RUN, model_file=elsewhere).read_text())
    digest = hashlib.sha256(elsewhere.read_bytes()).hexdigest()
    assert result["model"] == {"path": str(elsewhere), "sha256": digest}
    assert not (run_dir(cfg, RUN) / "model.pt").exists()  # the run's own file was not needed
    # the same model as the run's own file gives the same numbers
    shutil.copy(elsewhere, run_dir(cfg, RUN) / "model.pt")
    own = json.loads(loglik_run(cfg, RUN).read_text())
    assert "model" not in own
    assert own["estimators"] == result["estimators"]
