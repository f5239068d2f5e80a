"""The Snakemake HTML report (`snakemake --report results/report.html`): every figure, table and
nearest-neighbour image, and results/report.md, captioned with the strings results/report.md
uses (gae.paths; workflow/report/*.rst written from them by workflow/scripts/report_captions.py).

No step runs: the report test renders stand-in outputs recorded with `snakemake --touch`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gae.config import load_config, run_dir
from gae.paths import (
    DIAGNOSTICS_FILE,
    FIGURE_CAPTIONS,
    NEIGHBOURS_CAPTION,
    NEIGHBOURS_FIGURE,
    TABLE_TITLES,
    caption_file,
    figure_caption,
    figure_kind,
    figure_paths,
    report_captions,
    report_inputs,
    table_paths,
)
from gae.report import make_report
from tests.test_dvc import small_plan
from tests.test_pipeline import REPO_ROOT, copy_workflow, planned_outputs, snakemake

SCRIPT = "workflow/scripts/report_captions.py"


def test_the_caption_files_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--check"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    for name, text in report_captions().items():
        assert (REPO_ROOT / caption_file(name)).read_text() == text
        assert text.replace("``", "`").strip() in {
            *FIGURE_CAPTIONS.values(),
            *TABLE_TITLES.values(),
            NEIGHBOURS_CAPTION,
            report_captions()["report"].strip(),
        }


def test_results_report_md_uses_the_same_caption_strings(tmp_path: Path) -> None:
    results = {"paths": {"results": str(tmp_path / "results")}}
    cfg = load_config(base=REPO_ROOT / "params.yaml", overrides=results)
    for path in report_inputs(cfg):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}\n" if path.name == DIAGNOSTICS_FILE else "| a |\n| --- |\n")
    report = make_report(cfg).read_text()
    for figure in figure_paths(cfg):
        assert figure_caption(figure) in report, figure
        assert figure_caption(figure).startswith(FIGURE_CAPTIONS[figure_kind(figure)])
    assert all(f"## {title}" in report for title in TABLE_TITLES.values())
    assert NEIGHBOURS_CAPTION in report


def test_snakemake_report_holds_every_figure_and_table_with_its_caption(tmp_path: Path) -> None:
    root = small_plan(copy_workflow(tmp_path))
    for name in planned_outputs(root):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(name) + "\n")
    touch = snakemake(root, "--touch", "--cores", "1", "--no-hooks", "--quiet")
    assert touch.returncode == 0, touch.stderr
    proc = snakemake(root, "--report", "results/report.html")
    assert proc.returncode == 0, proc.stderr
    cfg = load_config(base=root / "params.yaml")
    expected = [p.name for p in figure_paths(cfg) + table_paths(cfg)] + ["report.md"]
    expected += [NEIGHBOURS_FIGURE] * len(cfg.evaluate.diagnostics)
    added = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("Adding ")]
    assert sorted(added) == sorted(expected)
    html = (root / "results" / "report.html").read_text()
    for kind in {figure_kind(p) for p in figure_paths(cfg)}:
        # docutils turns the quotes into HTML entities: compare the text before the first one
        assert FIGURE_CAPTIONS[kind].split("'")[0] in html, kind
    for title in TABLE_TITLES.values():
        assert title in html
    assert "nearest training images" in html and "data set" in html
    assert run_dir(cfg, cfg.evaluate.diagnostics[0]).name in html  # the run label
