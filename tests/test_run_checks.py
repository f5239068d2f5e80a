"""Every command that reads a run's model or samples checks that they belong to the run.

A model.pt copied from another run (a VAE under a GAE's name, a Frey model in an MNIST run),
samples with NaN rows or with another data set's pixels: each is one clear message and exit 1,
with no result written, instead of numbers filed under the wrong name or invalid JSON.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from gae.cli import main
from gae.config import run_dir, updated
from gae.io import atomic_save_npy
from gae.models import architecture_from_config, build_model, save_model
from tests.conftest import REPO_ROOT


def _save(cfg, run: str, kind: str, dataset: str, dim: int, meta_run: str | None = None) -> None:
    """A small untrained model of ``kind`` saved as ``run``'s model.pt (meta says ``meta_run``)."""
    cfg = updated(cfg, {"model": {"hidden_units": 8}})
    arch = architecture_from_config(cfg, dataset, 1, 50, dim)
    torch.manual_seed(0)
    model = build_model(kind, arch, {"run": meta_run or run, "dataset": dataset})
    if kind == "gae":
        model.set_exemplar_prior(torch.rand(20, dim).round())
    save_model(model, run_dir(cfg, run) / "model.pt")


def _gae(cfg, tmp_path, capsys, *args: str) -> tuple[int, str]:
    overlay = tmp_path / "paths.yaml"
    paths = cfg.to_dict()["paths"]
    overlay.write_text(yaml.safe_dump({"paths": paths, "data": {"download": False}}))
    capsys.readouterr()
    rc = main([*args, "--params", str(REPO_ROOT / "params.yaml"), "--config", str(overlay)])
    return rc, capsys.readouterr().err


def _error(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(f"gae {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_model_copied_from_another_run_is_refused(prepared_cfg_tmp, tmp_path, capsys):
    cfg = prepared_cfg_tmp
    _save(cfg, "bmnist-gae-L1-z50", "vae", "bmnist", 784, meta_run="bmnist-vae-L1-z50")
    rc, err = _gae(cfg, tmp_path, capsys, "loglik", "bmnist-gae-L1-z50")
    line = _error(err, "loglik")
    assert rc == 1 and "is not a model of run bmnist-gae-L1-z50" in line
    assert "kind 'vae' (expected 'gae')" in line and "run 'bmnist-vae-L1-z50'" in line
    assert not (run_dir(cfg, "bmnist-gae-L1-z50") / "loglik.json").exists()


def test_a_frey_model_in_an_mnist_run_is_refused_by_sample(prepared_cfg_tmp, tmp_path, capsys):
    cfg = prepared_cfg_tmp
    _save(cfg, "mnist-vae-L1-z50", "vae", "frey", 560)
    rc, err = _gae(cfg, tmp_path, capsys, "sample", "mnist-vae-L1-z50")
    line = _error(err, "sample")
    assert rc == 1 and "dataset 'frey' (expected 'mnist')" in line
    assert "data_dim 560 (expected 784)" in line
    assert not (run_dir(cfg, "mnist-vae-L1-z50") / "samples.npy").exists()


@pytest.mark.parametrize("command", ["parzen", "diagnose"])
def test_samples_with_nan_rows_are_refused(prepared_cfg_tmp, tmp_path, capsys, command):
    cfg = prepared_cfg_tmp
    samples = np.random.default_rng(0).random((50, 784), dtype=np.float32)
    samples[7, 3] = np.nan
    atomic_save_npy(run_dir(cfg, "mnist-gae-L1-z50") / "samples.npy", samples)
    rc, err = _gae(cfg, tmp_path, capsys, command, "mnist-gae-L1-z50")
    line = _error(err, command)
    assert rc == 1 and "1 of its 50 rows hold NaN" in line and "gae sample" in line
    assert not list(run_dir(cfg, "mnist-gae-L1-z50").glob("*.json"))


@pytest.mark.parametrize("command", ["parzen", "diagnose"])
def test_samples_of_another_width_are_refused(prepared_cfg_tmp, tmp_path, capsys, command):
    cfg = prepared_cfg_tmp
    samples = np.random.default_rng(0).random((50, 560), dtype=np.float32)
    atomic_save_npy(run_dir(cfg, "mnist-gae-L1-z50") / "samples.npy", samples)
    rc, err = _gae(cfg, tmp_path, capsys, command, "mnist-gae-L1-z50")
    line = _error(err, command)
    assert rc == 1 and "560 pixels per row but mnist has 784" in line
    assert not list(run_dir(cfg, "mnist-gae-L1-z50").glob("*.json"))
