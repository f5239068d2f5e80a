"""Fetch one input file into ``data/raw/{dataset}/`` from a mirror folder or a URL list, verified.

Order of sources: an already verified copy in ``data/raw``, then the mirror folder
(``<mirror>/<dataset>/<file>``), then each URL in turn (when ``data.download`` is true). Every
candidate is first written to a temporary file in ``data/raw/{dataset}/``, verified (sha256 of
the DECOMPRESSED content and/or a content check), and only then renamed to its final name, so
``data/raw`` never holds an unverified or half-downloaded file under a real name.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tqdm import tqdm

from gae.errors import DataError
from gae.io import atomic_open

log = logging.getLogger(__name__)

CHUNK = 1 << 20
URL_TIMEOUT_S = 30  # seconds without data before a URL counts as unreachable


class VerifyError(DataError):
    """A candidate copy of an input file is not faithful (bad archive, hash or content)."""


class FetchError(DataError):
    """No source gave a verified copy. ``found_corrupt``: some source had a copy that failed
    verification (as opposed to every source being absent or unreachable)."""

    def __init__(self, message: str, found_corrupt: bool) -> None:
        super().__init__(message)
        self.found_corrupt = found_corrupt


@dataclass(frozen=True)
class RemoteFile:
    """One input file: where it may come from and how a faithful copy is recognised."""

    dataset: str  # subfolder in the mirror and in data/raw
    name: str
    urls: tuple[str, ...]
    sha256: str | None  # expected sha256 of the decompressed content, when known
    mirror_sha256: str | None = None  # fallback when the mirror's SHA256SUMS lacks the file
    check: Callable[[Path], None] | None = None  # content check; raises VerifyError


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str  # of the decompressed content
    origin: str  # where this run got it: a mirror path, a URL, or the data/raw cache
    verified_by: str  # what vouches for it: the published sha256, SHA256SUMS, a content check


def content_sha256(path: Path, gz: bool | None = None) -> str:
    """sha256 of the file's content, decompressed first when it is a ``.gz`` archive.

    ``gz`` defaults to "the name ends with .gz" (pass it for temporary files).

    Raises VerifyError for a truncated or corrupt archive (gzip checks its CRC and length).
    """
    digest = hashlib.sha256()
    if gz is None:
        gz = path.name.endswith(".gz")
    opener: Callable[[Path], IO[bytes]] = gzip.open if gz else open
    try:
        with opener(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise VerifyError(
            f"not a valid gzip archive ({exc or type(exc).__name__}): truncated or corrupt"
        ) from exc
    return digest.hexdigest()


def read_sha256sums(folder: Path) -> dict[str, str]:
    """The ``SHA256SUMS`` of a mirror folder as {file name: hash}; empty when absent."""
    sums: dict[str, str] = {}
    path = folder / "SHA256SUMS"
    if not path.is_file():
        return sums
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def verify(path: Path, spec: RemoteFile, expected: str | None) -> str:
    """Return the content sha256 of ``path`` after checking it; raise VerifyError otherwise."""
    sha = content_sha256(path, gz=spec.name.endswith(".gz"))
    if expected is not None and sha != expected:
        what = "decompressed content" if spec.name.endswith(".gz") else "content"
        raise VerifyError(
            f"sha256 of the {what} is {sha}, expected {expected}: the copy is corrupt or "
            f"not the published file"
        )
    if spec.check is not None:
        spec.check(path)
    return sha


def fetch(
    spec: RemoteFile, raw_root: Path, mirror: str | os.PathLike | None, download: bool
) -> Fetched:
    """A verified copy of ``spec`` at ``raw_root/<dataset>/<name>``, fetched if needed."""
    raw_dir = raw_root / spec.dataset
    dest = raw_dir / spec.name
    if dest.is_file():
        try:
            sha = verify(dest, spec, spec.sha256)
            log.debug("%s: cached copy verified", dest)
            return Fetched(dest, sha, f"cache {dest}", _how(spec, spec.sha256))
        except VerifyError as exc:
            log.warning("%s fails verification (%s); removing it and fetching it again", dest, exc)
            dest.unlink()
    attempts: list[str] = []
    if mirror:
        got = _from_mirror(spec, Path(mirror), dest, attempts)
        if got is not None:
            _log_origin(got, spec)
            return got
    if download:
        for url in spec.urls:
            got = _from_url(spec, url, dest, attempts)
            if got is not None:
                _log_origin(got, spec)
                return got
    else:
        attempts.append(f"URLs {', '.join(spec.urls)} (not tried: data.download is false)")
    if not attempts:
        attempts.append("no source configured")
    raise FetchError(
        f"cannot get a verified copy of {spec.dataset}/{spec.name}; tried: "
        f"{'; '.join(attempts)}. Pass --mirror DIR or set GAE_DATA_MIRROR to a folder holding "
        f"{spec.dataset}/{spec.name} and {spec.dataset}/SHA256SUMS (the layout of "
        f"../shared/data), or check the network connection",
        found_corrupt=any("(fails verification:" in attempt for attempt in attempts),
    )


def _from_mirror(spec: RemoteFile, mirror: Path, dest: Path, attempts: list[str]) -> Fetched | None:
    src = mirror / spec.dataset / spec.name
    if not mirror.is_dir():
        attempts.append(f"mirror folder {mirror} (does not exist)")
        return None
    if not src.is_file():
        attempts.append(f"{src} (not in the mirror)")
        return None
    sums = read_sha256sums(src.parent)
    listed = sums.get(spec.name) or sums.get(spec.name.removesuffix(".gz"))
    if spec.sha256 is not None and listed is not None and listed != spec.sha256:
        log.warning(
            "%s/SHA256SUMS lists %s for %s, not the published %s; the published value is used",
            src.parent,
            listed,
            spec.name,
            spec.sha256,
        )
    expected = spec.sha256 or listed or spec.mirror_sha256
    try:
        with open(src, "rb") as source:
            got = _store(spec, source, src.stat().st_size, dest, expected, str(src))
        where = f"{src.parent}/SHA256SUMS" if listed else "the package's record of the mirror"
        return Fetched(got.path, got.sha256, got.origin, _how(spec, expected, where))
    except VerifyError as exc:
        attempts.append(f"{src} (fails verification: {exc})")
    except OSError as exc:
        attempts.append(f"{src} (cannot read: {exc.strerror or exc})")
    return None


def _from_url(spec: RemoteFile, url: str, dest: Path, attempts: list[str]) -> Fetched | None:
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:  # noqa: S310
            size = response.headers.get("Content-Length")
            return _store(spec, response, int(size) if size else None, dest, spec.sha256, url)
    except VerifyError as exc:
        attempts.append(f"{url} (fails verification: {exc})")
    except urllib.error.HTTPError as exc:
        attempts.append(f"{url} (HTTP {exc.code} {exc.reason})")
    except urllib.error.URLError as exc:
        attempts.append(f"{url} (unreachable: {exc.reason})")
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
        attempts.append(f"{url} ({type(exc).__name__}: {exc})")
    return None


def _store(
    spec: RemoteFile,
    source: IO[bytes],
    size: int | None,
    dest: Path,
    expected: str | None,
    origin: str,
) -> Fetched:
    """Copy ``source`` to a temp file beside ``dest``, verify it, then rename it onto ``dest``."""
    checked: list[str] = []
    with (
        atomic_open(
            dest,
            before_rename=lambda tmp: checked.append(verify(tmp, spec, expected)),
            hint="make it writable or set paths.data to a writable folder",
        ) as out,
        tqdm(
            total=size, unit="B", unit_scale=True, desc=spec.name, leave=False, disable=None
        ) as bar,
    ):
        while chunk := source.read(CHUNK):
            try:
                out.write(chunk)
            except OSError as exc:  # a full disk is not a bad source: stop here
                raise DataError(
                    f"cannot write {dest} ({exc.strerror or exc}); free disk space or set "
                    f"paths.data to another folder"
                ) from exc
            bar.update(len(chunk))
    sha = checked[0]
    log.info("%s: fetched from %s and verified (sha256 %s)", dest, origin, sha)
    return Fetched(dest, sha, origin, _how(spec, expected))


FETCH_LOG = "fetch_log.jsonl"  # beside the raw files: where each verified copy came from


def verification_rule(spec: RemoteFile) -> str:
    """What every accepted copy of ``spec`` passes, whichever source it came from.

    This (not the origin of one particular copy) is what the prepared data's provenance JSON
    records, so that JSON depends on the content alone: a re-prepare from the ``data/raw``
    cache, a mirror or a URL writes the same bytes, and DVC sees no change.
    """
    parts = []
    if spec.sha256 is not None:
        parts.append("published sha256")
    elif spec.mirror_sha256 is not None:
        parts.append("sha256 in the mirror's SHA256SUMS (mirror copies)")
    if spec.check is not None:
        parts.append("content check")
    return " + ".join(parts) or "none"


def _log_origin(got: Fetched, spec: RemoteFile) -> None:
    """Append where a newly verified copy came from to ``data/raw/{dataset}/fetch_log.jsonl``.

    The origin is history, not content: it lives here, outside the DVC-tracked outputs."""
    import json
    import time

    entry = {
        "file": spec.name,
        "sha256": got.sha256,
        "fetched_from": got.origin,
        "verified_by": got.verified_by,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        with open(got.path.parent / FETCH_LOG, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
    except OSError as exc:  # the copy itself is verified and in place: only warn
        log.warning("cannot append to %s (%s)", got.path.parent / FETCH_LOG, exc)


def _how(spec: RemoteFile, expected: str | None, listed_in: str = "") -> str:
    parts = []
    if expected is not None:
        parts.append("published sha256" if expected == spec.sha256 else f"sha256 in {listed_in}")
    if spec.check is not None:
        parts.append("content check")
    return " + ".join(parts) or "none"
