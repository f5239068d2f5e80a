"""Figures and the report from synthetic artifacts (spec layout) and tiny real models."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gae.config import parse_run_name, prepared_path, run_dir
from gae.errors import GaeError
from gae.figures import figure_inputs, figure_paths, make_figures, sample_grid_plan
from gae.models import architecture_from_config, build_model, save_model
from gae.report import make_report, report_inputs
from gae.tables import make_tables
from tests.test_tables import synthetic_cfg, write_json, write_metric_artifacts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL_RUNS = {
    "runs": [
        "mnist-gae-L1-z50",
        "mnist-vae-L1-z50",
        "mnist-gae-L2-z50",
        "frey-vae-L1-z50",
        "mnist-gae-L1-z2",
        "mnist-gae-L2-z2",
    ],
    "evaluate": {
        "parzen": [],
        "loglik": [],
        "diagnostics": ["mnist-gae-L1-z50"],
        "latent": ["mnist-gae-L1-z2", "mnist-gae-L2-z2"],
    },
    "model": {"hidden_units": 16},
}
DIMS = {"mnist": 784, "bmnist": 784, "frey": 560}


def write_run_artifacts(cfg: dict[str, Any], rng: np.random.Generator) -> None:
    """samples.npy, train_log.csv for every run; model.pt for the latent runs; test data."""
    for run in cfg.runs:
        spec = parse_run_name(run)
        out = run_dir(cfg, run)
        out.mkdir(parents=True, exist_ok=True)
        samples = rng.random((100, DIMS[spec.dataset]), dtype=np.float32)
        np.save(out / "samples.npy", samples)
        with (out / "train_log.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["epoch", "train_objective", "valid_objective", "seconds", "kl"])
            for epoch in range(1, 4):
                writer.writerow([epoch, -200 + 10 * epoch, -210 + 9 * epoch, 1.5, 3.0])
    n_test = 300
    x = (rng.random((n_test, 784)) < 0.3).astype(np.float32)
    y = rng.integers(0, 10, n_test).astype(np.int64)
    path = prepared_path(cfg, "mnist")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=x, x_valid=x[:50], x_test=x, y_train=y, y_valid=y[:50], y_test=y)
    torch.manual_seed(0)
    for run in cfg.evaluate.latent:
        spec = parse_run_name(run)
        arch = architecture_from_config(cfg, spec.dataset, spec.depth, spec.latent_dim, 784)
        model = build_model("gae", arch, meta={"run": run}).eval()
        with torch.no_grad():
            model.set_exemplar_prior(torch.as_tensor(x[:200]))
        save_model(model, run_dir(cfg, run) / "model.pt")


def test_make_figures_writes_every_planned_png(tmp_path: Path) -> None:
    cfg = synthetic_cfg(tmp_path, **SMALL_RUNS)
    write_run_artifacts(cfg, np.random.default_rng(0))
    planned = figure_paths(cfg)
    names = [p.name for p in planned]
    assert names == [
        "samples_mnist.png",
        "samples_frey.png",
        "latent_density.png",
        "latent_scatter.png",
        "training_curves_mnist.png",
        "training_curves_frey.png",
    ]
    # the z=50 runs make the GAE-vs-VAE grid; the 2-D runs stay out of it
    assert sample_grid_plan(cfg, "mnist") == {
        (1, "gae"): "mnist-gae-L1-z50",
        (1, "vae"): "mnist-vae-L1-z50",
        (2, "gae"): "mnist-gae-L2-z50",
    }
    assert all(p.is_file() for p in figure_inputs(cfg))
    written = make_figures(cfg)
    assert written == planned
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, path
    assert not list(planned[0].parent.glob(".*.tmp"))  # atomic writes leave no temp files


def test_missing_samples_names_the_file_and_its_command(tmp_path: Path) -> None:
    cfg = synthetic_cfg(tmp_path, **SMALL_RUNS)
    write_run_artifacts(cfg, np.random.default_rng(1))
    (run_dir(cfg, "mnist-vae-L1-z50") / "samples.npy").unlink()
    with pytest.raises(
        GaeError,
        match=r"mnist-vae-L1-z50/samples\.npy is missing.*"
        r"`gae sample mnist-vae-L1-z50`",
    ):
        make_figures(cfg)


def test_latent_figures_refuse_runs_that_are_not_2d(tmp_path: Path) -> None:
    settings = {
        **SMALL_RUNS,
        "evaluate": {**SMALL_RUNS["evaluate"], "latent": ["mnist-gae-L1-z50"]},
    }
    cfg = synthetic_cfg(tmp_path, **settings)
    write_run_artifacts(cfg, np.random.default_rng(2))
    with pytest.raises(GaeError, match="mnist-gae-L1-z50.*50 dimensions"):
        make_figures(cfg)


def test_report_gathers_tables_figures_and_diagnostics(tmp_path: Path) -> None:
    cfg = synthetic_cfg(
        tmp_path,
        **{
            **SMALL_RUNS,
            "evaluate": {
                **SMALL_RUNS["evaluate"],
                "parzen": ["mnist-gae-L1-z50", "frey-vae-L1-z50"],
                "loglik": [],
            },
        },
    )
    cfg = replace(cfg, overlays=("config/smoke.yaml",))  # as load_config records a preset
    write_run_artifacts(cfg, np.random.default_rng(3))
    write_metric_artifacts(cfg)
    write_json(
        run_dir(cfg, "mnist-gae-L1-z50") / "diagnostics.json",
        {"samples_to_train": {"mean": 4.25}, "n_samples": 100, "dataset": "mnist"},
    )
    (run_dir(cfg, "mnist-gae-L1-z50") / "nearest_neighbours.png").write_bytes(PNG_MAGIC)
    make_tables(cfg)
    make_figures(cfg)
    assert all(p.is_file() for p in report_inputs(cfg))
    report = make_report(cfg).read_text()
    assert "`config/smoke.yaml`" in report and "not comparable with the slides" in report
    assert "Table 1: Parzen" in report and "Table 2: test log-likelihood" in report
    assert "456.71" in report and "-94.66" in report
    assert "| mnist-gae-L1-z50 | 4.25 | 100 |" in report
    links = [
        line.split("](", 1)[1].rstrip(")") for line in report.splitlines() if line.startswith("![")
    ]
    assert len(links) == len(figure_paths(cfg)) + 1
    for link in links:  # every image link resolves relative to the report
        assert (tmp_path / "results" / link).is_file(), link


def test_report_refuses_missing_tables(tmp_path: Path) -> None:
    cfg = synthetic_cfg(tmp_path, **SMALL_RUNS)
    with pytest.raises(GaeError, match=r"table1_parzen\.md is missing.*`gae tables`"):
        make_report(cfg)
    assert not (tmp_path / "results" / "report.md").exists()
    json.dumps(cfg.to_dict())  # the configuration (frozen) stays plain data
