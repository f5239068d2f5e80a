"""Prepared data sets match independent parses of the raw files, exactly."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from gae.config import prepared_path, updated
from gae.data.prepare import load_prepared, prepare_dataset
from gae.errors import DataError
from tests.conftest import make_cfg


def _idx(path: Path) -> np.ndarray:
    """Independent IDX reader: big-endian header, magic 0x0000080N, then N uint32 dimensions."""
    data = gzip.decompress(path.read_bytes())
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic - 0x800
    assert 1 <= ndim <= 3
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim :], dtype=np.uint8).reshape(shape)


@pytest.fixture(scope="module")
def mnist_raw(data_mirror: Path) -> dict[str, np.ndarray]:
    folder = data_mirror / "mnist"
    return {
        "train_x": _idx(folder / "train-images-idx3-ubyte.gz").reshape(60000, 784),
        "train_y": _idx(folder / "train-labels-idx1-ubyte.gz"),
        "test_x": _idx(folder / "t10k-images-idx3-ubyte.gz").reshape(10000, 784),
        "test_y": _idx(folder / "t10k-labels-idx1-ubyte.gz"),
    }


def test_mnist_splits_are_the_idx_images_divided_by_255(prepared_cfg, mnist_raw):
    data = load_prepared(prepared_cfg, "mnist")
    expected_grey = {
        "train": mnist_raw["train_x"][:50000],
        "valid": mnist_raw["train_x"][50000:],
        "test": mnist_raw["test_x"],
    }
    expected_y = {
        "train": mnist_raw["train_y"][:50000],
        "valid": mnist_raw["train_y"][50000:],
        "test": mnist_raw["test_y"],
    }
    for split in ("train", "valid", "test"):
        x = data[f"x_{split}"]
        assert x.dtype == np.float32 and x.shape == expected_grey[split].shape
        # exactly k/255 rounded to float32 (computed in float64, then cast)
        np.testing.assert_array_equal(x, (expected_grey[split] / 255.0).astype(np.float32))
        assert data[f"y_{split}"].dtype == np.int64
        np.testing.assert_array_equal(data[f"y_{split}"], expected_y[split])
    assert data["x_train"].max() == 1.0 and data["x_train"].min() == 0.0


def test_mnist_provenance_records_sources_hashes_and_splits(prepared_cfg, data_mirror):
    meta = json.loads(prepared_path(prepared_cfg, "mnist", "json").read_text())
    sums = dict(
        reversed(line.split())
        for line in (data_mirror / "mnist" / "SHA256SUMS").read_text().splitlines()
    )
    assert meta["splits"] == {"train": 50000, "valid": 10000, "test": 10000}
    assert meta["dim"] == 784
    for source in meta["sources"]:
        assert source["sha256"] == sums[source["file"].removesuffix(".gz")]
        assert source["sha256_of"] == "decompressed content"
        assert source["canonical_urls"][0].startswith("https://ossci-datasets.s3.amazonaws.com/")
    npz = prepared_path(prepared_cfg, "mnist").read_bytes()
    assert meta["output"]["sha256"] == hashlib.sha256(npz).hexdigest()


def test_bmnist_bernoulli_is_the_documented_seeded_binarization(prepared_cfg, mnist_raw):
    meta = json.loads(prepared_path(prepared_cfg, "bmnist", "json").read_text())
    assert meta["variant"] == "bernoulli-seed0"  # downloads are off in the fixture: no .amat
    data = load_prepared(prepared_cfg, "bmnist")
    # re-implement the recipe documented in gae.data.prepare from the raw IDX bytes
    rng = np.random.Generator(np.random.PCG64(prepared_cfg.data.bmnist_seed))
    grey = {
        "train": mnist_raw["train_x"][:50000],
        "valid": mnist_raw["train_x"][50000:],
        "test": mnist_raw["test_x"],
    }
    for split in ("train", "valid", "test"):
        u = rng.random(grey[split].shape, dtype=np.float32)
        expected = (u < (grey[split] / 255.0).astype(np.float32)).astype(np.float32)
        np.testing.assert_array_equal(data[f"x_{split}"], expected)
    x = data["x_train"]
    assert set(np.unique(x).tolist()) == {0.0, 1.0}
    # the Bernoulli means are the grey levels: the pixel averages agree to sampling error
    # (sd of the mean over 39.2M pixels < 1e-4)
    assert abs(x.mean() - (grey["train"] / 255.0).mean()) < 1e-3
    assert (x[grey["train"] == 0] == 0).all() and (x[grey["train"] == 255] == 1).all()
    np.testing.assert_array_equal(data["y_valid"], mnist_raw["train_y"][50000:])


def test_bmnist_bernoulli_seed_changes_the_draw(prepared_cfg, tmp_path, data_mirror):
    cfg = make_cfg(tmp_path / "data", mirror=str(data_mirror), bmnist_source="bernoulli")
    # reuse the verified raw files of the session folder: no second copy from the mirror
    cfg = updated(cfg, {"data": {"bmnist_seed": 1}, "paths": {"data": str(tmp_path / "data")}})
    raw = Path(prepared_cfg.paths.data) / "raw"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw").symlink_to(raw)
    prepare_dataset(cfg, "bmnist", mirror=None)
    meta = json.loads(prepared_path(cfg, "bmnist", "json").read_text())
    assert meta["variant"] == "bernoulli-seed1"
    ours = load_prepared(cfg, "bmnist")["x_valid"]
    seed0 = load_prepared(prepared_cfg, "bmnist")["x_valid"]
    assert not np.array_equal(ours, seed0)


def test_load_prepared_applies_subset_and_keeps_file_full(prepared_cfg):
    cfg = updated(prepared_cfg, {"data": {"subset": {"train": 123, "valid": None, "test": 7}}})
    data = load_prepared(cfg, "mnist")
    full = load_prepared(prepared_cfg, "mnist")
    assert data["x_train"].shape == (123, 784) and data["y_train"].shape == (123,)
    assert data["x_valid"].shape == (10000, 784)
    assert data["x_test"].shape == (7, 784) and data["y_test"].shape == (7,)
    # a fixed seeded random sample, recorded as rows of the file, never the head
    rows = data["idx_train"]
    assert rows.shape == (123,) and len(set(rows.tolist())) == 123
    assert not np.array_equal(np.sort(rows), np.arange(123))
    np.testing.assert_array_equal(data["x_train"], full["x_train"][rows])
    np.testing.assert_array_equal(data["y_test"], full["y_test"][data["idx_test"]])
    np.testing.assert_array_equal(full["idx_valid"], np.arange(10000))  # no subset: all rows
    assert full["x_train"].shape == (50000, 784)
    again = load_prepared(cfg, "mnist")  # the same rows every time, for every run
    np.testing.assert_array_equal(again["idx_train"], rows)


def test_load_prepared_missing_and_malformed(tmp_path):
    cfg = make_cfg(tmp_path / "data")
    with pytest.raises(DataError, match=r"run `gae prepare frey`"):
        load_prepared(cfg, "frey")
    path = prepared_path(cfg, "frey")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"frey\.npz is not a readable \.npz.*--force"):
        load_prepared(cfg, "frey")
    np.savez(path, x_train=np.zeros((3, 4), np.float32), x_valid=np.zeros((2, 4), np.float32))
    with pytest.raises(DataError, match=r"'x_test' is missing.*--force"):
        load_prepared(cfg, "frey")
    np.savez(
        path,
        x_train=np.full((3, 4), 2.0, np.float32),
        x_valid=np.zeros((2, 4), np.float32),
        x_test=np.zeros((2, 4), np.float32),
    )
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        load_prepared(cfg, "frey")


def test_frey_split_is_a_seeded_permutation_of_all_frames(tmp_path, data_mirror):
    cfg = make_cfg(tmp_path / "data", mirror=str(data_mirror))
    prepare_dataset(cfg, "frey", mirror=str(data_mirror))
    data = load_prepared(cfg, "frey")
    frames = scipy.io.loadmat(data_mirror / "frey" / "frey_rawface.mat")["ff"].T
    frames = frames.reshape(-1, 28, 20).reshape(-1, 560)
    perm = np.random.Generator(np.random.PCG64(0)).permutation(1965)
    expected = {"valid": perm[:200], "test": perm[200:400], "train": perm[400:]}
    for split, rows in expected.items():
        np.testing.assert_array_equal(data[f"x_{split}"], (frames[rows] / 255.0).astype(np.float32))
    assert not any(key.startswith("y_") for key in data)
    meta = json.loads(prepared_path(cfg, "frey", "json").read_text())
    assert meta["splits"] == {"train": 1565, "valid": 200, "test": 200}
    assert meta["variant"] == "split-seed0"


def test_outputs_are_skipped_when_current_and_rebuilt_when_needed(tmp_path, data_mirror, caplog):
    cfg = make_cfg(tmp_path / "data", mirror=str(data_mirror))
    npz = prepare_dataset(cfg, "frey", mirror=str(data_mirror))
    json_path = prepared_path(cfg, "frey", "json")
    stamp = (npz.stat().st_mtime_ns, json_path.stat().st_mtime_ns)
    with caplog.at_level(logging.INFO, logger="gae.data"):
        prepare_dataset(cfg, "frey", mirror=str(data_mirror))
    assert "up to date" in caplog.text
    assert (npz.stat().st_mtime_ns, json_path.stat().st_mtime_ns) == stamp

    before = npz.read_bytes()
    prepare_dataset(cfg, "frey", mirror=str(data_mirror), force=True)
    assert npz.stat().st_mtime_ns != stamp[0]
    assert npz.read_bytes() == before  # deterministic rebuild

    # a changed setting rebuilds with the new split
    cfg = updated(cfg, {"data": {"frey_split": {"seed": 1}}})
    prepare_dataset(cfg, "frey", mirror=str(data_mirror))
    assert json.loads(json_path.read_text())["variant"] == "split-seed1"
    assert npz.read_bytes() != before

    # a tampered npz no longer matches its provenance: rebuilt
    good = npz.read_bytes()
    npz.write_bytes(good[:-10])
    prepare_dataset(cfg, "frey", mirror=str(data_mirror))
    assert npz.read_bytes() == good


def _synthetic_tfd(path: Path, n: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    folds = rng.integers(0, 4, size=(n, 5)).astype(np.int32)
    folds[:4, :] = [[1], [2], [3], [0]]  # every fold has each split
    labs_ex = rng.integers(1, 8, size=(n, 1)).astype(np.int32)
    labs_id = rng.integers(1, 100, size=(n, 1)).astype(np.int32)
    scipy.io.savemat(
        path, {"images": images, "folds": folds, "labs_ex": labs_ex, "labs_id": labs_id}
    )
    return {"images": images, "folds": folds, "labs_ex": labs_ex}


def test_tfd_from_a_user_file_uses_the_configured_fold(tmp_path):
    mat = tmp_path / "TFD_48x48.mat"
    truth = _synthetic_tfd(mat)
    cfg = make_cfg(tmp_path / "data", tfd_path=str(mat), tfd_fold=2)
    prepare_dataset(cfg, "tfd")
    data = load_prepared(cfg, "tfd")
    for split, code in (("train", 1), ("valid", 2), ("test", 3)):
        rows = truth["folds"][:, 2] == code
        np.testing.assert_array_equal(
            data[f"x_{split}"],
            (truth["images"][rows].reshape(-1, 2304) / 255.0).astype(np.float32),
        )
        np.testing.assert_array_equal(data[f"y_{split}"], truth["labs_ex"][rows, 0])
    meta = json.loads(prepared_path(cfg, "tfd", "json").read_text())
    assert meta["variant"] == "fold2"
    assert meta["sources"][0]["sha256"] == hashlib.sha256(mat.read_bytes()).hexdigest()
    total = sum(meta["splits"].values())
    assert total == int((truth["folds"][:, 2] > 0).sum())


def test_current_mnist_output_needs_no_raw_files(prepared_cfg, monkeypatch):
    """MNIST's input hashes are published, so a current output is recognised without fetching
    (e.g. after `dvc pull` of data/prepared alone)."""
    import gae.data.prepare as prepare_module

    def no_fetch(*args, **kwargs):
        raise AssertionError("fetch must not be called for a current output")

    monkeypatch.setattr(prepare_module, "fetch", no_fetch)
    npz = prepared_path(prepared_cfg, "mnist")
    stamp = npz.stat().st_mtime_ns
    # auto would first look for the .amat files
    cfg = updated(prepared_cfg, {"data": {"bmnist_source": "bernoulli"}})
    for dataset in ("mnist", "bmnist"):
        assert prepare_dataset(cfg, dataset, mirror=None) == prepared_path(cfg, dataset)
    assert npz.stat().st_mtime_ns == stamp
