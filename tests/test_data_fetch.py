"""The download path (a local http.server stands in for the canonical hosts) and the parsers."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import logging
import threading

import numpy as np
import pytest
import scipy.io

from gae.config import prepared_path
from gae.data import sources
from gae.data.fetch import RemoteFile, content_sha256, fetch
from gae.data.formats import parse_amat, parse_idx
from gae.data.prepare import load_prepared, prepare_dataset
from gae.errors import DataError
from tests.conftest import make_cfg

DEAD_URL = "http://127.0.0.1:9/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def http_root(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 (a random free port); yield (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


def test_fetch_falls_back_to_the_next_url_and_verifies(tmp_path, http_root, data_mirror):
    root, base = http_root
    name = "t10k-labels-idx1-ubyte.gz"
    (root / name).write_bytes((data_mirror / "mnist" / name).read_bytes())
    spec = RemoteFile("mnist", name, (DEAD_URL + name, base + name), sources.MNIST_SHA256[name])
    got = fetch(spec, tmp_path / "raw", mirror=None, download=True)
    assert got.origin == base + name
    assert got.path == tmp_path / "raw" / "mnist" / name
    assert got.sha256 == sources.MNIST_SHA256[name] == content_sha256(got.path)
    # no .part left: the file and the log of where it came from
    assert sorted(p.name for p in got.path.parent.iterdir()) == sorted([name, "fetch_log.jsonl"])
    # a second fetch uses the verified cached copy
    assert fetch(spec, tmp_path / "raw", None, download=False).origin.startswith("cache")


def test_a_corrupt_download_is_refused_and_not_kept(tmp_path, http_root, data_mirror):
    root, base = http_root
    name = "t10k-labels-idx1-ubyte.gz"
    (root / name).write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 20))
    spec = RemoteFile("mnist", name, (base + name, base + "missing.gz"), sources.MNIST_SHA256[name])
    with pytest.raises(DataError) as info:
        fetch(spec, tmp_path / "raw", mirror=None, download=True)
    message = str(info.value)
    assert f"{base + name} (fails verification: sha256" in message
    assert f"{base}missing.gz (HTTP 404" in message
    assert not (tmp_path / "raw" / "mnist").exists() or not any(
        (tmp_path / "raw" / "mnist").iterdir()
    )


def test_frey_canonical_download_is_verified_by_content(
    tmp_path, http_root, data_mirror, monkeypatch
):
    """The canonical Frey file's bytes differ from the mirror's, so a download is checked by
    content: here a re-saved copy (other bytes, same frames) is accepted."""
    root, base = http_root
    frames = scipy.io.loadmat(data_mirror / "frey" / "frey_rawface.mat")["ff"]
    scipy.io.savemat(root / "frey_rawface.mat", {"ff": frames, "note": np.array([1.0])})
    assert (root / "frey_rawface.mat").read_bytes() != (
        data_mirror / "frey" / "frey_rawface.mat"
    ).read_bytes()
    monkeypatch.setattr(sources, "FREY_URLS", (base + "frey_rawface.mat",))
    cfg = make_cfg(tmp_path / "data", download=True)
    prepare_dataset(cfg, "frey", mirror=None)
    meta = json.loads(prepared_path(cfg, "frey", "json").read_text())
    (source,) = meta["sources"]
    assert source["verified_by"] == (
        "sha256 in the mirror's SHA256SUMS (mirror copies) + content check"
    )
    (entry,) = _fetch_log(tmp_path / "data", "frey")
    assert entry["fetched_from"] == base + "frey_rawface.mat"
    assert entry["verified_by"] == "content check"  # this copy: a download, by content
    assert source["sha256"] == hashlib.sha256((root / "frey_rawface.mat").read_bytes()).hexdigest()
    data = load_prepared(cfg, "frey")
    assert sum(data[f"x_{s}"].shape[0] for s in ("train", "valid", "test")) == 1965


def test_frey_download_with_wrong_content_is_refused(tmp_path, http_root, monkeypatch):
    root, base = http_root
    scipy.io.savemat(root / "frey_rawface.mat", {"ff": np.zeros((560, 100), np.uint8)})
    monkeypatch.setattr(sources, "FREY_URLS", (base + "frey_rawface.mat",))
    cfg = make_cfg(tmp_path / "data", download=True)
    with pytest.raises(DataError, match=r"variable 'ff' must be uint8 of shape \(560, 1965\)"):
        prepare_dataset(cfg, "frey", mirror=None)
    assert not prepared_path(cfg, "frey").exists()


def test_file_url_works_too(tmp_path, data_mirror, monkeypatch):
    url = (data_mirror / "frey" / "frey_rawface.mat").resolve().as_uri()
    monkeypatch.setattr(sources, "FREY_URLS", (DEAD_URL + "x.mat", url))
    cfg = make_cfg(tmp_path / "data", download=True)
    prepare_dataset(cfg, "frey", mirror=None)
    assert [e["fetched_from"] for e in _fetch_log(tmp_path / "data", "frey")] == [url]


def _fetch_log(data_dir, dataset: str) -> list[dict]:
    path = data_dir / "raw" / dataset / "fetch_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_provenance_depends_on_content_only(tmp_path, data_mirror):
    """Re-preparing from the data/raw cache (not the mirror) writes the same provenance JSON,
    byte for byte, so DVC sees data/prepared unchanged; the origin goes to fetch_log.jsonl."""
    cfg = make_cfg(tmp_path / "data", mirror=str(data_mirror))
    prepare_dataset(cfg, "frey", mirror=str(data_mirror))
    first = prepared_path(cfg, "frey", "json").read_bytes()
    prepare_dataset(cfg, "frey", mirror=None, force=True)  # now from the verified cache
    assert prepared_path(cfg, "frey", "json").read_bytes() == first
    log_entries = _fetch_log(tmp_path / "data", "frey")
    assert [e["fetched_from"] for e in log_entries] == [
        str(data_mirror / "frey" / "frey_rawface.mat")
    ]
    assert "fetched_from" not in first.decode()


def test_corrupt_cached_raw_copy_is_fetched_again(tmp_path, data_mirror, caplog):
    cfg = make_cfg(tmp_path / "data", mirror=str(data_mirror))
    prepare_dataset(cfg, "frey", mirror=str(data_mirror))
    raw = tmp_path / "data" / "raw" / "frey" / "frey_rawface.mat"
    raw.write_bytes(raw.read_bytes()[:1000])
    with pytest.raises(DataError, match="frey/frey_rawface.mat"):
        prepare_dataset(cfg, "frey", mirror=None, force=True)  # no source: fails ...
    assert not raw.exists()  # ... and the bad copy is not left under the real name
    raw.write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="gae.data"):
        prepare_dataset(cfg, "frey", mirror=str(data_mirror))
    assert "fails verification" in caplog.text
    assert raw.read_bytes() == (data_mirror / "frey" / "frey_rawface.mat").read_bytes()


def _amat(bits: np.ndarray) -> bytes:
    return "".join(" ".join(map(str, row)) + "\n" for row in bits).encode()


def test_bmnist_larochelle_amat_when_reachable(tmp_path, http_root, monkeypatch):
    """With bmnist_source auto and the .amat files reachable, they are used as they are."""
    root, base = http_root
    rows = {
        "binarized_mnist_train.amat": 6,
        "binarized_mnist_valid.amat": 3,
        "binarized_mnist_test.amat": 2,
    }
    rng = np.random.default_rng(1)
    truth = {}
    for name, n in rows.items():
        truth[name] = rng.integers(0, 2, size=(n, 784))
        (root / name).write_bytes(_amat(truth[name]))
    monkeypatch.setattr(sources, "LAROCHELLE_ROWS", rows)
    monkeypatch.setattr(sources, "LAROCHELLE_BASE_URLS", (base,))
    # these stand-in files are not the canonical ones: publish their own hashes for the test
    published = {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in rows}
    monkeypatch.setattr(sources, "LAROCHELLE_SHA256", published)
    cfg = make_cfg(tmp_path / "data", download=True, bmnist_source="auto")
    prepare_dataset(cfg, "bmnist", mirror=None)
    data = load_prepared(cfg, "bmnist")
    for split in ("train", "valid", "test"):
        expected = truth[f"binarized_mnist_{split}.amat"].astype(np.float32)
        np.testing.assert_array_equal(data[f"x_{split}"], expected)
    assert not any(key.startswith("y_") for key in data)
    meta = json.loads(prepared_path(cfg, "bmnist", "json").read_text())
    assert meta["variant"] == "larochelle-amat"
    assert "no labels" in meta["labels"]
    assert meta["splits"] == {"train": 6, "valid": 3, "test": 2}
    assert {r["verified_by"] for r in meta["sources"]} == {"published sha256 + content check"}


def test_a_downloaded_amat_is_checked_against_the_published_sha256(
    tmp_path, http_root, monkeypatch
):
    """A well-formed .amat whose bytes are not the published file's is refused, not used."""
    root, base = http_root
    rows = {
        "binarized_mnist_train.amat": 2,
        "binarized_mnist_valid.amat": 1,
        "binarized_mnist_test.amat": 1,
    }
    rng = np.random.default_rng(2)
    for name, n in rows.items():
        (root / name).write_bytes(_amat(rng.integers(0, 2, size=(n, 784))))
    monkeypatch.setattr(sources, "LAROCHELLE_ROWS", rows)
    monkeypatch.setattr(sources, "LAROCHELLE_BASE_URLS", (base,))
    # the real published hashes stay in force: these valid-looking files do not match them
    cfg = make_cfg(tmp_path / "data", download=True, bmnist_source="auto")
    with pytest.raises(DataError, match=r"found but fails verification.*expected ad693b29"):
        prepare_dataset(cfg, "bmnist", mirror=None)
    assert not prepared_path(cfg, "bmnist").exists()


def test_parse_idx_checks_magic_and_size():
    good = b"\x00\x00\x08\x02" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(6)
    assert parse_idx(good, "x", (2, 3)).shape == (2, 3)
    with pytest.raises(DataError, match="wrong IDX magic number 0x00000d02"):
        parse_idx(b"\x00\x00\x0d\x02" + good[4:], "x", (2, 3))
    with pytest.raises(DataError, match="expected 0x00000803"):
        parse_idx(good, "x", (2, 3, 1))
    with pytest.raises(DataError, match="declares shape"):
        parse_idx(good + b"\x00", "x", (2, 3))
    with pytest.raises(DataError, match="too short"):
        parse_idx(b"\x00\x00", "x")
    with pytest.raises(DataError, match=r"IDX shape \(2, 3\), expected \(3, 2\)"):
        parse_idx(good, "x", (3, 2))


def test_parse_amat_checks_values_and_shape():
    bits = np.array([[0, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(parse_amat(_amat(bits), "a", rows=2, cols=3), bits)
    with pytest.raises(DataError, match="other than 0 or 1"):
        parse_amat(b"0 1 10\n1 0 0\n", "a", rows=2, cols=3)
    with pytest.raises(DataError, match=r"byte 2 is '2'"):
        parse_amat(b"0 2 1\n1 0 0\n", "a", rows=2, cols=3)
    with pytest.raises(DataError, match="1 lines"):
        parse_amat(b"0 1 1\n", "a", rows=2, cols=3)
    with pytest.raises(DataError, match="expected 3"):
        parse_amat(b"0 1\n1 0 0\n", "a", rows=2, cols=3)


def test_content_sha256_hashes_decompressed_gzip(tmp_path):
    payload = b"some idx content" * 100
    for level in (1, 9):  # different archives, same content, same hash
        path = tmp_path / f"f{level}.gz"
        path.write_bytes(gzip.compress(payload, compresslevel=level))
        assert content_sha256(path) == hashlib.sha256(payload).hexdigest()


def test_bmnist_auto_refuses_a_corrupt_amat_rather_than_falling_back(
    tmp_path, http_root, monkeypatch
):
    root, base = http_root
    rows = {
        "binarized_mnist_train.amat": 2,
        "binarized_mnist_valid.amat": 1,
        "binarized_mnist_test.amat": 1,
    }
    (root / "binarized_mnist_train.amat").write_bytes(b"0 1 2\n")  # not 784 binary values
    monkeypatch.setattr(sources, "LAROCHELLE_ROWS", rows)
    monkeypatch.setattr(sources, "LAROCHELLE_BASE_URLS", (base,))
    cfg = make_cfg(tmp_path / "data", download=True, bmnist_source="auto")
    with pytest.raises(DataError, match=r"found but fails verification.*binarized_mnist_train"):
        prepare_dataset(cfg, "bmnist", mirror=None)
    assert not prepared_path(cfg, "bmnist").exists()
