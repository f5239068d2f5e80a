"""Tables 1 and 2 from synthetic run artifacts that follow ../shared/spec.md exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gae.config import load_config, parse_run_name, prepared_path, run_dir
from gae.errors import GaeError
from gae.tables import (
    PUBLISHED_TABLE1,
    PUBLISHED_TABLE2,
    SLIDES_TABLE1,
    SLIDES_TABLE2,
    make_tables,
    table_inputs,
    table_paths,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def synthetic_cfg(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """params.yaml (paper preset, no overlays) with data/results under tmp_path."""
    paths = {"paths": {"data": str(tmp_path / "data"), "results": str(tmp_path / "results")}}
    return load_config(base=REPO_ROOT / "params.yaml", overrides={**paths, **overrides})


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def parzen_value(run: str) -> tuple[float, float]:
    """A distinct, recognisable (mean, sem) per run, so a table cell can be traced to its run."""
    spec = parse_run_name(run)
    base = {"mnist": 100.0, "frey": 1000.0, "tfd": 2000.0}[spec.dataset]
    return base + 10 * spec.depth + (1 if spec.model == "vae" else 0) + 0.25, 0.5 + spec.depth


def loglik_values(run: str) -> tuple[float, float]:
    spec = parse_run_name(run)
    offset = {"vae": 0.0, "gae": 100.0, "gae-slides": 200.0, "vamp": 300.0}[spec.model]
    return -(offset + spec.depth + 0.125), -(offset + spec.depth + 50.375)


N_IMAGES = 100
COMMON = np.linspace(-30.0, 30.0, N_IMAGES)  # image difficulty, shared by every run


def per_image_values(run: str) -> np.ndarray:
    """Per-image log p(x) whose mean is the run's loglik.json mean: shared image difficulty plus
    a small run-specific part, as for real runs scored on the same test images."""
    spec = parse_run_name(run)
    seed = {"vae": 0, "gae": 1, "gae-slides": 2, "vamp": 3}[spec.model] * 10 + spec.depth
    own = 0.1 * np.random.default_rng(seed).standard_normal(N_IMAGES)
    return loglik_values(run)[0] + COMMON + own - own.mean()


def write_metric_artifacts(cfg: dict[str, Any]) -> None:
    """parzen.json, loglik.json and data/prepared/{dataset}.json as the spec defines them."""
    for run in cfg.evaluate.parzen:
        mean, sem = parzen_value(run)
        write_json(
            run_dir(cfg, run) / "parzen.json",
            {"mean": mean, "sem": sem, "sigma": 0.2, "n_samples": 10000, "n_test": 10000},
        )
    for run in cfg.evaluate.loglik:
        imp, prior = loglik_values(run)
        write_json(
            run_dir(cfg, run) / "loglik.json",
            {
                "estimators": {
                    "importance": {"mean": imp, "sem": 0.5, "n_importance": 5000},
                    "prior": {"mean": prior, "sem": 1.5, "n_prior": 5000},
                },
                "n_test": 10000,
            },
        )
        values = per_image_values(run)
        np.savez(
            run_dir(cfg, run) / "loglik_images.npz",
            importance_log_px=values,
            prior_log_px=values - 50.0,
        )
    variants = {
        "mnist": "MNIST grey levels k/255",
        "bmnist": "Bernoulli binarization of MNIST grey levels, seed 0",
        "frey": "Frey faces /255, seeded split",
    }
    for dataset, variant in variants.items():
        write_json(
            prepared_path(cfg, dataset, "json"),
            {
                "dataset": dataset,
                "variant": variant,
                "splits": {"train": 50000, "valid": 10000, "test": 10000},
            },
        )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_tables_put_slides_published_and_our_numbers_side_by_side(tmp_path: Path) -> None:
    cfg = synthetic_cfg(tmp_path)
    write_metric_artifacts(cfg)
    written = make_tables(cfg)
    assert written == table_paths(cfg)
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)

    rows = read_csv(tmp_path / "results/tables/table1_parzen.csv")
    slides = [r for r in rows if r["source"] == "slides"]
    assert [(r["method"], float(r["mnist"]), float(r["faces"])) for r in slides] == SLIDES_TABLE1
    published = [r for r in rows if r["source"].startswith("published")]
    assert [(r["method"], float(r["mnist"]), float(r["mnist_sem"])) for r in published] == [
        (p[0], p[1], p[2]) for p in PUBLISHED_TABLE1
    ]
    ours = {r["method"]: r for r in rows if r["source"] == "ours"}
    # one row per (model, depth): MNIST and Frey numbers of the matching runs side by side
    assert len(ours) == 4
    gae1 = ours["GAE (1 layered, z=50)"]
    assert (float(gae1["mnist"]), float(gae1["mnist_sem"])) == parzen_value("mnist-gae-L1-z50")
    assert (float(gae1["faces"]), float(gae1["faces_sem"])) == parzen_value("frey-gae-L1-z50")
    assert gae1["faces_dataset"] == "frey"
    vae2 = ours["VAE (2 layered, z=50)"]
    assert float(vae2["faces"]) == parzen_value("frey-vae-L2-z50")[0]

    all_rows2 = read_csv(tmp_path / "results/tables/table2_loglik.csv")
    rows2 = [r for r in all_rows2 if r["run"]]
    assert len(rows2) == len(cfg.evaluate.loglik)
    for row in rows2:
        imp, prior = loglik_values(row["run"])
        assert float(row["importance"]) == imp and float(row["prior"]) == prior
        assert float(row["importance_sem"]) == 0.5 and float(row["prior_sem"]) == 1.5
        if row["kind"] == "vamp":  # the slides have no VampPrior
            assert row["slides"] == ""
        else:
            assert float(row["slides"]) == SLIDES_TABLE2[(row["kind"], int(row["depth"]))]
    assert {r["model"] for r in rows2} == {"gae", "gae-slides", "vae", "vamp"}
    published2 = [r for r in all_rows2 if r["published"]]
    assert [(r["method"], float(r["published"]), r["source"]) for r in published2] == [
        (p.method, p.value, p.source) for p in PUBLISHED_TABLE2
    ]
    assert -85.57 in {float(r["published"]) for r in published2}
    # our bmnist here is the Bernoulli fallback, not the static Larochelle files
    assert {r["same_data_as_ours"] for r in published2} == {"no"}
    assert len(all_rows2) == len(rows2) + len(published2)
    # paired with the VAE of the same depth, image by image: the shared difficulty cancels
    for row in rows2:
        if row["kind"] == "vae":
            assert row["paired_difference"] == ""
            continue
        vae = f"bmnist-vae-L{row['depth']}-z50"
        assert row["paired_vae_run"] == vae
        diff = per_image_values(row["run"]) - per_image_values(vae)
        assert float(row["paired_difference"]) == pytest.approx(diff.mean(), abs=1e-9)
        sem = diff.std(ddof=1) / np.sqrt(N_IMAGES)
        assert float(row["paired_difference_sem"]) == pytest.approx(sem, rel=1e-9)
        assert sem < 0.05 < COMMON.std() / np.sqrt(N_IMAGES)

    md1 = (tmp_path / "results/tables/table1_parzen.md").read_text()
    assert "456.71" in md1 and "2815.76" in md1 and "300.331" in md1
    assert f"{parzen_value('mnist-gae-L1-z50')[0]:.2f} ± 1.50" in md1
    assert "225 ± 2" in md1 and "2204 ± 20" in md1  # the published numbers beside the slides'
    assert "Frey faces /255, seeded split" in md1 and "NOT comparable" in md1
    md2 = (tmp_path / "results/tables/table2_loglik.md").read_text()
    assert "-94.66" in md2 and "-107.18" in md2
    assert "VampPrior (2 layered, z=50)" in md2 and "-85.57" in md2 and "-85.79" in md2
    assert "published: Tomczak & Welling 2018" in md2 and "same data as ours: no" in md2
    assert "Bernoulli binarization of MNIST grey levels, seed 0" in md2
    assert "S = 5000 (importance), 5000 (prior), 10000 test images" in md2
    tex2 = (tmp_path / "results/tables/table2_loglik.tex").read_text()
    assert "\\begin{tabular}" in tex2 and "$\\pm$" in tex2 and "gae-slides" in tex2


def test_table_inputs_list_every_file_read(tmp_path: Path) -> None:
    cfg = synthetic_cfg(tmp_path)
    inputs = {str(p) for p in table_inputs(cfg)}
    assert str(run_dir(cfg, "bmnist-vae-L4-z50") / "loglik.json") in inputs
    assert str(run_dir(cfg, "bmnist-gae-L2-z50") / "loglik_images.npz") in inputs
    assert str(run_dir(cfg, "frey-gae-L2-z50") / "parzen.json") in inputs
    assert str(prepared_path(cfg, "bmnist", "json")) in inputs


def test_missing_metric_names_the_file_and_its_command(tmp_path: Path) -> None:
    cfg = synthetic_cfg(tmp_path)
    write_metric_artifacts(cfg)
    (run_dir(cfg, "bmnist-gae-L3-z50") / "loglik.json").unlink()
    with pytest.raises(
        GaeError,
        match=r"bmnist-gae-L3-z50/loglik\.json is missing.*"
        r"`gae loglik bmnist-gae-L3-z50`",
    ):
        make_tables(cfg)
    assert not (tmp_path / "results/tables").exists()  # nothing half-written


def test_subset_presets_are_stated_in_the_footnotes(tmp_path: Path) -> None:
    cfg = synthetic_cfg(tmp_path, data={"subset": {"train": 500, "valid": 200, "test": 200}})
    write_metric_artifacts(cfg)
    make_tables(cfg)
    md = (tmp_path / "results/tables/table1_parzen.md").read_text()
    assert "seeded random samples (seed 0) of 500/200/200 rows of train/valid/test" in md


def test_runs_on_different_test_images_are_not_paired(tmp_path: Path) -> None:
    cfg = synthetic_cfg(tmp_path)
    write_metric_artifacts(cfg)
    np.savez(
        run_dir(cfg, "bmnist-vae-L1-z50") / "loglik_images.npz",
        importance_log_px=np.zeros(7),
        prior_log_px=np.zeros(7),
    )
    make_tables(cfg)
    rows = {r["run"]: r for r in read_csv(tmp_path / "results/tables/table2_loglik.csv")}
    assert rows["bmnist-gae-L1-z50"]["paired_difference"] == "nan"
    assert rows["bmnist-gae-L2-z50"]["paired_difference"] != "nan"


def test_published_rows_say_when_they_are_on_our_data(tmp_path: Path) -> None:
    cfg = synthetic_cfg(tmp_path)
    write_metric_artifacts(cfg)
    meta_path = prepared_path(cfg, "bmnist", "json")
    meta = json.loads(meta_path.read_text())
    write_json(meta_path, {**meta, "variant": "larochelle-amat"})
    make_tables(cfg)
    rows = read_csv(tmp_path / "results/tables/table2_loglik.csv")
    published = [r for r in rows if r["published"]]
    assert len(published) == len(PUBLISHED_TABLE2)
    assert {r["same_data_as_ours"] for r in published} == {"yes"}
