"""Subsets of a split are fixed seeded random samples, never its head (gae.data.subsets).

The standard Larochelle test file is the MNIST test set sorted by digit: the first 1,000 rows
are zeros but 20 ones. These tests build such a sorted split and check every place the pipeline
takes fewer rows than a split has.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from gae.config import load_config
from gae.data.prepare import apply_subsets
from gae.data.subsets import random_rows, subset_record, take_rows
from gae.evaluation import eval_rows
from gae.settings import Config

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _sorted_split(n_per_class: int = 100) -> dict[str, np.ndarray]:
    """A data set whose splits are sorted by class, like the Larochelle test file."""
    y = np.repeat(np.arange(10, dtype=np.int64), n_per_class)
    x = (y[:, None] / 9.0 * np.ones((1, 4))).astype(np.float32)  # pixel value = class / 9
    return {f"{p}_{s}": v for s in ("train", "valid", "test") for p, v in (("x", x), ("y", y))}


def _cfg(subset: dict | None = None, seed: int = 0) -> Config:
    data = {"subset": subset or {}, "subset_seed": seed}
    return load_config(base=PARAMS, overrides={"data": data})


def test_random_rows_is_fixed_distinct_and_nested() -> None:
    a = random_rows(10000, 1000, 0, "test")
    assert a.dtype == np.int64 and len(np.unique(a)) == 1000 and a.max() < 10000
    np.testing.assert_array_equal(a, random_rows(10000, 1000, 0, "test"))  # every call, run
    np.testing.assert_array_equal(random_rows(10000, 2000, 0, "test")[:1000], a)  # nested
    assert not np.array_equal(a, random_rows(10000, 1000, 1, "test"))  # the seed matters
    assert not np.array_equal(a, random_rows(10000, 1000, 0, "valid"))  # so does the split
    np.testing.assert_array_equal(random_rows(50, None, 0, "test"), np.arange(50))
    np.testing.assert_array_equal(random_rows(50, 80, 0, "test"), np.arange(50))
    with pytest.raises(ValueError, match="split"):
        random_rows(10, 5, 0, "tset")


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_a_subset_of_a_sorted_split_is_not_its_head(split: str) -> None:
    """Fails if data.subset.* takes the first N rows: the head of a sorted split is one class."""
    data = _sorted_split()
    cut = apply_subsets(_cfg({split: 100}), copy.deepcopy(data))
    labels = cut[f"y_{split}"]
    assert labels.shape == (100,)
    assert len(np.unique(labels)) >= 8  # the first 100 rows would all be class 0
    assert abs(labels.mean() - 4.5) < 1.2  # a fair sample: its mean is near the split's
    np.testing.assert_array_equal(cut[f"x_{split}"], data[f"x_{split}"][cut[f"idx_{split}"]])
    np.testing.assert_array_equal(cut[f"y_{split}"], data[f"y_{split}"][cut[f"idx_{split}"]])


@pytest.mark.parametrize(
    "setting,split",
    [
        ("evaluation.loglik.n_test", "test"),
        ("evaluation.parzen.n_test", "test"),
        ("evaluation.parzen.n_valid", "valid"),
        ("evaluation.diagnostics.n_train", "train"),
    ],
)
def test_evaluation_sizes_take_a_random_sample(setting: str, split: str) -> None:
    """Fails if an estimator scores the first n_test / n_valid / n_train rows."""
    data = apply_subsets(_cfg(), _sorted_split())
    x, rows, record = eval_rows(_cfg(), data, split, 150, setting)
    assert x.shape == (150, 4) and rows.shape == (150,)
    assert len(np.unique(np.round(x[:, 0] * 9))) >= 8
    assert record["setting"] == setting and record["complete"] is False
    assert record["indices"] == rows.tolist() and record["seed"] == 0
    # evaluation sizes compose with data.subset: the rows still point into the prepared file
    sub = apply_subsets(_cfg({split: 500}), _sorted_split())
    x2, rows2, _ = eval_rows(_cfg(), sub, split, 150, setting)
    assert set(rows2.tolist()) <= set(sub[f"idx_{split}"].tolist())
    np.testing.assert_array_equal(x2, _sorted_split()[f"x_{split}"][rows2])


def test_the_whole_split_is_recorded_as_complete() -> None:
    data = apply_subsets(_cfg(), _sorted_split())
    x, rows, record = eval_rows(_cfg(), data, "test", None, "evaluation.loglik.n_test")
    assert x.shape == (1000, 4) and record == {
        "setting": "evaluation.loglik.n_test",
        "split": "test",
        "n": 1000,
        "complete": True,
    }
    np.testing.assert_array_equal(rows, np.arange(1000))
    assert subset_record(take_rows(data, "test", 10, 3, "x"), "test", 3)["complete"] is False
