"""Atomic writes: a file appears whole, or not at all (and an older version survives)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gae.errors import GaeError
from gae.io import atomic_open


def test_check_before_rename_can_reject_the_new_file(tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")

    def reject(tmp: Path) -> None:
        assert tmp.read_bytes() == b"new"  # the check sees the finished temporary file
        raise ValueError("checksum mismatch")

    with pytest.raises(ValueError, match="checksum"), atomic_open(dest, before_rename=reject) as f:
        f.write(b"new")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]  # no temporary left

    seen: list[bytes] = []
    with atomic_open(dest, before_rename=lambda tmp: seen.append(tmp.read_bytes())) as f:
        f.write(b"new")
    assert dest.read_bytes() == b"new" and seen == [b"new"]


def test_uncreatable_folder_names_the_file_and_the_hint(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder must go")
    dest = tmp_path / "blocker" / "out.json"
    with pytest.raises(GaeError, match=r"cannot write .*blocker/out\.json.*set paths\.data"):
        with atomic_open(dest, hint="set paths.data elsewhere"):
            pass
