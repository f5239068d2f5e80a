"""Shared fixtures: the repository root, the offline data mirror and a prepared-data config.

``prepared_cfg`` (session scope) prepares ``mnist`` and ``bmnist`` ONCE per test session from the
mirror ``../shared/data`` into a session temp folder; tests that need real data (e.g. a short
training run on real MNIST) use it. It is a frozen ``gae.settings.Config``:
``prepared_cfg_tmp`` is a copy whose ``paths.results`` is the test's own ``tmp_path``;
``gae.config.updated`` changes other keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MIRROR = REPO_ROOT.parent / "shared" / "data"


def make_cfg(data_dir: Path, results_dir: Path | None = None, **data: Any) -> Any:
    """A validated configuration (params.yaml) with paths under ``data_dir`` and ``data.*`` keys
    overridden by ``data``. Downloads are off unless ``download=True`` is passed."""
    from gae.config import load_config

    overrides: dict[str, Any] = {
        "paths": {
            "data": str(data_dir),
            "results": str(results_dir or Path(data_dir).parent / "results"),
        },
        "data": {"download": False, **data},
    }
    return load_config(base=REPO_ROOT / "params.yaml", overrides=overrides)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def data_mirror() -> Path:
    """The offline mirror ``../shared/data``; tests using it are skipped where it is absent."""
    if not (MIRROR / "mnist" / "SHA256SUMS").is_file():
        pytest.skip(f"offline data mirror not found at {MIRROR} (needs mnist/ and frey/)")
    return MIRROR


def mirror_without(src: Path, dst: Path, *absent: str) -> Path:
    """A mirror at ``dst`` holding ``src``'s data sets except ``absent`` (each a folder of
    symlinks), for tests that need a mirror lacking some data set whatever ``../shared`` holds."""
    for folder in sorted(p for p in src.iterdir() if p.is_dir() and p.name not in absent):
        (dst / folder.name).mkdir(parents=True)
        for item in folder.iterdir():
            (dst / folder.name / item.name).symlink_to(item)
    return dst


@pytest.fixture(scope="session")
def grey_mirror(tmp_path_factory: pytest.TempPathFactory, data_mirror: Path) -> Path:
    """The offline mirror WITHOUT the Larochelle ``bmnist/`` files (MNIST and Frey only)."""
    return mirror_without(data_mirror, tmp_path_factory.mktemp("grey-mirror"), "bmnist")


@pytest.fixture(scope="session")
def prepared_cfg(tmp_path_factory: pytest.TempPathFactory, grey_mirror: Path) -> Any:
    """A config whose ``paths.data`` holds ``mnist`` and ``bmnist`` prepared from a mirror.

    The mirror is ``grey_mirror`` (no Larochelle files), so ``bmnist`` here is the seeded
    Bernoulli variant by ``bmnist_source: auto``'s fallback: small, fast and labelled.
    """
    from gae.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("prepared")
    cfg = make_cfg(root / "data", root / "results", mirror=str(grey_mirror))
    for dataset in ("mnist", "bmnist"):
        prepare_dataset(cfg, dataset, mirror=str(grey_mirror), force=False)
    return cfg


@pytest.fixture
def prepared_cfg_tmp(prepared_cfg: Any, tmp_path: Path) -> Any:
    """``prepared_cfg`` writing its results under this test's ``tmp_path``."""
    from gae.config import updated

    return updated(prepared_cfg, {"paths": {"results": str(tmp_path / "results")}})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The modules with `slow` tests (whole pipelines, minutes each) first: with two
    pytest-xdist workers (`make test`, each module kept on one worker) one worker starts on
    them while the other runs the many short modules, instead of one idling at the end while
    the last pipeline finishes. Within a module the order is kept (tests/test_dvc.py's
    `dvc exp run` must run last in its module's copy)."""
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)
