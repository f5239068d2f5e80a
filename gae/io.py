"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash or a full disk never leaves a half-written artifact under the final name, and a good
earlier output stays untouched until the new one is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from gae.errors import GaeError


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "wb",
    before_rename: Callable[[Path], None] | None = None,
    hint: str = "check that the folder exists and is writable",
) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success.

    ``before_rename(tmp_path)`` may check the finished file (e.g. its checksum) and raise to
    discard it; ``hint`` ends the error raised when the temporary file cannot be created.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise GaeError(
            f"cannot write {path}: cannot create a file in {path.parent} "
            f"({exc.strerror or exc}); {hint}"
        ) from exc
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, default_file_mode())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if before_rename is not None:
            before_rename(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def default_file_mode() -> int:
    """0666 less the umask: ``mkstemp`` creates 0600 files, but artifacts are meant to be shared."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, array)


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch  # local: keeps data-only commands free of the torch import cost

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise GaeError(f"{path} does not exist; run the step that produces it first") from exc
    except json.JSONDecodeError as exc:
        raise GaeError(f"{path} is not valid JSON ({exc}); delete it and re-run its step") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")
