"""The VampPrior baseline (kind ``vamp``) and the Exemplar-VAE variants of the GAE.

Each estimator is checked against an exact value: the VampPrior's density against a brute-force
torch.distributions mixture, its samples against the draws they must be, and the importance- and
prior-sampled log-likelihoods of a linear-Gaussian VampPrior model against its closed form.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gae.training as training
from gae.config import load_config
from gae.errors import ConfigError, GaeError
from gae.evaluation.loglik import importance_log_likelihood, prior_log_likelihood
from gae.io import atomic_save_npz
from gae.models import (
    GatedDense,
    GenerativeModel,
    LinearGaussianDecoder,
    architecture_from_config,
    build_model,
    load_model,
    mlp,
    save_model,
)
from gae.objectives import vamp_objective
from gae.priors import VampPrior, prior_from_state
from gae.sampling import sample_run
from gae.settings import GaeSettings, variant_to_dict
from tests.closed_form import linear_gaussian_gae_logpdf
from tests.test_loglik import LinearProposal, assert_within_mc_error
from tests.variants import gae_variant

REPO_ROOT = Path(__file__).resolve().parents[1]
NO_EVALUATIONS = {"parzen": [], "loglik": [], "diagnostics": [], "latent": []}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _arch(**extra: Any) -> dict[str, Any]:
    arch = {
        "data_dim": 12,
        "latent_dim": 3,
        "depth": 2,
        "hidden_units": 16,
        "activation": "tanh",
        "init": "xavier",
        "logvar_min": -6.0,
        "logvar_max": 2.0,
        "likelihood": "bernoulli",
        "n_pseudo_inputs": 7,
    }
    arch.update(extra)
    return arch


def _vamp(seed: int = 0, **extra: Any) -> GenerativeModel:
    torch.manual_seed(seed)
    model = build_model("vamp", _arch(**extra)).double()
    with torch.no_grad():  # pseudo-inputs spread over [0, 1] (and a few beyond, clipped)
        model.prior.raw_pseudo_inputs.uniform_(-0.2, 1.2)
    return model


def _brute_force_log_prob(model: GenerativeModel, z: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k q(z|u_k), each u_k encoded alone, as a torch.distributions mixture."""
    with torch.no_grad():
        u = model.prior.raw_pseudo_inputs.clamp(0.0, 1.0)
        stats = [model.encoder(u[k : k + 1]) for k in range(u.shape[0])]
        means = torch.cat([s[0] for s in stats])
        stds = torch.cat([s[1] for s in stats]).mul(0.5).exp()
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(means.shape[0], dtype=means.dtype)),
        torch.distributions.Independent(torch.distributions.Normal(means, stds), 1),
    )
    return mixture.log_prob(z)


# ---- the prior -------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["dense", "gated"])
def test_vamp_log_prob_is_the_exact_mixture_over_the_pseudo_inputs(layer: str) -> None:
    model = _vamp(layer=layer)
    z = 2.0 * torch.randn(40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = _brute_force_log_prob(model, z)
    torch.testing.assert_close(model.prior.log_prob(z), want, rtol=1e-10, atol=1e-9)
    with torch.no_grad():  # the cached path gives the same numbers
        torch.testing.assert_close(model.prior.log_prob(z), want, rtol=1e-10, atol=1e-9)
    model.prior.chunk_size = 3  # rows and components chunked: the same mixture
    torch.testing.assert_close(model.prior.log_prob(z), want, rtol=1e-10, atol=1e-9)


def test_gradient_reaches_the_pseudo_inputs_and_the_encoder_not_the_decoder() -> None:
    model = _vamp()
    with torch.no_grad():
        model.prior.raw_pseudo_inputs[0, 0] = 1.5  # beyond hardtanh's range: no gradient there
    z = torch.randn(9, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    model.prior.log_prob(z).sum().backward()
    grad = model.prior.raw_pseudo_inputs.grad
    assert grad is not None and float(grad.abs().sum()) > 0
    assert float(grad[0, 0]) == 0.0
    assert all(
        p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.encoder.parameters()
    )
    assert all(p.grad is None for p in model.decoder.parameters())
    # the gradient is that of the exact mixture: compare one entry with a central difference
    raw = model.prior.raw_pseudo_inputs
    eps, (k, j) = 1e-6, (3, 5)
    with torch.no_grad():
        raw[k, j] += eps
        up = model.prior.log_prob(z).sum()
        raw[k, j] -= 2 * eps
        down = model.prior.log_prob(z).sum()
        raw[k, j] += eps
    assert float(grad[k, j]) == pytest.approx(float(up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_the_cached_components_follow_an_optimizer_step() -> None:
    model = _vamp()
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        before = model.prior.log_prob(z)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    (-vamp_objective(model, torch.rand(5, 12, dtype=torch.float64)).surrogate.sum()).backward()
    optimizer.step()
    with torch.no_grad():
        after = model.prior.log_prob(z)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _brute_force_log_prob(model, z), rtol=1e-10, atol=1e-9)
    # weights changed without any gradient call in between (the best epoch's weights loaded
    # after training): the cache must notice, here and for the pseudo-inputs alone
    model.encoder.load_state_dict(_vamp(seed=9).encoder.state_dict())
    with torch.no_grad():
        reloaded = model.prior.log_prob(z)
        assert not torch.allclose(reloaded, after)
        torch.testing.assert_close(reloaded, _brute_force_log_prob(model, z))
        model.prior.raw_pseudo_inputs.mul_(0.5)
        torch.testing.assert_close(model.prior.log_prob(z), _brute_force_log_prob(model, z))


def test_vamp_sample_picks_a_pseudo_input_then_draws_from_its_posterior() -> None:
    model = _vamp()
    z, index = model.prior.sample_with_index(500, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)  # the same draws, replayed
    want_index = torch.randint(7, (500,), generator=g)
    eps = torch.randn(500, 3, generator=g).double()
    with torch.no_grad():
        mu, logvar = model.encoder(model.prior.pseudo_inputs())
    assert torch.equal(index, want_index)
    torch.testing.assert_close(z, mu[index] + torch.exp(0.5 * logvar[index]) * eps)
    assert set(index.tolist()) == set(range(7))


def test_vamp_save_load_round_trip(tmp_path: Path) -> None:
    model = _vamp(layer="gated", init="he").float().eval()
    assert [k for k in model.state_dict() if k.startswith("prior.")] == ["prior.raw_pseudo_inputs"]
    save_model(model, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.kind == "vamp" and isinstance(loaded.prior, VampPrior)
    assert loaded.prior._encoder[0] is loaded.encoder  # bound to the loaded model's encoder
    torch.testing.assert_close(loaded.prior.raw_pseudo_inputs, model.prior.raw_pseudo_inputs)
    z = torch.randn(8, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.prior.log_prob(z), model.prior.log_prob(z))
    a = loaded.prior.sample(5, torch.Generator().manual_seed(5))
    b = model.prior.sample(5, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="load_model"):
        prior_from_state(model.prior.state())


# ---- the estimators, against the closed form ------------------------------------------------

D, LATENT, K, NOISE = 6, 2, 9, 0.4


def _linear_vamp_model() -> GenerativeModel:
    """A linear-Gaussian decoder and a fixed linear encoder; the VampPrior's components are that
    encoder's posteriors of K pseudo-inputs, so p(x) is a closed-form Gaussian mixture.

    The encoder is also the importance proposal, so it is set (by a few fixed-point rounds) to
    the posterior under the Gaussian moment-matched to its own mixture, variances doubled."""
    torch.manual_seed(0)
    decoder = LinearGaussianDecoder(LATENT, D, noise_std=NOISE)
    with torch.no_grad():
        decoder.bias.copy_(torch.randn(D))
    w, b = decoder.weight.detach().double(), decoder.bias.detach().double()
    u = torch.rand(K, D, dtype=torch.float64)
    m0, p0 = torch.zeros(LATENT, dtype=torch.float64), torch.eye(LATENT, dtype=torch.float64)
    for _ in range(20):
        p0_inv = torch.linalg.inv(p0)
        post_cov = torch.linalg.inv(w.T @ w / NOISE**2 + p0_inv)
        a = post_cov @ w.T / NOISE**2
        c = post_cov @ (p0_inv @ m0 - w.T @ b / NOISE**2)
        var = 2 * torch.diag(post_cov)
        means = u @ a.T + c
        m0 = means.mean(0)
        p0 = torch.cov(means.T, correction=0) + torch.diag(var)
    encoder = LinearProposal(a.float(), c.float(), torch.log(var).float())
    arch = {"latent_dim": LATENT, "data_dim": D, "n_pseudo_inputs": K}
    model = GenerativeModel("vamp", encoder, decoder, arch)
    with torch.no_grad():
        model.prior.raw_pseudo_inputs.copy_(u.float())
    return model.eval()


def _exact(model: GenerativeModel, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        means, logvars = model.prior.components()
    dec = model.decoder
    return linear_gaussian_gae_logpdf(
        x, dec.weight.detach(), dec.bias.detach(), NOISE, means, logvars
    )


def _data(model: GenerativeModel, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(6)
    z = model.prior.sample(n, generator=g)
    with torch.no_grad():
        return model.decode_mean(z) + NOISE * torch.randn(n, D, generator=g)


def test_importance_sampling_with_a_vampprior_matches_the_closed_form() -> None:
    model = _linear_vamp_model()
    x = _data(model, 40)
    est = importance_log_likelihood(model, x, n_samples=3000, chunk_size=3000, seed=7)
    assert_within_mc_error(est, _exact(model, x))
    assert float(est.mc_se.max()) < 0.1  # sharp, not vacuous


def test_prior_sampling_with_a_vampprior_matches_the_closed_form() -> None:
    model = _linear_vamp_model()
    x = _data(model, 40)
    est = prior_log_likelihood(model, x, n_samples=20000, chunk_size=4000, seed=8)
    assert_within_mc_error(est, _exact(model, x))
    assert float(est.mc_se.max()) < 0.5


# ---- training end to end ---------------------------------------------------------------------


def _synthetic_cfg(tmp_path: Path, runs: list[str], models: dict[str, Any], **model: Any):
    rng = np.random.default_rng(0)
    prototypes = rng.random((4, 784)) < 0.5  # MNIST-sized: run checks expect 784 pixels

    def split(n: int) -> np.ndarray:
        x = prototypes[rng.integers(0, 4, n)] ^ (rng.random((n, 784)) < 0.1)
        return x.astype(np.float32)

    data = tmp_path / "data"
    atomic_save_npz(
        data / "prepared" / "bmnist.npz", x_train=split(120), x_valid=split(30), x_test=split(30)
    )
    return load_config(
        base=REPO_ROOT / "params.yaml",
        overrides={
            "paths": {"data": str(data), "results": str(tmp_path / "results")},
            "model": {"hidden_units": 16, **model},
            "train": {"epochs": 2, "batch_size": 30, "patience": 5, "num_threads": 1},
            "evaluation": {"n_samples": 20, "batch_size": 16},
            "runs": runs,
            "evaluate": NO_EVALUATIONS,
            "models": models,
        },
    )


def test_vamp_trains_with_warmup_saves_and_scores(tmp_path: Path) -> None:
    run = "bmnist-vamp-L1-z3"
    models = {"vamp": {"n_pseudo_inputs": 10, "pseudo_inputs_init": "training", "warmup_epochs": 4}}
    cfg = _synthetic_cfg(tmp_path, [run], models, layer="gated", init="he")
    path = training.train_run(cfg, run)
    log = (path.parent / "train_log.csv").read_text().splitlines()
    assert log[0].split(",")[:3] == ["epoch", "train_objective", "valid_objective"]
    assert "prior_weight" in log[0] and "kl" in log[0] and len(log) == 3
    model = load_model(path)
    assert model.kind == "vamp" and model.prior.n_pseudo_inputs == 10
    assert model.architecture["layer"] == "gated"
    u = model.prior.pseudo_inputs().detach()
    assert float(u.min()) >= 0.0 and float(u.max()) <= 1.0
    x = torch.as_tensor(np.load(tmp_path / "data/prepared/bmnist.npz")["x_test"])
    est = importance_log_likelihood(model, x, n_samples=50, chunk_size=500, seed=0)
    assert torch.isfinite(est.log_px).all() and float(est.log_px.mean()) < 0
    samples = np.load(sample_run(cfg, run))
    assert samples.shape == (20, 784) and samples.min() >= 0.0 and samples.max() <= 1.0


def test_pseudo_inputs_start_from_the_recipe_or_from_training_images() -> None:
    model = _vamp()
    x_train = torch.rand(30, 12, dtype=torch.float64)
    vamp = load_config(base=REPO_ROOT / "params.yaml").models["vamp"]  # mean 0.05, std 0.01
    training.initialise_pseudo_inputs(model, replace(vamp, pseudo_inputs_init="random"), x_train, 1)
    raw = model.prior.raw_pseudo_inputs.detach()
    assert float(raw.mean()) == pytest.approx(0.05, abs=0.01)
    assert float(raw.std()) == pytest.approx(0.01, rel=0.3)
    settings = replace(vamp, pseudo_inputs_init="training", pseudo_inputs_std=0.0)
    training.initialise_pseudo_inputs(model, settings, x_train, 1)
    rows = model.prior.raw_pseudo_inputs.detach()
    match = (rows[:, None, :] == x_train[None]).all(-1)  # (K, n): which training image
    assert torch.all(match.sum(1) == 1) and len(set(match.float().argmax(1).tolist())) == 7
    with pytest.raises(GaeError, match="n_pseudo_inputs"):
        training.initialise_pseudo_inputs(model, settings, x_train[:5], 1)


# ---- Exemplar-VAE variants of the GAE --------------------------------------------------------


def _knn_objective(
    exemplar_gradient: bool, n_train: int = 20, **extra: Any
) -> training.VariantObjective:
    knn = {
        "e_step": "posterior",
        "candidates": "knn",
        "n_candidates": 3,
        "leave_one_out": True,
        "prior_variance": "unit",
        "exemplar_gradient": exemplar_gradient,
    }
    settings = gae_variant(**{**knn, **extra})
    return training.make_objective("gae", GaeSettings(**settings), n_train, "bmnist-gae-L1-z3")


@pytest.mark.parametrize("exemplar_gradient", [False, True])
def test_exemplar_gradient_reaches_the_encoder_through_the_neighbours(exemplar_gradient) -> None:
    torch.manual_seed(0)
    model = build_model("gae", _arch(prior_variance="unit")).double()
    x_train = torch.rand(20, 12, dtype=torch.float64)
    objective = _knn_objective(exemplar_gradient)
    objective.start_epoch(model, x_train, 1)
    index = torch.arange(4)
    log_prior = objective._log_prior(model, x_train, index)
    # z, mu, logvar detached: the ONLY way from the prior's value to the encoder is through the
    # neighbours' encodings
    mu, logvar = (t.detach() for t in model.encode(x_train[index]))
    z = (mu + 0.3 * torch.randn_like(mu)).unsqueeze(1)
    value = log_prior(z, mu, logvar)
    means, _ = objective.cached  # the cache: the same encoder, so the same value either way
    nb = objective.neighbours[index]
    want = training.neighbour_exemplar_log_prior(z, means[nb], torch.zeros_like(means[nb]), 20)
    torch.testing.assert_close(value, want)
    if not exemplar_gradient:
        assert not value.requires_grad
        return
    value.sum().backward()
    first = model.encoder.net[0].weight.grad
    assert first is not None and float(first.abs().sum()) > 0
    # the full training step differs from the cached one by exactly that extra gradient path
    model.zero_grad()
    objective(model, x_train, index, torch.Generator().manual_seed(0)).surrogate.sum().backward()
    with_path = model.encoder.net[0].weight.grad.clone()
    model.zero_grad()
    cached = _knn_objective(False)
    cached.start_epoch(model, x_train, 1)
    cached(model, x_train, index, torch.Generator().manual_seed(0)).surrogate.sum().backward()
    assert not torch.allclose(with_path, model.encoder.net[0].weight.grad)


@pytest.mark.parametrize("variance", ["unit", "learned", "learned_scalar", "posterior"])
def test_the_training_prior_takes_the_shared_variance_kernel_with_the_general_values(
    variance, monkeypatch
) -> None:
    """A shared component variance (unit, learned, learned_scalar) takes the d-wide kernel in
    the training step; its value and its gradients (the encoder's, the learned variance's) are
    the general kernel's, with every component given that variance. The slides' own variances
    keep the general kernel."""
    torch.manual_seed(1)
    model = build_model("gae", _arch(prior_variance=variance)).double()
    if model.prior_logvar is not None:
        model.prior_logvar.data.fill_(0.3)
    x_train = torch.rand(20, 12, dtype=torch.float64)
    objective = _knn_objective(True, prior_variance=variance)
    objective.start_epoch(model, x_train, 1)
    calls = []
    real = training.shared_variance_neighbour_log_prior
    monkeypatch.setattr(
        training,
        "shared_variance_neighbour_log_prior",
        lambda *a: calls.append(1) or real(*a),
    )
    index = torch.arange(5)
    mu, logvar = model.encode(x_train[index])
    z = (mu + 0.5 * torch.randn_like(mu)).unsqueeze(1)
    value = objective._log_prior(model, x_train, index)(z, mu, logvar)
    assert bool(calls) == (variance != "posterior")
    means, logvars = model.encode(x_train[objective.neighbours[index]])
    want = training.neighbour_exemplar_log_prior(z, means, model.component_logvar(logvars), 20)
    torch.testing.assert_close(value, want)
    params = [p for p in model.parameters() if p.requires_grad]
    got = torch.autograd.grad(value.sum(), params, allow_unused=True, retain_graph=True)
    expected = torch.autograd.grad(want.sum(), params, allow_unused=True)
    for one, other in zip(got, expected, strict=True):
        assert (one is None) == (other is None)
        if one is not None:
            torch.testing.assert_close(one, other)


def test_the_exemplar_vae_variant_trains_end_to_end(tmp_path: Path) -> None:
    run = "bmnist-gae-exemplar-L1-z3"
    cfg = _synthetic_cfg(tmp_path, [run], {"gae-exemplar": {"n_candidates": 4, "n_z": 1}})
    assert cfg.models["gae-exemplar"].exemplar_gradient is True
    path = training.train_run(cfg, run)
    header = (path.parent / "train_log.csv").read_text().splitlines()[0].split(",")
    assert "prior_std" in header and "log_prior" in header
    model = load_model(path)
    assert model.prior_variance == "learned_scalar" and model.prior_logvar.shape == (1,)
    # the stored exemplar prior uses the learned scalar for every component and dimension
    assert torch.all(model.prior.logvars == model.component_logvar(model.prior_logvar.detach()))
    assert model.prior.logvars.unique().numel() == 1


def test_exemplar_gradient_is_refused_where_it_means_nothing(tmp_path: Path) -> None:
    with pytest.raises(GaeError, match="exemplar_gradient"):
        _knn_objective(True, candidates="batch")
    # a key of another kind: the kind's dataclass has no such field, and the configuration
    # refuses it by name when it loads
    with pytest.raises(TypeError, match="n_pseudo_inputs"):
        _knn_objective(False, n_pseudo_inputs=5)
    overlay = tmp_path / "foreign.yaml"
    for text, match in (
        ("models: {gae: {n_pseudo_inputs: 5}}\n", r"models\.gae\.n_pseudo_inputs .*kind vamp"),
        ("models: {vamp: {candidates: knn}}\n", r"models\.vamp\.candidates .*kind gae"),
    ):
        overlay.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_config([overlay], base=REPO_ROOT / "params.yaml")


def test_learned_scalar_prior_variance_is_one_shared_clamped_parameter(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("gae", _arch(prior_variance="learned_scalar"))
    assert model.prior_logvar.shape == (1,)
    logvar = torch.randn(5, 3)
    with torch.no_grad():
        model.prior_logvar.fill_(0.7)
    comp = model.component_logvar(logvar)
    assert comp.shape == (5, 3) and torch.all(comp == 0.7)
    with torch.no_grad():
        model.prior_logvar.fill_(9.0)  # clamped to logvar_max like the encoder's
    assert torch.all(model.component_logvar(logvar) == 2.0)
    with torch.no_grad():
        model.prior_logvar.fill_(-0.4)
    # its gradient comes from the leave-one-out bound of the posterior E-step
    objective = _knn_objective(True, prior_variance="learned_scalar")
    x_train = torch.rand(20, 12)
    objective.start_epoch(model, x_train, 1)
    objective(
        model, x_train, torch.arange(6), torch.Generator().manual_seed(1)
    ).surrogate.sum().backward()
    assert model.prior_logvar.grad is not None and float(model.prior_logvar.grad.abs()) > 0
    save_model(model, tmp_path / "model.pt")
    assert float(load_model(tmp_path / "model.pt").prior_logvar.detach()) == pytest.approx(-0.4)


def test_gated_dense_layer_gates_a_linear_map() -> None:
    torch.manual_seed(0)
    layer = GatedDense(5, 4)
    x = torch.randn(3, 5)
    want = (x @ layer.h.weight.T + layer.h.bias) * torch.sigmoid(
        x @ layer.g.weight.T + layer.g.bias
    )
    torch.testing.assert_close(layer(x), want)
    with torch.no_grad():
        layer.g.bias.fill_(-50.0)  # a closed gate passes nothing
    assert float(layer(x).detach().abs().max()) < 1e-15
    net = mlp(12, 6, 3, 8, "tanh", layer="gated")
    assert sum(isinstance(m, GatedDense) for m in net) == 3
    assert not any(isinstance(m, nn.Tanh) for m in net.modules())
    assert net(torch.randn(2, 12)).shape == (2, 6)
    with pytest.raises(GaeError, match="model.layer"):
        mlp(12, 6, 1, 8, "tanh", layer="conv")


def test_he_init_draws_normal_weights_of_std_sqrt_2_over_fan_in() -> None:
    torch.manual_seed(0)
    model = build_model("vae", _arch(data_dim=784, hidden_units=300, layer="gated", init="he"))
    linears = [m for m in model.encoder.net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 5  # two gated layers (h and g each) and the output layer
    for layer in linears:
        w = layer.weight.detach().double()
        want = math.sqrt(2.0 / layer.in_features)
        assert float(w.std()) == pytest.approx(want, rel=0.03)
        assert abs(float(w.mean())) < 4 * want / math.sqrt(w.numel())


def test_recipe_overlay_builds_every_kind_and_keeps_default_architectures() -> None:
    default = load_config(base=REPO_ROOT / "params.yaml")
    arch = architecture_from_config(default, "bmnist", 2, 50, 784)
    # the default architecture dict is what it was before gated layers (fingerprints unchanged)
    assert "layer" not in arch and arch["init"] == "xavier" and arch["hidden_units"] == 500
    assert default.models["gae"].prior_variance == "unit"
    # exemplar_gradient is listed now (every key is), but false: out of the fingerprint
    gae = variant_to_dict(default.models["gae"])
    assert gae["exemplar_gradient"] is False
    assert "exemplar_gradient" not in training.old_run_fingerprint_shims(
        {"kind": "gae", "settings": gae, "optimizer": "adam", "lr_decay": None}
    )["settings"]
    cfg = load_config([REPO_ROOT / "config/recipe-vampprior.yaml"], base=REPO_ROOT / "params.yaml")
    assert cfg.runs == default.runs and cfg.evaluate == default.evaluate
    arch = architecture_from_config(cfg, "bmnist", 2, 40, 784)
    assert (arch["layer"], arch["init"], arch["hidden_units"]) == ("gated", "he", 300)
    assert (cfg.train.lr, cfg.train.lr_schedule, cfg.train.patience) == (
        5e-4,
        "constant",
        50,
    )
    for variant in ("vae", "vamp", "gae", "gae-exemplar"):
        assert cfg.models[variant].warmup_epochs == 100
    for kind in ("vae", "vamp", "gae"):
        model = build_model(kind, {**arch, "n_pseudo_inputs": 500})
        assert sum(isinstance(m, GatedDense) for m in model.encoder.net) == 2
        assert model.encode(torch.rand(3, 784))[0].shape == (3, 40)


def test_adam_normgrad_feeds_unit_norm_gradients() -> None:
    model = nn.Linear(4, 3)
    (model(torch.randn(5, 4)) ** 2).sum().mul(1000).backward()
    training._normalise_gradients(model)
    for param in model.parameters():
        assert float(param.grad.norm()) == pytest.approx(1.0, rel=1e-5)
