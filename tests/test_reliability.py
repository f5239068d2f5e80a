"""Faults that used to end in a raw traceback or silently wrong numbers (issue 19, items 2, 5, 6):
each is one clear message naming the file, and nothing good is lost."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import gae.io
import gae.training as training
from gae.cli import main
from gae.config import prepared_path
from gae.data.prepare import load_prepared, prepare_dataset
from gae.errors import DataError, GaeError
from gae.io import atomic_torch_save, atomic_write_json, folder_lock
from tests.conftest import REPO_ROOT, make_cfg
from tests.test_training import _synthetic_cfg

RUN = "bmnist-vae-L1-z4"


def test_a_prepared_npz_that_is_not_the_one_its_json_describes_is_refused(
    tmp_path, grey_mirror
):
    cfg = make_cfg(tmp_path / "data", mirror=str(grey_mirror))
    prepare_dataset(cfg, "frey", mirror=str(grey_mirror))
    assert load_prepared(cfg, "frey")["x_train"].shape[1] == 560
    npz = prepared_path(cfg, "frey")
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["x_test"] = arrays["x_test"][::-1].copy()  # valid arrays, other content
    np.savez(npz, **arrays)
    with pytest.raises(DataError, match=r"frey\.npz .* is not the file .*frey\.json describes"):
        load_prepared(cfg, "frey")


def test_a_file_where_the_run_folder_should_be_is_one_message(tmp_path, capsys):
    cfg = _synthetic_cfg(tmp_path, [RUN], epochs=1)
    runs = Path(cfg.paths.results) / "runs"
    runs.mkdir(parents=True)
    (runs / RUN).write_text("in the way")
    overlay = tmp_path / "overlay.yaml"
    plain = cfg.to_dict()
    overlay.write_text(yaml.safe_dump({k: plain[k] for k in ("paths", "train", "model", "data")}))
    capsys.readouterr()
    rc = main(["train", RUN, "--params", str(REPO_ROOT / "params.yaml"), "--config", str(overlay),
               "--set", f"runs=[{RUN}]", "--set",
               "evaluate={parzen: [], loglik: [], diagnostics: [], latent: []}"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "gae train: error:" in ln]
    assert rc == 1 and len(lines) == 1
    assert "cannot create the run folder" in lines[0] and str(runs / RUN) in lines[0]


def test_two_trainers_never_write_one_run(tmp_path):
    """A second `gae train` of a run being trained is refused at once, naming the first's pid."""
    cfg = _synthetic_cfg(tmp_path, [RUN], epochs=1)
    folder = Path(cfg.paths.results) / "runs" / RUN
    folder.mkdir(parents=True)
    with folder_lock(folder, "the run folder"):  # another trainer holds it
        holder = rf"being written by another process \(pid {os.getpid()}\)"
        with pytest.raises(GaeError, match=holder):
            training.train_run(cfg, RUN)
        assert not (folder / "checkpoint.pt").exists()
    training.train_run(cfg, RUN)  # released: a lock never outlives its holder
    assert (folder / "model.pt").is_file()


def test_a_full_disk_during_torch_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    atomic_torch_save(path, {"good": torch.ones(2)})
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(GaeError, match=rf"cannot write {path} \(No space left on device\)"):
        atomic_torch_save(path, {"new": torch.zeros(2)})
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["model.pt"]


def test_a_refused_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    atomic_write_json(path, {"a": 1})

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(gae.io.os, "replace", refuse)
    with pytest.raises(GaeError, match=rf"cannot write {path} \(Permission denied\)"):
        atomic_write_json(path, {"a": 2})
    assert yaml.safe_load(path.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["result.json"]
