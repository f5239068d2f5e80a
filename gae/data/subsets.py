"""Fixed, seeded random subsets of a split: never its first N rows.

Why: the Larochelle & Murray test file (the standard static binarized MNIST) is the MNIST test set
SORTED BY DIGIT, so its first 1,000 rows are zeros but 20 ones. Scored on them, both models look
6-9 nats worse than on a random sample, and the GAE - VAE gap changes. So every smaller piece of
a split the pipeline uses (``data.subset.*`` at load time, ``evaluation.parzen.n_valid`` /
``n_test``, ``evaluation.loglik.n_test``, ``evaluation.diagnostics.n_train``) is taken here.

The sample of ``n`` rows out of ``n_rows`` is the first ``n`` entries of one permutation drawn
from ``numpy.random.Generator(PCG64(SeedSequence([data.subset_seed, split code])))``, with split
codes train 0, valid 1, test 2. Hence:

- it depends on the split, its size and the seed only, never on the run, model or device, so
  every run of a data set is scored on the same images and paired differences stay paired;
- a smaller sample is a prefix of a larger one (the 1,000 log-likelihood images are among the
  2,000 Parzen ones);
- its order is the permutation's, so even a later head of it is a random sample.

The row indices (into the prepared ``.npz`` split) travel with the arrays as ``idx_{split}``
(``load_prepared``) and are written beside each result (``test_index`` in
``loglik_images.npz``, ``subset`` in the JSON files).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
RULE = (
    "first n of numpy.random.Generator(PCG64(SeedSequence([subset_seed, split code]))"
    ".permutation(n_rows); split codes train 0, valid 1, test 2"
)


def random_rows(n_rows: int, n: int | None, seed: int, split: str) -> np.ndarray:
    """Indices (int64) of the fixed random sample of ``n`` of ``n_rows`` rows of ``split``.

    ``n`` None, or at least ``n_rows``: every row, in file order.
    """
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; one of {', '.join(SPLIT_CODES)}")
    if n is None or n >= n_rows:
        return np.arange(n_rows, dtype=np.int64)
    if n < 1:
        raise ValueError(f"a subset needs at least one row, got n = {n}")
    sequence = np.random.SeedSequence([int(seed), SPLIT_CODES[split]])
    perm = np.random.Generator(np.random.PCG64(sequence)).permutation(n_rows)
    return perm[:n].astype(np.int64)


def take_rows(
    arrays: dict[str, np.ndarray], split: str, n: int | None, seed: int, what: str
) -> dict[str, np.ndarray]:
    """``x_{split}`` (and ``y_``/``idx_{split}`` when present) cut to the random sample of ``n``.

    Returns a new dict. ``idx_{split}`` keeps pointing at rows of the PREPARED file: a subset of
    an already cut split composes the two index arrays. ``what`` names the setting in the log.
    """
    x = arrays[f"x_{split}"]
    if n is not None and n > x.shape[0]:
        log.info("%s = %d but the %s split has %d rows: using all", what, n, split, x.shape[0])
    rows = random_rows(x.shape[0], n, seed, split)
    out = dict(arrays)
    if n is None or n >= x.shape[0]:  # every row, in order: no copy of the arrays
        out.setdefault(f"idx_{split}", rows)
        return out
    for prefix in ("x", "y", "idx"):
        key = f"{prefix}_{split}"
        if key in arrays:
            out[key] = arrays[key][rows]
    out.setdefault(f"idx_{split}", rows)
    return out


def subset_record(arrays: dict[str, np.ndarray], split: str, seed: int) -> dict[str, object]:
    """What a result file says about the images of ``split`` it was computed on.

    ``complete``: every row of the prepared split; otherwise ``indices`` lists the rows used (in
    the order of the per-image results), so anyone can score the same images.
    """
    n = int(arrays[f"x_{split}"].shape[0])
    idx = arrays.get(f"idx_{split}")
    idx = np.arange(n) if idx is None else np.asarray(idx)
    # indices point into the prepared split, without repeats: rows 0..n-1 are all of it
    complete = bool(np.array_equal(np.sort(idx), np.arange(n)))
    record: dict[str, object] = {"split": split, "n": n, "complete": complete}
    if not complete:
        record.update({"seed": int(seed), "rule": RULE, "indices": idx.tolist()})
    return record

