"""Training loop: learns on real MNIST, resumes after SIGKILL to the identical result, NaN guard,
artifacts (model.pt, train_log.csv, samples.npy)."""

from __future__ import annotations

import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import gae.training as training
from gae.config import load_config, updated
from gae.errors import ConfigError, GaeError, TrainingError
from gae.io import atomic_save_npz
from gae.models import load_model
from gae.sampling import sample_run
from gae.settings import Config
from tests.variants import gae_variant

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN = "bmnist-gae-slides-L2-z4"  # the sampled (Monte-Carlo EM) E-step
NO_EVALUATIONS = {"parzen": [], "loglik": [], "diagnostics": [], "latent": []}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: deterministic timings on a shared 2-core machine (oversubscribed
    threads slow small ops tenfold) and the same reduction order in every process."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _synthetic_cfg(
    tmp_path: Path, runs: list[str], models: dict[str, Any] | None = None, **train: Any
) -> Config:
    """A config over a small synthetic binary data set in the spec's npz format."""
    rng = np.random.default_rng(0)
    prototypes = rng.random((4, 64)) < 0.5

    def split(n: int) -> np.ndarray:
        x = prototypes[rng.integers(0, 4, n)] ^ (rng.random((n, 64)) < 0.1)
        return x.astype(np.float32)

    data = tmp_path / "data"
    atomic_save_npz(
        data / "prepared" / "bmnist.npz", x_train=split(150), x_valid=split(40), x_test=split(40)
    )
    return load_config(
        base=REPO_ROOT / "params.yaml",
        overrides={
            "paths": {"data": str(data), "results": str(tmp_path / "results")},
            "model": {"hidden_units": 24},
            "train": {"epochs": 3, "batch_size": 32, "patience": 5, "num_threads": 1, **train},
            "evaluation": {"n_samples": 50, "batch_size": 16},
            "runs": runs,
            "evaluate": NO_EVALUATIONS,
            "models": models or {},
        },
    )


def _read_log(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import gae.training as training
    from gae.config import validate_config

    cfg = validate_config(json.load(open(sys.argv[1])))
    kill_after = int(sys.argv[3])
    if kill_after:
        save = training.atomic_torch_save

        def hooked(path, obj):
            save(path, obj)
            if obj["state"]["epoch"] == kill_after:
                print("CHECKPOINTED", flush=True)
                time.sleep(600)  # the parent kills us here with SIGKILL

        training.atomic_torch_save = hooked
    training.train_run(cfg, sys.argv[2])
    print("DONE", flush=True)
    """
)


def _train_subprocess(
    cfg: Config, tmp_path: Path, kill_after: int = 0, run: str = RUN
) -> None:
    cfg_file = tmp_path / f"cfg-{kill_after}-{cfg.paths.results[-1]}.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    stderr_file = cfg_file.with_suffix(".stderr")
    with open(stderr_file, "w") as stderr:  # a file, not a pipe: a full pipe would block the child
        proc = subprocess.Popen(
            [sys.executable, str(script), str(cfg_file), run, str(kill_after)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": _pythonpath()},
        )
    try:
        line = proc.stdout.readline().strip()
        if kill_after:
            assert line == "CHECKPOINTED", f"ended early: {line!r}\n{_tail(stderr_file)}"
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        else:
            assert line == "DONE", f"training failed:\n{_tail(stderr_file)}"
            assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _pythonpath() -> str:
    """The repository first, so that the child imports this checkout's gae, installed or not."""
    return os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text().splitlines()[-lines:])


# the sampled E-step; and the posterior E-step whose neighbour lists, searched at epoch 1 and
# reused until epoch 3, must come back from the checkpoint for the resumed run to be identical
KNN_REUSED = gae_variant(
    e_step="posterior",
    leave_one_out=True,
    lambda_sigma=0.5,
    candidates="knn",
    n_candidates=5,
    neighbour_refresh_epochs=3,
)


@pytest.mark.parametrize(
    ("run", "models"),
    [
        (RUN, {}),
        ("bmnist-gae-reuse-L1-z4", {"gae-reuse": KNN_REUSED}),
        ("bmnist-gae-wide-L1-z4", {"gae-wide": {**KNN_REUSED, "prior_variance": "learned"}}),
    ],
)
def test_resume_after_sigkill_reaches_the_uninterrupted_result(
    tmp_path: Path, run: str, models: dict[str, Any]
) -> None:
    _assert_resume_is_bit_identical(tmp_path, _synthetic_cfg(tmp_path, [run], models=models), run)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
def test_a_cuda_run_resumes_bit_identically(tmp_path: Path) -> None:
    """torch.load(map_location=cuda) once moved the checkpoint's RNG states to the GPU, and
    every resumed CUDA run failed ('RNG state must be a torch.ByteTensor')."""
    run = "bmnist-gae-reuse-L1-z4"
    cfg = _synthetic_cfg(tmp_path, [run], models={"gae-reuse": KNN_REUSED})
    cfg = replace(cfg, device="cuda")
    _assert_resume_is_bit_identical(tmp_path, cfg, run)


def _assert_resume_is_bit_identical(tmp_path: Path, cfg: Config, run: str) -> None:
    """Train straight through; train again, killed after epoch 2 and resumed: same model, log."""
    straight = updated(cfg, {"paths": {"results": str(tmp_path / "results_a")}})
    _train_subprocess(straight, tmp_path, run=run)

    interrupted = updated(cfg, {"paths": {"results": str(tmp_path / "results_b")}})
    _train_subprocess(interrupted, tmp_path, kill_after=2, run=run)
    run_b = tmp_path / "results_b" / "runs" / run
    assert not (run_b / "model.pt").exists()
    assert torch.load(run_b / "checkpoint.pt", weights_only=False)["state"]["epoch"] == 2
    assert not list(run_b.glob(".*.tmp"))  # nothing half-written
    _train_subprocess(interrupted, tmp_path, run=run)  # resumes epoch 3

    a = load_model(tmp_path / "results_a" / "runs" / run / "model.pt")
    b = load_model(run_b / "model.pt")
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    log_a = _read_log(tmp_path / "results_a" / "runs" / run / "train_log.csv")
    log_b = _read_log(run_b / "train_log.csv")
    assert [r["epoch"] for r in log_b] == ["1", "2", "3"]
    for ra, rb in zip(log_a, log_b, strict=True):
        ra.pop("seconds"), rb.pop("seconds")
        assert ra == rb


def test_nan_objective_stops_with_training_error_and_keeps_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _synthetic_cfg(tmp_path, [RUN])
    calls = {"n": 0}
    real = training.gae_objective

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 7:  # epoch 2, step 2 (150 images / 32: 5 steps per epoch)
            terms.surrogate = terms.surrogate * float("nan")
        return terms

    monkeypatch.setattr(training, "gae_objective", poisoned)
    with pytest.raises(TrainingError, match=rf"run {RUN}: .*nan at epoch 2, step 2") as info:
        training.train_run(cfg, RUN)
    assert "checkpoint" in str(info.value)
    run_dir = tmp_path / "results" / "runs" / RUN
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"]["epoch"] == 1
    assert not (run_dir / "model.pt").exists()
    assert len(_read_log(run_dir / "train_log.csv")) == 1


def test_checkpoint_from_other_settings_is_refused(tmp_path: Path) -> None:
    cfg = _synthetic_cfg(tmp_path, [RUN], epochs=1)
    training.train_run(cfg, RUN)
    cfg = updated(cfg, {"train": {"lr": 0.01, "epochs": 2}})
    with pytest.raises(TrainingError, match="--restart"):
        training.train_run(cfg, RUN)
    training.train_run(cfg, RUN, restart=True)
    assert len(_read_log(tmp_path / "results" / "runs" / RUN / "train_log.csv")) == 2


def test_a_continuation_starts_from_its_source_weights_and_is_tied_to_that_file(
    tmp_path: Path,
) -> None:
    """`gae train --init-from` (a study row that `continues` another): the run starts from the
    source model's weights, and its checkpoint is stale once the source is retrained."""
    source = training.train_run(_synthetic_cfg(tmp_path / "a", [RUN], epochs=1), RUN)
    cfg = _synthetic_cfg(tmp_path / "b", [RUN], epochs=1, lr=1e-4)
    trainer = training.Trainer(cfg, RUN, init_from=source)
    assert trainer.fingerprint != training.Trainer(cfg, RUN).fingerprint
    trainer.start_from(source)
    want = load_model(source).encoder.state_dict()
    have = trainer.model.encoder.state_dict()
    assert all(torch.equal(have[key], value) for key, value in want.items())
    training.train_run(cfg, RUN, init_from=source)
    training.train_run(_synthetic_cfg(tmp_path / "a", [RUN], epochs=1, lr=0.01), RUN, restart=True)
    with pytest.raises(TrainingError, match="--restart"):
        training.train_run(cfg, RUN, init_from=source)
    other = updated(cfg, {"model": {"hidden_units": 16}})
    with pytest.raises(GaeError, match="hidden_units"):
        training.Trainer(other, RUN, init_from=source).start_from(source)
    with pytest.raises(GaeError, match="does not exist"):
        training.Trainer(cfg, RUN, init_from=tmp_path / "nope.pt")
    vae = "bmnist-vae-L2-z4"
    both = _synthetic_cfg(tmp_path / "c", [RUN, vae], epochs=1)
    with pytest.raises(GaeError, match=f"is a gae model of run '{RUN}', not a vae model"):
        training.Trainer(both, vae, init_from=source).start_from(source)


def test_a_vae_checkpoint_from_before_n_z_resumes_at_n_z_1_and_is_refused_at_2(
    tmp_path: Path,
) -> None:
    """VAEs ignored n_z until it became a default of 2: their runs must keep their fingerprint.
    (n_z is now required, so a run made before, without it, is one whose fingerprint has no
    n_z: the shim must leave n_z 1 out of the fingerprint, exactly.)"""
    run = "bmnist-vae-L1-z4"
    cfg = _synthetic_cfg(tmp_path, [run], models={"vae": {"n_z": 1}}, epochs=1)
    parts = training.Trainer(cfg, run)._fingerprint_parts()
    before = {k: v for k, v in parts["settings"].items() if k != "n_z"}  # what they recorded
    assert training.old_run_fingerprint_shims(parts)["settings"] == before
    training.train_run(cfg, run)
    cfg = updated(cfg, {"train": {"epochs": 2}, "models": {"vae": {"n_z": 2}}})
    with pytest.raises(TrainingError, match="--restart"):
        training.train_run(cfg, run)
    cfg = updated(cfg, {"models": {"vae": {"n_z": 1}}})
    training.train_run(cfg, run)  # resumes
    assert len(_read_log(tmp_path / "results" / "runs" / run / "train_log.csv")) == 2


def _mnist_cfg(prepared_cfg_tmp: Config, runs: list[str]) -> Config:
    return updated(
        prepared_cfg_tmp,
        {
            "data": {"subset": {"train": 2000, "valid": 500, "test": 100}},
            "model": {"hidden_units": 200},
            "train": {"epochs": 2, "batch_size": 100, "num_threads": 1},
            "evaluation": {"n_samples": 300, "batch_size": 250},
            "runs": runs,
            "evaluate": NO_EVALUATIONS,
        },
    )


@pytest.mark.parametrize("run", ["mnist-gae-slides-L1-z20", "mnist-gae-L1-z20", "mnist-vae-L1-z20"])
def test_short_training_on_real_mnist_improves_and_writes_artifacts(
    prepared_cfg_tmp: Config, run: str
) -> None:
    cfg = _mnist_cfg(prepared_cfg_tmp, [run])
    path = training.train_run(cfg, run)
    rows = _read_log(path.parent / "train_log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    first, second = rows
    assert float(second["train_objective"]) > float(first["train_objective"])
    assert float(second["valid_objective"]) > float(first["valid_objective"])
    extra = {
        "mnist-gae-slides-L1-z20": {"self_responsibility", "loglik_term", "r_mu", "r_sigma"},
        "mnist-gae-L1-z20": {"recon", "log_prior", "entropy", "r_mu", "r_sigma"},
        "mnist-vae-L1-z20": {"recon", "kl"},
    }[run]
    assert extra <= set(first)
    if "self_responsibility" in extra:
        assert 0.0 <= float(second["self_responsibility"]) <= 1.0

    model = load_model(path)
    assert model.meta["run"] == run and model.meta["config"]["seed"] == cfg.seed
    if "gae" in run:
        assert model.prior.n_components == 2000
        # the stored prior is the mixture over the SAVED encoder's training encodings
        from gae.data.prepare import load_prepared

        x = torch.as_tensor(load_prepared(cfg, "mnist")["x_train"][:5])
        mu, _ = model.encode(x)
        # Not bitwise: the prior was encoded in one large batch, this in 5 rows, and float32
        # matrix products may sum in a different order for another batch shape (seen on some
        # CPUs of the CI machine kind). 1e-5 absolute is ~100 float32 ulps of these O(1)
        # means, far below any difference a wrong or stale encoder would make (>= 1e-2).
        torch.testing.assert_close(model.prior.means[:5], mu.detach(), rtol=0.0, atol=1e-5)

    samples_path = sample_run(cfg, run)
    samples = np.load(samples_path)
    assert samples.shape == (300, 784) and samples.dtype == np.float32
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    # the slides' procedure: decoder means of z drawn from the stored prior, seeded per run
    generator = torch.Generator().manual_seed(training.derive_seed(cfg.seed, run, "sample"))
    with torch.no_grad():
        z = torch.cat([model.prior.sample(250, generator), model.prior.sample(50, generator)])
        want = model.decode_mean(z).numpy()
    np.testing.assert_allclose(samples, want, rtol=0, atol=1e-6)
    assert len(np.unique(samples[:, 300])) > 1  # distinct draws
    np.testing.assert_array_equal(np.load(sample_run(cfg, run)), samples)  # seeded


def test_knn_candidates_train_and_log_neighbour_responsibility(tmp_path: Path) -> None:
    run = "bmnist-gae-knn-L1-z4"
    knn = gae_variant(candidates="knn", n_candidates=5, lambda_mu=1e-3)
    cfg = _synthetic_cfg(tmp_path, [run], models={"gae-knn": knn}, epochs=2)
    path = training.train_run(cfg, run)
    rows = _read_log(path.parent / "train_log.csv")
    assert len(rows) == 2
    for row in rows:
        share = float(row["neighbour_responsibility"]) + float(row["self_responsibility"])
        assert 0.0 < float(row["neighbour_responsibility"]) and share <= 1.0 + 1e-6
    assert float(rows[1]["train_objective"]) > float(rows[0]["train_objective"])
    cfg = updated(cfg, {"models": {"gae-knn": {"n_candidates": 149}}})
    with pytest.raises(GaeError, match="n_candidates"):
        training.train_run(cfg, run, restart=True)


def test_gradient_clipping_bounds_the_norm_and_logs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.grad_clip_norm: every optimiser step sees a gradient of norm <= the limit; the log
    gets the mean pre-clip norm and the share of clipped steps; null = no clipping, no columns."""
    run = "bmnist-vae-L2-z4"
    seen: list[float] = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"]]
        seen.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    cfg = _synthetic_cfg(tmp_path, [run], epochs=2, grad_clip_norm=0.5)
    rows = _read_log(training.train_run(cfg, run).parent / "train_log.csv")
    assert seen and max(seen) <= 0.5 * (1 + 1e-5)
    assert all(float(r["clipped_share"]) == 1.0 and float(r["grad_norm"]) > 0.5 for r in rows)

    seen.clear()
    cfg = _synthetic_cfg(tmp_path / "free", [run], epochs=2, grad_clip_norm=None)
    rows = _read_log(training.train_run(cfg, run).parent / "train_log.csv")
    assert max(seen) > 0.5 and "grad_norm" not in rows[0]


def test_learning_rate_decays_on_plateaus_or_on_a_schedule_and_resumes_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.lr_schedule plateau: after every lr_decay_epochs epochs without validation
    improvement the rate is multiplied by lr_decay_factor; the log records the rate of each epoch,
    and a resumed run continues at the decayed rate (the optimizer state carries it). step: a
    fixed schedule. constant: no lr column."""
    run = "bmnist-vae-L1-z4"
    scores = itertools.chain([-10.0, -9.0, -9.5, -9.6, -9.7, -8.0, -8.5, -8.6], itertools.repeat(0))
    monkeypatch.setattr(training, "validation_elbo", lambda *args, **kwargs: next(scores))
    decay = {"lr_schedule": "plateau", "lr_decay_factor": 0.5, "lr_decay_epochs": 2}
    cfg = _synthetic_cfg(tmp_path, [run], epochs=5, patience=10, lr=1e-3, **decay)
    training.train_run(cfg, run)
    cfg = updated(cfg, {"train": {"epochs": 8}})
    rows = _read_log(training.train_run(cfg, run).parent / "train_log.csv")
    # no improvement after epochs 3 and 4 -> halved from epoch 5; improvement at 6 resets the count
    assert [float(r["lr"]) for r in rows] == pytest.approx(
        [1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4]
    )
    constant = _read_log(
        training.train_run(
            _synthetic_cfg(tmp_path / "c", [run], epochs=1, lr_schedule="constant"), run
        ).parent
        / "train_log.csv"
    )
    assert "lr" not in constant[0]
    cfg = updated(cfg, {"train": {"lr_decay_epochs": 3}})
    with pytest.raises(TrainingError, match="other settings"):
        training.train_run(cfg, run)
    # a fixed schedule: every 3 epochs, whatever the validation does
    cfg = _synthetic_cfg(
        tmp_path / "s",
        [run],
        epochs=7,
        patience=10,
        lr=1e-3,
        lr_schedule="step",
        lr_decay_factor=0.1,
        lr_decay_epochs=3,
    )
    rows = _read_log(training.train_run(cfg, run).parent / "train_log.csv")
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3] * 3 + [1e-4] * 3 + [1e-5])


def test_neighbour_lists_are_searched_every_refresh_interval_and_codes_every_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = "bmnist-gae-reuse-L1-z4"
    reuse = {**KNN_REUSED, "neighbour_refresh_epochs": 2}
    cfg = _synthetic_cfg(tmp_path, [run], models={"gae-reuse": reuse}, epochs=4)
    searched, fresh_codes = [], []
    search, start_epoch = training.nearest_exemplars, training.GaeObjective.start_epoch
    monkeypatch.setattr(
        training, "nearest_exemplars", lambda means, k: searched.append(means) or search(means, k)
    )

    def checked_start_epoch(self, model, x_train, epoch):
        start_epoch(self, model, x_train, epoch)
        fresh_codes.append(torch.equal(self.cached[0], model.encode_all(x_train)[0]))

    monkeypatch.setattr(training.GaeObjective, "start_epoch", checked_start_epoch)
    training.train_run(cfg, run)
    assert len(searched) == 2  # epochs 1 and 3
    assert not torch.equal(searched[0], searched[1])  # from the encoder of that epoch
    assert fresh_codes == [True] * 4  # the exemplar codes (prior components) every epoch


def test_warmup_scales_the_kl_part_and_logs_its_weight(tmp_path: Path) -> None:
    """warmup_epochs = W: epoch e trains with beta = min(1, e / W) on the KL part of the bound;
    the logged train objective stays the bound itself; the sampled E-step refuses warm-up."""
    from gae.objectives import gae_posterior_objective, vae_objective

    run = "bmnist-gae-wu-L1-z4"
    warm = gae_variant(e_step="posterior", leave_one_out=True, warmup_epochs=4)
    cfg = _synthetic_cfg(tmp_path, [run, "bmnist-vae-L1-z4"], models={"gae-wu": warm}, epochs=3)
    rows = _read_log(training.train_run(cfg, run).parent / "train_log.csv")
    assert [float(r["prior_weight"]) for r in rows] == [0.25, 0.5, 0.75]

    torch.manual_seed(0)
    model = load_model(tmp_path / "results" / "runs" / run / "model.pt")
    x = torch.rand(8, 64).round()
    prior = training.batch_exemplar_log_prior

    def terms(beta: float, fn=gae_posterior_objective):
        gen = torch.Generator().manual_seed(3)
        if fn is vae_objective:
            return fn(model, x, generator=gen, prior_weight=beta)
        return fn(model, x, prior, generator=gen, prior_weight=beta)

    for fn in (gae_posterior_objective, vae_objective):
        full, half = terms(1.0, fn), terms(0.5, fn)
        torch.testing.assert_close(full.objective, half.objective)  # the logged bound
        recon = full.parts["recon"]
        kl_part = full.surrogate - recon  # GAE: log p - log q (no R here); VAE: -KL
        torch.testing.assert_close(half.surrogate, recon + 0.5 * kl_part)

    # changed after load_config (replace skips validation): training refuses it too
    sampled = replace(cfg.models["gae-wu"], e_step="sampled", warmup_epochs=2)
    cfg = replace(cfg, models={**cfg.models, "gae-wu": sampled})
    with pytest.raises(GaeError, match="warmup_epochs applies to the VAE"):
        training.train_run(cfg, run, restart=True)


def test_learned_prior_variance_is_trained_and_refused_where_it_does_not_apply(
    tmp_path: Path,
) -> None:
    """prior_variance: learned: the shared component variance gets the bound's gradient (it
    moves from its start, 1, and is logged), the final prior uses it; the sampled E-step and
    the VAE refuse the key by name, when the configuration loads and again when training
    starts."""
    run = "bmnist-gae-wide-L1-z4"
    wide = {**KNN_REUSED, "neighbour_refresh_epochs": 1, "prior_variance": "learned"}
    cfg = _synthetic_cfg(tmp_path, [run], models={"gae-wide": wide}, epochs=2)
    path = training.train_run(cfg, run)
    model = load_model(path)
    rows = _read_log(path.parent / "train_log.csv")
    assert model.prior_logvar.abs().min() > 1e-4  # every dimension was trained
    logged = float(rows[-1]["prior_std"])
    torch.testing.assert_close(logged, model.prior_logvar.mul(0.5).exp().mean().item())
    assert torch.equal(model.prior.logvars, model.prior_logvar.detach().expand(150, 4))
    unit_cfg = _synthetic_cfg(
        tmp_path / "u", [run], models={"gae-wide": {**wide, "prior_variance": "unit"}}, epochs=1
    )
    unit = load_model(training.train_run(unit_cfg, run))
    assert unit.prior_logvar is None and torch.equal(unit.prior.logvars, torch.zeros(150, 4))

    # refused by name when the configuration loads, before any job (gae.config) ...
    slides = {**wide, "e_step": "sampled", "leave_one_out": False, "warmup_epochs": 0}
    with pytest.raises(ConfigError, match=r"models\.gae-wide\.prior_variance .*'learned'"):
        _synthetic_cfg(tmp_path / "s", [run], models={"gae-wide": slides}, epochs=1)
    vae = {"vae": {"prior_variance": "learned"}}
    with pytest.raises(ConfigError, match=r"models\.vae\.prior_variance .*'learned'"):
        _synthetic_cfg(tmp_path / "v", ["bmnist-vae-L1-z4"], models=vae, epochs=1)
    # ... and again by training, for a configuration changed after load_config
    cfg = _synthetic_cfg(tmp_path / "s", [run], models={"gae-wide": wide}, epochs=1)
    changed = replace(cfg.models["gae-wide"], **{k: v for k, v in slides.items() if k != "kind"})
    cfg = replace(cfg, models={**cfg.models, "gae-wide": changed})
    with pytest.raises(GaeError, match="prior_variance"):
        training.train_run(cfg, run)
    # a VAE's settings cannot even hold the key (one dataclass per kind, gae.settings)
    cfg = _synthetic_cfg(tmp_path / "v", ["bmnist-vae-L1-z4"], epochs=1)
    with pytest.raises(TypeError, match="prior_variance"):
        replace(cfg.models["vae"], prior_variance="learned")
