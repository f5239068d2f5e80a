"""The study sheet (config/study.tsv, gae.study) and its tables (workflow/scripts/study_table.py).

The sheet is validated while the workflow parses: a bad row fails with the sheet, the line and
the key. The committed tables under docs/study/tables/ must be exactly what the script makes
from the committed record, so every number in docs/gae-study.md can be traced and rebuilt.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from gae.errors import ConfigError, GaeError
from gae.study import (
    PER_IMAGE_RECORD,
    STUDY_RECORD,
    STUDY_SCHEMA,
    load_study,
    paired_between_rows,
    read_per_image,
    record_per_image,
    study_jobs,
)
from tests.conftest import REPO_ROOT

HEADER = "variant\toverlays\tset\truns\tseeds\tevaluations\tcontinues\tmodels_from\tdescription\n"


def _script(name: str = "study_table"):
    path = REPO_ROOT / "workflow" / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sheet(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "study.tsv"
    path.write_text(HEADER + "".join(row + "\n" for row in rows))
    return path


def test_the_project_sheet_is_valid_with_every_row_configured(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    rows = load_study(params=REPO_ROOT / "params.yaml")
    assert rows and len({r.variant for r in rows}) == len(rows)
    jobs = study_jobs(rows)
    assert len(jobs) == sum(len(r.seeds) * len(r.runs) for r in rows)
    seeds = next(r for r in rows if r.variant == "cpu-seeds")
    assert seeds.seeds == (2, 3) and seeds.overlays == ("config/cpu.yaml",)
    cfg = seeds.config(2, REPO_ROOT / "params.yaml")
    assert cfg.runs == tuple(seeds.runs) and cfg.evaluate.loglik == ()
    assert cfg.seed == 2 and cfg.train.epochs == 20
    assert cfg.paths.results == "results/study/cpu-seeds/seed2"
    # the preset `make run PRESET=smoke` wrote into params.yaml does not leak into a study row
    smoked = tmp_path / "params.yaml"
    text = (REPO_ROOT / "params.yaml").read_text()
    smoked.write_text(text.replace("overlays: []", "overlays: [config/smoke.yaml]", 1))
    assert seeds.config(2, smoked) == cfg
    assert seeds.config(2, smoked, preset=True).data.subset.train == 500


@pytest.mark.parametrize(
    "row,message",
    [
        ("bad_Name\t-\t-\tbmnist-vae-L1-z50\t1\tloglik\t-\t-\tx", "variant"),
        ("v\t-\t-\tbmnist-vae-L9-z50\t1\tloglik\t-\t-\tx", "depth"),
        ("v\tconfig/nope.yaml\t-\tbmnist-vae-L1-z50\t1\tloglik\t-\t-\tx", "config/nope.yaml"),
        ("v\t-\tseed=3\tbmnist-vae-L1-z50\t1\tloglik\t-\t-\tx", "may not set seed"),
        (
            "v\t-\tdata.bmnist_source=bernoulli\tbmnist-vae-L1-z50\t1\tloglik\t-\t-\tx",
            "data/prepared",
        ),
        ("v\t-\t-\tbmnist-vae-L1-z50\t1 x\tloglik\t-\t-\tx", "seeds"),
        ("v\t-\t-\tbmnist-vae-L1-z50\t1\tparzen\t-\t-\tx", "unknown evaluations"),
        ("v\t-\tmodels.gae.n_candiates=64\tbmnist-gae-L1-z50\t1\tloglik\t-\t-\tx", "n_candidates"),
    ],
)
def test_a_bad_row_is_refused_naming_the_sheet_and_line(tmp_path, monkeypatch, row, message):
    monkeypatch.chdir(REPO_ROOT)
    sheet = _sheet(tmp_path, row)
    with pytest.raises(ConfigError, match=message) as info:
        load_study(sheet, STUDY_SCHEMA, params=REPO_ROOT / "params.yaml")
    assert str(sheet) in str(info.value) and "line 2" in str(info.value)


@pytest.mark.parametrize(
    "second,message",
    [
        ("w\t-\t-\tbmnist-vae-L1-z50\t1\tloglik\tnope\t-\tx", "not a row above it"),
        ("w\t-\t-\tbmnist-vae-L1-z50\t1 2\tloglik\tv\t-\tx", "no seeds \\[2\\]"),
        ("w\t-\t-\tbmnist-vae-L2-z50\t1\tloglik\tv\t-\tx", "bmnist-vae-L2-z50"),
    ],
)
def test_a_continuation_must_continue_an_earlier_row_with_its_seeds_and_runs(
    tmp_path, monkeypatch, second, message
):
    monkeypatch.chdir(REPO_ROOT)
    first = "v\t-\t-\tbmnist-vae-L1-z50\t1\tloglik\t-\t-\tx"
    with pytest.raises(ConfigError, match=message) as info:
        load_study(_sheet(tmp_path, first, second), STUDY_SCHEMA)
    assert "line 3" in str(info.value)


def test_a_continuation_starts_from_the_continued_rows_model(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    sheet = _sheet(
        tmp_path,
        "v\t-\t-\tbmnist-vae-L1-z50 bmnist-gae-L1-z50\t1 2\tloglik\t-\t-\tx",
        "w\t-\ttrain.lr=1e-4\tbmnist-vae-L1-z50\t2\tloglik\tv\t-\tx",
    )
    first, second = load_study(sheet, STUDY_SCHEMA)
    assert first.start_model(1, "bmnist-vae-L1-z50") is None
    assert second.start_model(2, "bmnist-vae-L1-z50") == Path(
        "results/study/v/seed2/runs/bmnist-vae-L1-z50/model.pt"
    )


def _record_run(record: Path, variant: str, seed: int, run: str, values: np.ndarray) -> None:
    folder = record / variant / f"seed{seed}" / run
    folder.mkdir(parents=True)
    (folder / "train_log.csv").write_text(
        "epoch,train_objective,valid_objective\n1,-120,-110\n2,-100,-95\n3,-99,-97\n"
    )
    result = {
        "n_test": len(values),
        "data_variant": "larochelle-amat",
        "test_images": {"complete": False, "seed": 0, "n": len(values)},
        "estimators": {
            "importance": {"mean": float(values.mean()), "sem": 0.5, "n_importance": 200}
        },
    }
    (folder / "loglik.json").write_text(json.dumps(result))
    np.savez(
        tmp_npz := folder.parent / f"{run}.npz",
        test_index=np.arange(len(values)) * 3,
        importance_log_px=values,
    )
    record_per_image(tmp_npz, folder / PER_IMAGE_RECORD)  # what the study_record_images rule does


SOURCE = (
    "v\tconfig/cpu.yaml\ttrain.lr=1e-4\tbmnist-gae-L1-z50 bmnist-vae-L1-z50\t1 2\tloglik\t-\t-\tx"
)


@pytest.mark.parametrize(
    "second,message",
    [
        (
            "w\t-\tevaluation.loglik.n_test=null\tbmnist-vae-L1-z50\t1\tloglik\t-\tnope\tx",
            "not a row above it",
        ),
        ("w\t-\t-\tbmnist-vae-L1-z50\t3\tloglik\t-\tv\tx", "no seeds \\[3\\]"),
        ("w\t-\t-\tbmnist-vae-L2-z50\t1\tloglik\t-\tv\tx", "bmnist-vae-L2-z50"),
        ("w\t-\ttrain.lr=1e-3\tbmnist-vae-L1-z50\t1\tloglik\t-\tv\tx", "evaluation.\\* keys"),
        ("w\tconfig/cpu.yaml\t-\tbmnist-vae-L1-z50\t1\tloglik\t-\tv\tx", "overlays must be"),
        ("w\t-\t-\tbmnist-vae-L1-z50\t1\tloglik\tv\tv\tx", "continues and overlays"),
    ],
)
def test_a_models_from_row_scores_an_earlier_rows_models_and_sets_evaluation_only(
    tmp_path, monkeypatch, second, message
):
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(ConfigError, match=message) as info:
        load_study(_sheet(tmp_path, SOURCE, second), STUDY_SCHEMA)
    assert "line 3" in str(info.value)
    third = "u\t-\t-\tbmnist-vae-L1-z50\t1\tloglik\t-\tw\tx"  # w scores; u cannot score w
    ok = "w\t-\tevaluation.loglik.n_test=null\tbmnist-vae-L1-z50\t1\tloglik\t-\tv\tx"
    with pytest.raises(ConfigError, match="trains nothing itself"):
        load_study(_sheet(tmp_path, SOURCE, ok, third), STUDY_SCHEMA)


def test_a_models_from_row_has_the_source_configuration_plus_its_evaluation(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    scoring = (
        "w\t-\tevaluation.loglik.n_test=null evaluation.loglik.n_importance=1000"
        "\tbmnist-vae-L1-z50\t2\tloglik\t-\tv\tx"
    )
    source, row = load_study(_sheet(tmp_path, SOURCE, scoring), STUDY_SCHEMA)
    assert source.trains and not row.trains
    assert row.overlays == ("config/cpu.yaml",) and row.sets[0] == "train.lr=1e-4"
    params = REPO_ROOT / "params.yaml"
    mine, theirs = row.config(2, params), source.config(2, params)
    assert mine.evaluation.loglik.n_test is None and mine.evaluation.loglik.n_importance == 1000
    assert (mine.train, mine.model, mine.models) == (theirs.train, theirs.model, theirs.models)
    assert mine.paths.results == "results/study/w/seed2"  # its results are its own
    run = "bmnist-vae-L1-z50"
    assert (
        row.model(2, run)
        == source.model(2, run)
        == Path(f"results/study/v/seed2/runs/{run}/model.pt")
    )
    # the table reads how training ended from the trained row's record
    record = tmp_path / "record"
    _record_run(record, "v", 2, run, np.array([-92.0, -93.0]))
    folder = record / "w" / "seed2" / run
    folder.mkdir(parents=True)
    loglik = json.loads((record / "v" / "seed2" / run / "loglik.json").read_text())
    loglik["estimators"]["importance"]["prior_components"] = 200
    (folder / "loglik.json").write_text(json.dumps(loglik))
    (folder / PER_IMAGE_RECORD).write_bytes(
        (record / "v" / "seed2" / run / PER_IMAGE_RECORD).read_bytes()
    )
    text = _script().make_table(row, record)
    cells = "| 2 | larochelle-amat | 2 random (seed 0) | 200 | -92.50 ± 0.50 | – | 3 (2) |"
    assert f"| {run} {cells}" in text
    assert "the 200 mixture components nearest" in text and "Models: those of `v`" in text


def test_the_table_pairs_each_model_with_the_vae_of_its_depth(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    row_text = "v\t-\t-\tbmnist-gae-L1-z50 bmnist-vae-L1-z50\t5\tloglik\t-\t-\tA test."
    sheet = _sheet(tmp_path, row_text)
    (row,) = load_study(sheet, STUDY_SCHEMA)
    record = tmp_path / "record"
    gae = np.array([-90.0, -91.0, -95.0, -88.0])
    vae = np.array([-92.0, -92.0, -96.0, -91.0])
    _record_run(record, "v", 5, "bmnist-gae-L1-z50", gae)
    _record_run(record, "v", 5, "bmnist-vae-L1-z50", vae)
    text = _script().make_table(row, record)
    diff = gae - vae
    sem = diff.std(ddof=1) / np.sqrt(diff.size)
    cells = "| 5 | larochelle-amat | 4 random (seed 0) | 200 |"
    paired = f"+{diff.mean():.2f} ± {sem:.2f}"
    assert f"| bmnist-gae-L1-z50 {cells} -91.00 ± 0.50 | {paired} | 3 (2) |" in text
    assert f"| bmnist-vae-L1-z50 {cells} -92.75 ± 0.50 | – | 3 (2) |" in text


def test_the_curves_draw_a_panel_per_run_and_a_line_per_recorded_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    sheet = _sheet(tmp_path, "v\t-\t-\tbmnist-gae-L1-z50 bmnist-vae-L1-z50\t5 6\tloglik\t-\t-\tx")
    record = tmp_path / "record"
    _record_run(record, "v", 5, "bmnist-gae-L1-z50", np.array([-90.0, -91.0]))
    _record_run(record, "v", 6, "bmnist-gae-L1-z50", np.array([-90.0, -91.0]))
    _record_run(record, "v", 5, "bmnist-vae-L1-z50", np.array([-92.0, -92.0]))
    curves = _script("study_curves")
    (row,) = load_study(sheet, STUDY_SCHEMA)
    fig = curves.draw(row, record)
    gae_panel, vae_panel = fig.axes
    assert [len(gae_panel.lines), len(vae_panel.lines)] == [2, 1]
    assert gae_panel.lines[0].get_xydata().tolist() == [[1, -110], [2, -95], [3, -97]]
    outs = [tmp_path / "a.png", tmp_path / "b.png"]
    for out in outs:
        argv = ["v", "--record", str(record), "--sheet", str(sheet), "--out", str(out)]
        assert curves.main(argv) == 0
    assert outs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert outs[0].read_bytes() == outs[1].read_bytes()  # the same record draws the same bytes


def test_the_curves_wrap_many_runs_into_lines_of_four_panels(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    runs = [f"bmnist-{kind}-L{depth}-z50" for kind in ("gae", "vae") for depth in (1, 2, 3)]
    sheet = _sheet(tmp_path, f"v\t-\t-\t{' '.join(runs)}\t5\tloglik\t-\t-\tx")
    record = tmp_path / "record"
    for run in runs:
        _record_run(record, "v", 5, run, np.array([-90.0, -91.0]))
    (row,) = load_study(sheet, STUDY_SCHEMA)
    fig = _script("study_curves").draw(row, record)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 8 and len(shown) == 6  # 2 lines of 4, the last 2 blank
    assert [ax.get_title() for ax in shown] == runs
    assert all(len(ax.lines) == 1 for ax in shown)
    width, height = fig.get_size_inches()
    assert width == pytest.approx(4 * 3.2) and height == pytest.approx(2 * 2.8)


def test_committed_study_tables_are_rebuilt_identically_from_the_record(monkeypatch):
    """Every docs/study/tables/{variant}.md equals what the script makes from the record."""
    monkeypatch.chdir(REPO_ROOT)
    tables = sorted((REPO_ROOT / "docs" / "study" / "tables").glob("*.md"))
    if not tables:
        pytest.skip("no study table committed yet")
    rows = {row.variant: row for row in load_study()}
    script = _script()
    for table in tables:
        assert table.stem in rows, f"{table} has no row in config/study.tsv"
        assert table.read_text() == script.make_table(rows[table.stem], STUDY_RECORD), table


def test_the_per_image_record_is_text_that_reads_back_the_same_floats(tmp_path):
    values = np.array([-90.123456789012345, -1e-300, -123.0, np.nextafter(-88.0, 0.0)])
    np.savez(tmp_path / "in.npz", test_index=np.array([7, 3, 9000, 1]), importance_log_px=values)
    record_per_image(tmp_path / "in.npz", tmp_path / PER_IMAGE_RECORD)
    text = (tmp_path / PER_IMAGE_RECORD).read_text()
    assert text.splitlines()[0] == "test_index,importance_log_px"
    index, back = read_per_image(tmp_path / PER_IMAGE_RECORD)
    assert index.tolist() == [7, 3, 9000, 1]
    assert np.array_equal(back, values)  # 17 significant digits: the same float64, bit for bit


def test_rows_are_paired_image_by_image_and_refused_on_different_images(tmp_path: Path) -> None:
    """gae.study.paired_between_rows: the mean and s.e. of the per-image differences of one run
    in two rows, from their records; zero against itself; refused when the rows scored
    different test images, or a record is missing (workflow/scripts/study_paired.py uses it)."""
    rng = np.random.default_rng(3)
    index = rng.permutation(50)[:20]
    values = {"a": -90 + rng.normal(size=20), "b": -91 + rng.normal(size=20)}
    run = "bmnist-gae-L1-z50"
    for row, vals in values.items():
        npz = tmp_path / f"{row}.npz"
        np.savez(npz, test_index=index, importance_log_px=vals)
        folder = tmp_path / "record" / row / "seed7" / run
        folder.mkdir(parents=True)
        record_per_image(npz, folder / PER_IMAGE_RECORD)
    mean, sem, n = paired_between_rows(tmp_path / "record", "a", "b", 7, run)
    diff = values["a"] - values["b"]
    assert n == 20
    assert mean == pytest.approx(diff.mean(), abs=1e-12)
    assert sem == pytest.approx(diff.std(ddof=1) / np.sqrt(20), abs=1e-12)
    assert paired_between_rows(tmp_path / "record", "a", "a", 7, run)[:2] == (0.0, 0.0)
    np.savez(tmp_path / "c.npz", test_index=index[::-1], importance_log_px=values["a"])
    other = tmp_path / "record" / "c" / "seed7" / run
    other.mkdir(parents=True)
    record_per_image(tmp_path / "c.npz", other / PER_IMAGE_RECORD)
    with pytest.raises(GaeError, match="different test images"):
        paired_between_rows(tmp_path / "record", "a", "c", 7, run)
    with pytest.raises(GaeError, match="does not exist"):
        paired_between_rows(tmp_path / "record", "a", "d", 7, run)
