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
            with _as_user_error(path, hint):  # a full disk shows up here at the latest
                handle.flush()
                os.fsync(handle.fileno())
        if before_rename is not None:
            before_rename(tmp)
        with _as_user_error(path, hint):
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _as_user_error(path: Path, hint: str = "check that the folder is writable") -> Iterator[None]:
    """An OSError while writing ``path`` (a full disk, a folder made read-only, a rename
    refused) becomes one GaeError naming the file; the earlier file under that name is kept."""
    try:
        yield
    except OSError as exc:
        raise GaeError(
            f"cannot write {path} ({exc.strerror or exc}); free disk space or {hint}, then "
            f"re-run (nothing was replaced)"
        ) from exc


def make_folder(path: str | os.PathLike, what: str, hint: str) -> Path:
    """``mkdir -p path`` as one GaeError naming it (a file in its place, a read-only parent)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GaeError(f"cannot create {what} {path} ({exc.strerror or exc}); {hint}") from exc
    return path


LOCK_FILE = ".gae.lock"  # in a run folder while a `gae train` writes it


@contextlib.contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (an advisory ``flock`` on ``folder/.gae.lock``).

    Two trainers writing one run would interleave checkpoints and logs; the second is refused at
    once, naming the first one's pid. The lock dies with its process (kill -9 included), so a
    stale lock never blocks; the file itself stays (removing it would race with a waiter).
    """
    import fcntl

    path = folder / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the whole block)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise GaeError(
                f"{what} {folder} is being written by another process (pid {holder}); wait for "
                f"it to finish or stop it, then re-run"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def default_file_mode() -> int:
    """0666 less the umask: ``mkstemp`` creates 0600 files, but artifacts are meant to be shared."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle, _as_user_error(Path(path)):
        handle.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle, _as_user_error(Path(path)):
        np.savez(handle, **arrays)


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle, _as_user_error(Path(path)):
        np.save(handle, array)


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch  # local: keeps data-only commands free of the torch import cost

    with atomic_open(path, "wb") as handle, _as_user_error(Path(path)):
        torch.save(obj, handle)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex): the identity of a model file a result was made from."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
