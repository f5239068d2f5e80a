"""Bad input to `gae prepare`: each case exits non-zero with one clear message naming the file,
leaves no partial output behind, and keeps a good earlier output untouched.

All cases run through ``gae.cli.main`` (the installed command's entry point).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml

from gae.cli import main
from gae.data import sources
from tests.conftest import REPO_ROOT, mirror_without

DEAD_URL = "http://127.0.0.1:9/"  # discard port: connection refused at once, no network needed


@pytest.fixture(autouse=True)
def _offline_urls(monkeypatch):
    """Point every canonical URL at a closed local port: tests never touch the network."""
    monkeypatch.setattr(sources, "MNIST_BASE_URLS", (DEAD_URL + "a/", DEAD_URL + "b/"))
    monkeypatch.setattr(sources, "LAROCHELLE_BASE_URLS", (DEAD_URL + "l/",))
    monkeypatch.setattr(sources, "FREY_URLS", (DEAD_URL + "frey_rawface.mat",))
    monkeypatch.delenv("GAE_DATA_MIRROR", raising=False)


def _prepare(
    tmp_path: Path, capsys, *args: str, data: dict | None = None, data_dir: Path | None = None
) -> tuple[int, str]:
    """Run `gae prepare ARGS` with paths.data = tmp_path/data (downloads on, to dead URLs)."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "paths": {
                    "data": str(data_dir or tmp_path / "data"),
                    "results": str(tmp_path / "results"),
                },
                "data": {"download": True, **(data or {})},
            }
        )
    )
    capsys.readouterr()
    rc = main(
        ["prepare", *args, "--params", str(REPO_ROOT / "params.yaml"), "--config", str(overlay)]
    )
    err = capsys.readouterr().err
    return rc, err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("gae prepare: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _mirror_copy(src: Path, dst: Path, dataset: str) -> Path:
    """A mirror at ``dst`` whose ``dataset`` files are symlinks to ``src`` (replace to corrupt)."""
    (dst / dataset).mkdir(parents=True)
    for item in (src / dataset).iterdir():
        (dst / dataset / item.name).symlink_to(item)
    return dst


def _replace(mirror: Path, rel: str, content: bytes) -> None:
    target = mirror / rel
    target.unlink()
    target.write_bytes(content)


def _no_partial_files(tmp_path: Path) -> None:
    leftovers = [p for p in (tmp_path / "data").rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    prepared = tmp_path / "data" / "prepared"
    assert not prepared.exists() or not list(prepared.glob("*.npz"))


def test_truncated_gz_is_refused(tmp_path, capsys, data_mirror):
    mirror = _mirror_copy(data_mirror, tmp_path / "mirror", "mnist")
    name = "train-labels-idx1-ubyte.gz"
    _replace(mirror, f"mnist/{name}", (data_mirror / "mnist" / name).read_bytes()[:10000])
    rc, err = _prepare(tmp_path, capsys, "mnist", "--mirror", str(mirror))
    line = _error_line(err)
    assert rc == 1
    assert name in line and "gzip" in line and "truncated or corrupt" in line
    assert "--mirror" in line and "GAE_DATA_MIRROR" in line
    assert not (tmp_path / "data" / "raw" / "mnist" / name).exists()
    _no_partial_files(tmp_path)


def test_corrupted_gz_stream_is_refused(tmp_path, capsys, data_mirror):
    mirror = _mirror_copy(data_mirror, tmp_path / "mirror", "mnist")
    name = "t10k-labels-idx1-ubyte.gz"
    blob = bytearray((data_mirror / "mnist" / name).read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # inside the deflate stream
    _replace(mirror, f"mnist/{name}", bytes(blob))
    rc, err = _prepare(tmp_path, capsys, "mnist", "--mirror", str(mirror))
    line = _error_line(err)
    assert rc == 1 and name in line
    # either the deflate stream or its CRC check fails; both are reported as a bad archive
    assert "gzip" in line or "sha256" in line
    _no_partial_files(tmp_path)


def test_one_changed_byte_in_the_content_fails_the_checksum(tmp_path, capsys, data_mirror):
    """The acceptance case: a re-gzipped mirror file whose content differs by one byte."""
    mirror = _mirror_copy(data_mirror, tmp_path / "mirror", "mnist")
    name = "t10k-images-idx3-ubyte.gz"
    content = bytearray(gzip.decompress((data_mirror / "mnist" / name).read_bytes()))
    content[16 + 5000] ^= 0x01  # one pixel of the first test image
    _replace(mirror, f"mnist/{name}", gzip.compress(bytes(content), compresslevel=1))
    rc, err = _prepare(tmp_path, capsys, "mnist", "--mirror", str(mirror))
    line = _error_line(err)
    assert rc == 1 and name in line
    assert hashlib.sha256(bytes(content)).hexdigest() in line  # what it got
    assert sources.MNIST_SHA256[name] in line  # what it expected
    _no_partial_files(tmp_path)


def test_wrong_checksum_in_mirror_sha256sums_is_refused(tmp_path, capsys, data_mirror):
    """Frey's mirror copy is checked against the mirror's SHA256SUMS; a wrong entry fails."""
    mirror = _mirror_copy(data_mirror, tmp_path / "mirror", "frey")
    _replace(mirror, "frey/SHA256SUMS", b"0" * 64 + b"  frey_rawface.mat\n")
    rc, err = _prepare(tmp_path, capsys, "frey", "--mirror", str(mirror))
    line = _error_line(err)
    assert rc == 1 and "frey_rawface.mat" in line and "0" * 64 in line
    _no_partial_files(tmp_path)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"\x00\x00\x08\x02" + b[4:], "wrong IDX magic number 0x00000802"),
        (lambda b: b[:-1], "IDX header declares"),
    ],
    ids=["magic", "size"],
)
def test_bad_idx_file_is_refused(tmp_path, capsys, data_mirror, monkeypatch, mangle, message):
    """An IDX file with a wrong magic number or size. The published hash would catch it first,
    so this test registers the bad file's own hash as expected, to reach the IDX parser."""
    mirror = _mirror_copy(data_mirror, tmp_path / "mirror", "mnist")
    name = "t10k-labels-idx1-ubyte.gz"
    content = mangle(gzip.decompress((data_mirror / "mnist" / name).read_bytes()))
    _replace(mirror, f"mnist/{name}", gzip.compress(content))
    hashes = dict(sources.MNIST_SHA256)
    hashes[name] = hashlib.sha256(content).hexdigest()
    monkeypatch.setattr(sources, "MNIST_SHA256", hashes)
    rc, err = _prepare(tmp_path, capsys, "mnist", "--mirror", str(mirror))
    line = _error_line(err)
    assert rc == 1 and name in line and message in line
    _no_partial_files(tmp_path)


@pytest.mark.parametrize("via", ["flag", "env"])
def test_missing_mirror_and_no_network(tmp_path, capsys, monkeypatch, via):
    missing = tmp_path / "no-such-mirror"
    args = ["mnist"]
    if via == "flag":
        args += ["--mirror", str(missing)]
    else:
        monkeypatch.setenv("GAE_DATA_MIRROR", str(missing))
    rc, err = _prepare(tmp_path, capsys, *args)
    line = _error_line(err)
    assert rc == 1
    assert "mnist/train-images-idx3-ubyte.gz" in line
    assert f"mirror folder {missing} (does not exist)" in line
    assert DEAD_URL + "a/train-images-idx3-ubyte.gz" in line
    assert DEAD_URL + "b/train-images-idx3-ubyte.gz" in line
    assert "--mirror" in line and "GAE_DATA_MIRROR" in line
    _no_partial_files(tmp_path)


def test_downloads_disabled_says_so(tmp_path, capsys):
    rc, err = _prepare(tmp_path, capsys, "frey", data={"download": False})
    line = _error_line(err)
    assert rc == 1 and "frey/frey_rawface.mat" in line and "data.download is false" in line


def test_unknown_dataset_name(tmp_path, capsys):
    rc, err = _prepare(tmp_path, capsys, "cifar10")
    line = _error_line(err)
    assert rc == 1 and "unknown data set 'cifar10'" in line and "mnist" in line


def test_tfd_absent_explains_the_licence(tmp_path, capsys):
    rc, err = _prepare(tmp_path, capsys, "tfd")
    line = _error_line(err)
    assert rc == 1
    for words in ("licence-gated", "data.tfd_path", "--tfd-path", "`frey`"):
        assert words in line
    rc, err = _prepare(tmp_path, capsys, "tfd", "--tfd-path", str(tmp_path / "TFD_48x48.mat"))
    line = _error_line(err)
    assert rc == 1 and "TFD_48x48.mat does not exist" in line


def test_tfd_with_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "TFD_48x48.mat"
    scipy.io.savemat(bad, {"images": np.zeros((3, 48, 48), np.uint8)})  # no 'folds'
    rc, err = _prepare(tmp_path, capsys, "tfd", "--tfd-path", str(bad))
    assert rc == 1 and "lacks the variable(s) ['folds']" in _error_line(err)
    bad.write_bytes(b"not a mat file at all")
    rc, err = _prepare(tmp_path, capsys, "tfd", "--tfd-path", str(bad))
    assert rc == 1 and "not a readable MATLAB .mat file" in _error_line(err)


def test_bmnist_larochelle_required_but_unreachable(tmp_path, capsys, data_mirror):
    mirror = mirror_without(data_mirror, tmp_path / "mirror", "bmnist")
    rc, err = _prepare(
        tmp_path,
        capsys,
        "bmnist",
        "--mirror",
        str(mirror),
        data={"bmnist_source": "larochelle"},
    )
    line = _error_line(err)
    assert rc == 1 and "data.bmnist_source is 'larochelle'" in line
    assert "binarized_mnist_train.amat" in line and "bernoulli" in line
    _no_partial_files(tmp_path)


def test_unwritable_output_folder(tmp_path, capsys, data_mirror):
    """The output folder cannot be created: data/prepared is a regular file. (Tests run as root,
    for whom chmod does not block writes, so this checks a failing mkdir, not permissions.)"""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prepared").write_text("in the way")
    rc, err = _prepare(tmp_path, capsys, "frey", "--mirror", str(data_mirror))
    line = _error_line(err)
    assert rc == 1 and "cannot write" in line and "prepared/frey.npz" in line
    assert (tmp_path / "data" / "prepared").read_text() == "in the way"


def test_unwritable_raw_folder(tmp_path, capsys, data_mirror):
    """paths.data lies below a regular file, so data/raw/frey cannot be created (again a
    failing mkdir, not a permission check: tests run as root)."""
    (tmp_path / "blocker").write_text("a file, not a folder")
    rc, err = _prepare(
        tmp_path,
        capsys,
        "frey",
        "--mirror",
        str(data_mirror),
        data_dir=tmp_path / "blocker" / "data",
    )
    line = _error_line(err)
    assert rc == 1 and "cannot create a file in" in line and "blocker/data/raw/frey" in line
    assert "paths.data" in line


def _good_frey(tmp_path: Path, capsys, data_mirror: Path) -> dict[str, str]:
    """Prepare frey into tmp_path/data, then drop its raw copy; return the outputs' hashes."""
    rc, _ = _prepare(tmp_path, capsys, "frey", "--mirror", str(data_mirror))
    assert rc == 0
    shutil.rmtree(tmp_path / "data" / "raw")
    dst = tmp_path / "data" / "prepared"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dst.iterdir()}


def _unchanged(tmp_path: Path, hashes: dict[str, str]) -> None:
    dst = tmp_path / "data" / "prepared"
    assert sorted(os.listdir(dst)) == sorted(hashes) == ["frey.json", "frey.npz"]  # no temp files
    for name, sha in hashes.items():
        assert hashlib.sha256((dst / name).read_bytes()).hexdigest() == sha


def test_failed_rebuild_keeps_the_good_earlier_output(tmp_path, capsys, data_mirror):
    hashes = _good_frey(tmp_path, capsys, data_mirror)
    mirror = _mirror_copy(data_mirror, tmp_path / "mirror", "frey")
    name = "frey_rawface.mat"
    _replace(mirror, f"frey/{name}", (data_mirror / "frey" / name).read_bytes()[:5000])
    rc, err = _prepare(tmp_path, capsys, "frey", "--force", "--mirror", str(mirror))
    assert rc == 1 and name in _error_line(err)
    _unchanged(tmp_path, hashes)


def test_write_failure_midway_leaves_no_partial_npz(tmp_path, capsys, data_mirror, monkeypatch):
    """A disk that fills up while the npz is written (simulated: np.savez writes part of the
    file, then raises ENOSPC): the good earlier output stays, no temp file is left."""
    hashes = _good_frey(tmp_path, capsys, data_mirror)

    def full_disk(handle, **arrays):
        handle.write(b"PK\x03\x04" + b"\x00" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    rc, err = _prepare(tmp_path, capsys, "frey", "--force", "--mirror", str(data_mirror))
    line = _error_line(err)
    assert rc == 1 and "frey.npz" in line and "No space left on device" in line
    _unchanged(tmp_path, hashes)


def test_bmnist_from_the_mirror_is_the_verified_larochelle_data(tmp_path, capsys, data_mirror):
    """The mirror's Larochelle files are used by default (`bmnist_source: auto`), each verified
    against its PUBLISHED sha256; a copy with one byte changed (still valid 0/1 content) is
    refused rather than used or replaced by the Bernoulli fallback."""
    if not (data_mirror / "bmnist" / "binarized_mnist_test.amat").is_file():
        pytest.skip(f"{data_mirror} has no Larochelle bmnist/ files")
    for sub in ("good", "bad"):
        (tmp_path / sub).mkdir()
    rc, err = _prepare(tmp_path / "good", capsys, "bmnist", "--mirror", str(data_mirror))
    assert rc == 0, err
    meta = yaml.safe_load((tmp_path / "good" / "data" / "prepared" / "bmnist.json").read_text())
    assert meta["variant"] == "larochelle-amat" and "larochelle-amat" in err
    assert {r["file"]: r["sha256"] for r in meta["sources"]} == sources.LAROCHELLE_SHA256
    assert {r["verified_by"] for r in meta["sources"]} == {"published sha256 + content check"}

    mirror = _mirror_copy(data_mirror, tmp_path / "mirror", "bmnist")
    name = "binarized_mnist_test.amat"
    content = bytearray((data_mirror / "bmnist" / name).read_bytes())
    content[0] = ord("1") if content[0] == ord("0") else ord("0")  # one pixel flipped
    _replace(mirror, f"bmnist/{name}", bytes(content))
    rc, err = _prepare(tmp_path / "bad", capsys, "bmnist", "--mirror", str(mirror))
    line = _error_line(err)
    assert rc == 1 and name in line and "fails verification" in line
    assert sources.LAROCHELLE_SHA256[name] in line
    _no_partial_files(tmp_path / "bad")
