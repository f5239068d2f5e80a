"""Parsers for the raw file formats: IDX (MNIST), .amat (binarized MNIST), .mat (Frey, TFD).

Each parser checks the structure it relies on and raises ``DataError`` naming the file and
what is wrong, so a bad file never turns into a silently wrong array.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from gae.data.fetch import VerifyError
from gae.errors import DataError

IDX_UBYTE = 0x08


def read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is a ``.gz`` archive."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(
            f"{path} is not a valid gzip archive ({exc}); delete it and re-run "
            f"`gae prepare` to fetch it again"
        ) from exc


def parse_idx(
    data: bytes, source: str, expected_shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """An IDX file of unsigned bytes (magic 0x0000080N, N = number of dimensions) as uint8."""
    ndim_expected = len(expected_shape) if expected_shape is not None else None
    if len(data) < 4:
        raise DataError(f"{source}: only {len(data)} bytes, too short for an IDX header")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    magic = int.from_bytes(data[:4], "big")
    if (
        zero != 0
        or type_code != IDX_UBYTE
        or ndim == 0
        or (ndim_expected is not None and ndim != ndim_expected)
    ):
        want = f"0x{0x800 + ndim_expected:08x}" if ndim_expected else "0x0000080N"
        raise DataError(
            f"{source}: wrong IDX magic number 0x{magic:08x} (expected {want}); "
            f"the file is not an MNIST IDX file of this kind, replace it"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    size = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != size:
        raise DataError(
            f"{source}: IDX header declares shape {shape} = {size} bytes but the file holds "
            f"{len(data) - header}; the file is truncated or corrupt, replace it"
        )
    if expected_shape is not None and tuple(shape) != tuple(expected_shape):
        raise DataError(f"{source}: IDX shape {shape}, expected {expected_shape}; replace it")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def parse_amat(data: bytes, source: str, rows: int, cols: int = 784) -> np.ndarray:
    """A Larochelle ``.amat``: ``rows`` lines of ``cols`` space-separated 0/1 values, as uint8.

    Vectorised over bytes (``np.loadtxt`` takes tens of seconds on 50,000 lines).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    is_digit = (buf == ord("0")) | (buf == ord("1"))
    allowed = is_digit | (buf == ord(" ")) | (buf == ord("\n")) | (buf == ord("\r"))
    allowed |= buf == ord("\t")
    if not allowed.all():
        bad = int(np.flatnonzero(~allowed)[0])
        raise VerifyError(
            f"{source}: byte {bad} is {chr(buf[bad])!r}; a binarized .amat holds "
            f"only 0/1 values separated by spaces"
        )
    # a digit adjacent to another digit would be a multi-digit token such as "10"
    if (is_digit[1:] & is_digit[:-1]).any():
        raise VerifyError(f"{source}: holds a value other than 0 or 1")
    newlines = np.flatnonzero(buf == ord("\n"))
    digits_before = np.concatenate([[0], np.cumsum(is_digit)])
    ends = np.concatenate([newlines, [len(buf)]])
    per_line = np.diff(np.concatenate([[0], digits_before[ends]]))
    if len(per_line) and per_line[-1] == 0:  # trailing newline
        per_line = per_line[:-1]
    if len(per_line) != rows or (per_line != cols).any():
        raise VerifyError(
            f"{source}: {len(per_line)} lines (expected {rows}) of "
            f"{sorted(set(per_line.tolist()))[:3]} values (expected {cols})"
        )
    return (buf[is_digit] - ord("0")).reshape(rows, cols)


def _loadmat(path: Path, what: str) -> dict[str, Any]:
    import scipy.io

    try:
        return scipy.io.loadmat(path)
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5)
        raise DataError(
            f"{path}: {what} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; "
            f"re-save it in MATLAB with save(..., '-v7')"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - scipy raises many types (even IndexError) on junk
        raise DataError(f"{path}: not a readable MATLAB .mat file ({exc}); replace {what}") from exc


def load_frey(path: Path) -> np.ndarray:
    """Frey faces as uint8 (1965, 560): one row per frame, a 28 x 20 image flattened row-major.

    The file stores ``ff`` as (560, 1965); ``ff.T.reshape(-1, 28, 20)`` are the images.
    """
    from gae.data.sources import FREY_SHAPE

    mat = _loadmat(path, "the Frey faces file")
    ff = mat.get("ff")
    if not isinstance(ff, np.ndarray) or ff.dtype != np.uint8 or ff.shape != FREY_SHAPE:
        got = "missing" if ff is None else f"{getattr(ff, 'dtype', '?')} {getattr(ff, 'shape', '')}"
        raise VerifyError(f"{path}: variable 'ff' must be uint8 of shape {FREY_SHAPE}, got {got}")
    return np.ascontiguousarray(ff.T)


def check_frey(path: Path) -> None:
    """Content check for a Frey copy whose hash is not known (the canonical download)."""
    try:
        load_frey(path)
    except VerifyError:
        raise
    except DataError as exc:
        raise VerifyError(str(exc)) from exc


TFD_SPLIT_CODES = {"train": 1, "valid": 2, "test": 3}


def load_tfd(path: Path, fold: int) -> dict[str, np.ndarray]:
    """The Toronto Face Database (``TFD_48x48.mat``) split by fold ``fold`` (0-4).

    ``folds[:, fold]``: 0 unlabeled (dropped), 1 train, 2 valid, 3 test. Pixels are 0-255.
    Labels ``y_*`` are the expression labels ``labs_ex`` (``labs_id`` is the identity).
    """
    mat = _loadmat(path, "your TFD_48x48.mat")
    missing = [k for k in ("images", "folds") if k not in mat]
    if missing:
        raise DataError(
            f"{path}: TFD file lacks the variable(s) {missing}; expected "
            f"TFD_48x48.mat with 'images', 'folds', 'labs_ex', 'labs_id'"
        )
    images = np.asarray(mat["images"])
    folds = np.asarray(mat["folds"])
    n = images.shape[0] if images.ndim else 0
    if images.ndim != 3 or images.shape[1:] != (48, 48) or folds.shape != (n, 5):
        raise DataError(
            f"{path}: 'images' must be N x 48 x 48 and 'folds' N x 5, got "
            f"{images.shape} and {folds.shape}"
        )
    if images.size and (images.min() < 0 or images.max() > 255):
        raise DataError(
            f"{path}: 'images' values lie in [{images.min()}, {images.max()}], "
            f"expected grey levels 0-255"
        )
    x = images.reshape(n, 48 * 48).astype(np.float32) / np.float32(255.0)
    column = folds[:, fold]
    labels = mat.get("labs_ex")
    y = None
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape != (n,):
            raise DataError(f"{path}: 'labs_ex' has {labels.size} entries for {n} images")
        y = labels.astype(np.int64)
    out: dict[str, np.ndarray] = {}
    for split, code in TFD_SPLIT_CODES.items():
        rows = np.flatnonzero(column == code)
        if rows.size == 0:
            raise DataError(
                f"{path}: fold {fold} (data.tfd_fold) has no '{split}' images "
                f"(code {code} in folds[:, {fold}])"
            )
        out[f"x_{split}"] = x[rows]
        if y is not None:
            out[f"y_{split}"] = y[rows]
    return out
