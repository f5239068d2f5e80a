"""Encoder/decoders: pairwise log-likelihoods equal naive per-pair ones; save/load round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gae.errors import GaeError
from gae.models import build_model, load_model, save_model


def _arch(likelihood: str, depth: int = 2, **extra) -> dict:
    arch = {
        "data_dim": 12,
        "latent_dim": 3,
        "depth": depth,
        "hidden_units": 16,
        "activation": "tanh",
        "logvar_min": -6.0,
        "logvar_max": 2.0,
        "likelihood": likelihood,
        "gaussian_variance": "learned",
        "gaussian_std_min": 0.01,
        "gaussian_std_init": 0.2,
        "noise_std": 0.7,
    }
    arch.update(extra)
    return arch


def _data(b: int = 6, m: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 12, generator=gen)  # continuous values in [0, 1]
    z = torch.randn(m, 3, generator=gen)
    return x, z


def _naive_pairwise(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x_i|z_j) one pair at a time, through decoder_log_prob."""
    out = torch.empty(x.shape[0], z.shape[0])
    for i in range(x.shape[0]):
        for j in range(z.shape[0]):
            out[i, j] = model.decoder_log_prob(x[i : i + 1], z[j].view(1, 1, -1))[0, 0]
    return out


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "linear_gaussian"])
def test_pairwise_log_prob_equals_naive(likelihood: str) -> None:
    torch.manual_seed(0)
    model = build_model("gae", _arch(likelihood))
    x, z = _data()
    with torch.no_grad():
        got = model.pairwise_log_prob(x, z)
        want = _naive_pairwise(model, x, z)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_bernoulli_log_prob_is_the_cross_entropy() -> None:
    torch.manual_seed(1)
    model = build_model("vae", _arch("bernoulli"))
    x, z = _data(b=4, m=4)
    with torch.no_grad():
        probs = torch.sigmoid(model.decoder.net(z))
        want = (x * torch.log(probs) + (1 - x) * torch.log1p(-probs)).sum(-1)
        got = model.decoder_log_prob(x, z.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert model.decode_mean(z).min() >= 0 and model.decode_mean(z).max() <= 1


def test_gaussian_decoder_std_floor_and_fixed_variance() -> None:
    model = build_model("gae", _arch("gaussian"))
    with torch.no_grad():
        model.decoder.log_excess_std.fill_(-50.0)
    assert torch.exp(0.5 * model.decoder.logvar()).min().item() >= 0.01 * (1 - 1e-6)
    fixed = build_model("gae", _arch("gaussian", gaussian_variance="fixed"))
    assert not any(p is fixed.decoder.log_excess_std for p in fixed.parameters())
    torch.testing.assert_close(
        torch.exp(0.5 * fixed.decoder.logvar()), torch.full((12,), 0.2), rtol=1e-6, atol=0
    )


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_depth_and_logvar_clamp(depth: int) -> None:
    model = build_model("vae", _arch("bernoulli", depth=depth))
    n_linear = sum(isinstance(m, nn.Linear) for m in model.encoder.net)
    assert n_linear == depth + 1
    assert sum(isinstance(m, nn.Linear) for m in model.decoder.net) == depth + 1
    last = model.encoder.net[-1]
    with torch.no_grad():
        last.bias[3:] = 100.0
    _, logvar = model.encode(torch.rand(2, 12))
    assert torch.all(logvar == 2.0)
    with torch.no_grad():
        last.bias[3:] = -100.0
    assert torch.all(model.encode(torch.rand(2, 12))[1] == -6.0)


def test_xavier_init_keeps_the_tanh_signal_and_torch_init_shrinks_it() -> None:
    """model.init: xavier = Glorot-uniform bound sqrt(6 / (fan_in + fan_out)) x gain (5/3 for
    tanh; 1 on the output layer), zero biases; the reason: PyTorch's default shrinks a tanh
    signal layer by layer, which left depth-4 models on the mean-image plateau."""
    width = 400
    arch = _arch("bernoulli", depth=4, hidden_units=width, data_dim=784, latent_dim=50)
    torch.manual_seed(0)
    xavier = build_model("vae", {**arch, "init": "xavier"})
    torch.manual_seed(0)
    default = build_model("vae", {**arch, "init": "torch"})
    linears = [m for m in xavier.decoder.net if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        fan_out, fan_in = layer.weight.shape
        gain = 5.0 / 3.0 if i < len(linears) - 1 else 1.0
        bound = gain * (6.0 / (fan_in + fan_out)) ** 0.5
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
        assert torch.count_nonzero(layer.bias) == 0

    def last_hidden_std(model) -> float:
        h = torch.randn(2000, 50)
        for module in list(model.decoder.net)[:-1]:
            h = module(h)
        return h.std().item()

    assert last_hidden_std(xavier) > 0.5  # tanh units stay in use after 4 layers
    assert last_hidden_std(default) < 0.5 * last_hidden_std(xavier)
    with pytest.raises(GaeError, match="model.init"):
        build_model("vae", {**arch, "init": "lecun"})  # "he" exists since the VampPrior recipe


@pytest.mark.parametrize("kind", ["gae", "vae"])
def test_save_load_reproduces_outputs(kind: str, tmp_path) -> None:
    torch.manual_seed(2)
    model = build_model(kind, _arch("gaussian"), meta={"run": "frey-x-L2-z3", "config": {"a": 1}})
    x, z = _data(b=8, m=4)
    if kind == "gae":
        model.set_exemplar_prior(x, batch_size=3, chunk_size=5)
    path = tmp_path / "model.pt"
    save_model(model, path)
    loaded = load_model(path, device="cpu")
    assert loaded.kind == kind and not loaded.training
    assert loaded.meta == {"run": "frey-x-L2-z3", "config": {"a": 1}}
    assert (loaded.latent_dim, loaded.data_dim) == (3, 12)
    with torch.no_grad():
        for a, b in zip(model.encode(x), loaded.encode(x), strict=True):
            assert torch.equal(a, b)
        zz = z.unsqueeze(0).expand(8, 4, 3)
        assert torch.equal(model.decoder_log_prob(x, zz), loaded.decoder_log_prob(x, zz))
        assert torch.equal(model.decode_mean(z), loaded.decode_mean(z))
        assert torch.equal(model.prior.log_prob(z), loaded.prior.log_prob(z))
    if kind == "gae":
        assert loaded.prior.n_components == 8


def test_load_model_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(GaeError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(GaeError, match="bad.pt"):
        load_model(bad)


def test_shared_prior_variance_is_clamped_saved_and_used_by_the_prior(tmp_path) -> None:
    """prior_variance: learned gives every exemplar component the same (clamped) learned
    variance; the prior is then exactly (1/n) sum_j N(z; mu_j, diag var); model.pt keeps it.
    "unit" gives every component the identity; "posterior" (default) each its own q(z|x_j)."""
    torch.manual_seed(4)
    model = build_model("gae", _arch("bernoulli", prior_variance="learned"))
    with torch.no_grad():
        model.prior_logvar.copy_(torch.tensor([-1.0, 0.5, 3.0]))  # 3.0 is above logvar_max 2.0
    x, z = _data(b=7, m=5)
    x = x.round()
    prior = model.set_exemplar_prior(x, batch_size=3, chunk_size=4)
    means = model.encode(x)[0].detach()
    var = torch.tensor([-1.0, 0.5, 2.0]).exp()
    torch.testing.assert_close(prior.means, means)  # encoded in batches of 3: rounding only
    assert torch.equal(prior.logvars, torch.tensor([-1.0, 0.5, 2.0]).expand(7, 3))
    naive = torch.stack(
        [
            torch.logsumexp(
                torch.stack(
                    [torch.distributions.Normal(m, var.sqrt()).log_prob(zi).sum() for m in means]
                ),
                dim=0,
            )
            - torch.log(torch.tensor(7.0))
            for zi in z
        ]
    )
    torch.testing.assert_close(prior.log_prob(z), naive)

    path = tmp_path / "model.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert torch.equal(loaded.prior_logvar, model.prior_logvar)
    assert torch.equal(loaded.prior.log_prob(z), prior.log_prob(z))
    default = build_model("gae", _arch("bernoulli"))
    assert default.prior_logvar is None  # the slides' model: each component its own q(z|x_j)
    torch.testing.assert_close(default.set_exemplar_prior(x).logvars, default.encode(x)[1])
    unit = build_model("gae", _arch("bernoulli", prior_variance="unit"))
    n_params = sum(p.numel() for p in default.parameters())
    assert unit.prior_logvar is None and sum(p.numel() for p in unit.parameters()) == n_params
    assert sum(p.numel() for p in model.parameters()) == n_params + 3  # learned: one vector
    assert torch.equal(unit.set_exemplar_prior(x).logvars, torch.zeros(7, 3))
    with pytest.raises(GaeError, match="prior_variance"):
        build_model("vae", _arch("bernoulli", prior_variance="learned"))
    with pytest.raises(GaeError, match="prior_variance"):
        build_model("gae", _arch("bernoulli", prior_variance="shared"))
