"""``gae prepare DATASET``: fetch and verify the inputs, then write the prepared splits.

Outputs (the layout of ../shared/spec.md), written atomically (temp file + rename):

- ``data/prepared/{dataset}.npz``: ``x_train``, ``x_valid``, ``x_test`` float32 in [0, 1] of shape
  (N, D), rows = flattened images (row-major); ``y_*`` int64 labels where the set has them.
- ``data/prepared/{dataset}.json``: provenance: sources and the sha256 of every input, the variant
  (e.g. which binarization), the settings that shaped the output, split sizes, the npz's sha256.

Data sets:

- ``mnist``: the first 50,000 MNIST training images are ``x_train``, the last 10,000 ``x_valid``,
  the 10,000 t10k images ``x_test`` (the Parzen literature's split); pixels are ``k / 255`` as
  float32 (the correctly rounded quotient of grey level k).
- ``bmnist``: Larochelle & Murray's static binarization (``binarized_mnist_*.amat``, no labels)
  when ``data.bmnist_source`` is ``auto``/``larochelle`` and the files can be fetched; otherwise
  (``auto`` or ``bernoulli``) a fixed-seed Bernoulli binarization of the ``mnist`` grey levels,
  same split, MNIST labels: ``rng = numpy.random.Generator(numpy.random.PCG64(data.bmnist_seed))``,
  then for train, valid, test in that order ``u = rng.random(x.shape, dtype=float32)`` and
  ``pixel = 1.0 if u < k/255 else 0.0``. Bit-for-bit reproducible for a given seed and numpy.
- ``frey``: the 1,965 Frey face frames (28 x 20) / 255, split by
  ``perm = Generator(PCG64(data.frey_split.seed)).permutation(1965)``: ``valid = perm[:valid]``,
  ``test = perm[valid:valid + test]``, ``train`` the rest (in permutation order). No labels.
- ``tfd``: the user's licensed ``TFD_48x48.mat`` (``data.tfd_path`` / ``--tfd-path``), split by
  ``folds[:, data.tfd_fold]`` (1 train, 2 valid, 3 test; 0 unlabeled, dropped); ``y_*`` =
  ``labs_ex`` (expression). TFD cannot be redistributed, so it is never downloaded.

Outputs are rebuilt only when the provenance no longer matches (inputs' sha256, variant,
settings, format version, or the npz's own sha256), or with ``force``.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gae import __version__
from gae.config import DATASETS, data_dir, prepared_path
from gae.data import sources
from gae.data.fetch import (
    Fetched,
    FetchError,
    RemoteFile,
    content_sha256,
    fetch,
    verification_rule,
)
from gae.data.formats import check_frey, load_frey, load_tfd, parse_amat, parse_idx, read_bytes
from gae.data.subsets import take_rows
from gae.errors import ConfigError, DataError, GaeError
from gae.io import atomic_save_npz, atomic_write_json, read_json
from gae.settings import Config

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
MNIST_TRAIN = 50000  # first 50,000 training images; the last 10,000 are validation
GREY = np.arange(256, dtype=np.float32) / np.float32(255.0)  # grey level k -> float32(k / 255)


@dataclass
class Plan:
    """What a data set's output will be built from; ``fingerprint`` decides if it is current.

    ``inputs`` maps each input file to its content sha256. Where the hashes are published
    (MNIST), they are known before fetching, so a current output needs no raw files at all
    (e.g. after ``dvc pull`` of data/prepared only); ``records`` is then filled by ``build``.
    """

    variant: str
    settings: dict[str, Any]
    inputs: dict[str, str]
    build: Callable[[], dict[str, np.ndarray]]
    notes: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    def fingerprint(self, dataset: str) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "dataset": dataset,
            "variant": self.variant,
            "settings": self.settings,
            "inputs": dict(self.inputs),
        }


def prepare_dataset(
    cfg: Config, dataset: str, mirror: str | None = None, force: bool = False
) -> Path:
    """Fetch, verify and prepare ``dataset``; return the path of its ``.npz``.

    Writes only under ``data/raw/{dataset}/`` (``data/raw/mnist/`` also for the Bernoulli
    ``bmnist``) and ``data/prepared/``. Skips the work when the outputs are current.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}")
    npz_path = prepared_path(cfg, dataset)
    json_path = prepared_path(cfg, dataset, "json")
    raw_root = data_dir(cfg) / "raw"
    plan = PLANNERS[dataset](cfg, raw_root, mirror)
    fingerprint = _normalise(plan.fingerprint(dataset))
    if not force and _is_current(npz_path, json_path, fingerprint):
        log.info("%s is up to date (%s); pass --force to rebuild", npz_path, plan.variant)
        return npz_path

    log.info("preparing %s (%s)", dataset, plan.variant)
    arrays = plan.build()
    _check_arrays(arrays, f"prepared {dataset}")
    try:
        atomic_save_npz(npz_path, **arrays)
    except OSError as exc:
        raise DataError(
            f"cannot write {npz_path} ({exc.strerror or exc}); free disk space or "
            f"make {npz_path.parent} writable, then re-run"
        ) from exc
    provenance = {
        "dataset": dataset,
        "variant": plan.variant,
        "settings": plan.settings,
        "sources": plan.records,
        "splits": {s: int(arrays[f"x_{s}"].shape[0]) for s in SPLITS},
        "dim": int(arrays["x_train"].shape[1]),
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
        "output": {"file": npz_path.name, "sha256": content_sha256(npz_path)},
        "fingerprint": fingerprint,
        "written_by": f"gae {__version__}",
        **plan.notes,
    }
    try:
        atomic_write_json(json_path, provenance)
    except OSError as exc:
        raise DataError(
            f"cannot write {json_path} ({exc.strerror or exc}); make "
            f"{json_path.parent} writable, then re-run"
        ) from exc
    log.info("wrote %s and %s: splits %s", npz_path, json_path.name, provenance["splits"])
    return npz_path


def load_prepared(cfg: Config, dataset: str) -> dict[str, np.ndarray]:
    """The prepared splits of ``dataset``, each cut to ``cfg.data.subset`` rows if set.

    Prepared files are always full; presets shrink them here, at load time, to a seeded random
    sample (``apply_subsets``). ``idx_{split}`` gives each returned row's index in the file.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}")
    path = prepared_path(cfg, dataset)
    if not path.is_file():
        raise DataError(f"{path} does not exist; run `gae prepare {dataset}` first")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path} is not a readable .npz ({exc}); run `gae prepare {dataset} "
            f"--force` to rebuild it"
        ) from exc
    try:
        _check_arrays(arrays, str(path))
    except DataError as exc:
        raise DataError(f"{exc}; run `gae prepare {dataset} --force` to rebuild it") from exc
    _check_provenance(path, prepared_path(cfg, dataset, "json"), dataset)
    return apply_subsets(cfg, arrays)


def _check_provenance(npz_path: Path, json_path: Path, dataset: str) -> None:
    """The .npz must be the one its provenance JSON describes (sha256), so a file replaced by
    hand or a half-finished copy is never trained or scored on under the JSON's description."""
    if not json_path.is_file():
        log.warning("%s has no provenance file %s beside it", npz_path, json_path.name)
        return
    meta = read_json(json_path)
    recorded = ((meta.get("output") or {}) if isinstance(meta, dict) else {}).get("sha256")
    if recorded is None:  # not written by `gae prepare` (hand-made data): nothing to hold to
        log.warning("%s records no sha256 of %s", json_path, npz_path.name)
        return
    actual = content_sha256(npz_path)
    if recorded != actual:
        raise DataError(
            f"{npz_path} (sha256 {actual[:12]}...) is not the file {json_path} describes "
            f"(sha256 {str(recorded)[:12]}...); run `gae prepare {dataset} --force` to rebuild "
            f"both"
        )


def apply_subsets(cfg: Config, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each split cut to ``data.subset.{split}`` rows: a fixed seeded random sample
    (``gae.data.subsets``), never the first rows. Adds ``idx_{split}``, the rows of the file."""
    subset, seed = cfg.data.subset, int(cfg.data.subset_seed)
    for split in SPLITS:
        n = getattr(subset, split)
        arrays = take_rows(arrays, split, n, seed, f"data.subset.{split}")
    return arrays


# ---- checks ------------------------------------------------------------------------------------


def _check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """The spec's contract: float32 (N, D) in [0, 1] per split, int64 (N,) labels if any."""
    dim = None
    for split in SPLITS:
        x = arrays.get(f"x_{split}")
        if x is None:
            raise DataError(f"{where}: array 'x_{split}' is missing")
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[0] == 0:
            raise DataError(
                f"{where}: 'x_{split}' must be non-empty float32 (N, D), got {x.dtype} {x.shape}"
            )
        if dim is not None and x.shape[1] != dim:
            raise DataError(f"{where}: 'x_{split}' has {x.shape[1]} columns, x_train {dim}")
        dim = x.shape[1]
        if not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
            raise DataError(f"{where}: 'x_{split}' has values outside [0, 1]")
        y = arrays.get(f"y_{split}")
        if y is not None and (y.dtype != np.int64 or y.shape != (x.shape[0],)):
            raise DataError(
                f"{where}: 'y_{split}' must be int64 of shape ({x.shape[0]},), got "
                f"{y.dtype} {y.shape}"
            )


def _normalise(obj: Any) -> Any:
    """JSON round trip, so a fingerprint compares equal to the one read back from disk."""
    import json

    return json.loads(json.dumps(obj, sort_keys=True))


def _is_current(npz_path: Path, json_path: Path, fingerprint: dict[str, Any]) -> bool:
    if not (npz_path.is_file() and json_path.is_file()):
        return False
    try:
        meta = read_json(json_path)
    except GaeError:
        return False
    if not isinstance(meta, dict) or meta.get("fingerprint") != fingerprint:
        log.info("%s: inputs or settings changed; rebuilding", json_path)
        return False
    recorded = (meta.get("output") or {}).get("sha256")
    if recorded != content_sha256(npz_path):
        log.info("%s no longer matches %s; rebuilding", npz_path, json_path.name)
        return False
    return True


# ---- per data set ------------------------------------------------------------------------------


def _source_record(spec: RemoteFile, got: Fetched) -> dict[str, Any]:
    """One input's provenance: content only (where this copy came from is in
    ``data/raw/{dataset}/fetch_log.jsonl``), so re-preparing never changes the JSON."""
    return {
        "file": spec.name,
        "sha256": got.sha256,
        "sha256_of": "decompressed content" if spec.name.endswith(".gz") else "file",
        "verified_by": verification_rule(spec),
        "canonical_urls": list(spec.urls),
    }


def _mnist_specs() -> list[RemoteFile]:
    return [
        RemoteFile("mnist", name, tuple(base + name for base in sources.MNIST_BASE_URLS), sha)
        for name, sha in sources.MNIST_SHA256.items()
    ]


def _fetch_mnist(
    cfg: Config, raw_root: Path, mirror: str | None, records: list[dict[str, Any]]
) -> dict[str, Fetched]:
    """Fetch the four MNIST files (verified against the published hashes); append records."""
    fetched: dict[str, Fetched] = {}
    for spec in _mnist_specs():
        got = fetch(spec, raw_root, mirror, cfg.data.download)
        fetched[spec.name] = got
        records.append(_source_record(spec, got))
    return fetched


def _mnist_split(fetched: dict[str, Fetched]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """MNIST as uint8 grey levels (N, 784) and int64 labels, in the 50k/10k/10k split."""
    parsed = {
        name: parse_idx(read_bytes(got.path), str(got.path), sources.MNIST_SHAPES[name])
        for name, got in fetched.items()
    }
    train_x = parsed["train-images-idx3-ubyte.gz"].reshape(-1, 784)
    train_y = parsed["train-labels-idx1-ubyte.gz"].astype(np.int64)
    test_x = parsed["t10k-images-idx3-ubyte.gz"].reshape(-1, 784)
    test_y = parsed["t10k-labels-idx1-ubyte.gz"].astype(np.int64)
    grey = {"train": train_x[:MNIST_TRAIN], "valid": train_x[MNIST_TRAIN:], "test": test_x}
    labels = {"train": train_y[:MNIST_TRAIN], "valid": train_y[MNIST_TRAIN:], "test": test_y}
    return grey, labels


def _plan_mnist(cfg: Config, raw_root: Path, mirror: str | None) -> Plan:
    records: list[dict[str, Any]] = []

    def build() -> dict[str, np.ndarray]:
        grey, labels = _mnist_split(_fetch_mnist(cfg, raw_root, mirror, records))
        out = {f"x_{s}": GREY[grey[s]] for s in SPLITS}
        out.update({f"y_{s}": labels[s] for s in SPLITS})
        return out

    return Plan(
        "grey-k/255",
        {"train_rows": MNIST_TRAIN},
        dict(sources.MNIST_SHA256),
        build,
        {"labels": "MNIST digit labels 0-9", "image_shape": [28, 28]},
        records,
    )


def bernoulli_binarize(grey: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Fixed-seed Bernoulli binarization of uint8 grey levels (see the module docstring)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = {}
    for split in SPLITS:
        u = rng.random(grey[split].shape, dtype=np.float32)
        out[split] = (u < GREY[grey[split]]).astype(np.float32)
    return out


def _plan_bmnist(cfg: Config, raw_root: Path, mirror: str | None) -> Plan:
    source = cfg.data.bmnist_source
    if source in ("auto", "larochelle"):
        try:
            return _plan_larochelle(cfg, raw_root, mirror)
        except FetchError as exc:
            if exc.found_corrupt:  # a copy exists but is bad: never fall back silently
                raise DataError(
                    f"a Larochelle binarized-MNIST file was found but fails verification: "
                    f"{exc}. Replace or remove it, or set data.bmnist_source to 'bernoulli'"
                ) from exc
            if source == "larochelle":
                raise DataError(
                    f"data.bmnist_source is 'larochelle' but the Larochelle .amat files are "
                    f"unavailable: {exc}. Or set data.bmnist_source to 'auto' or 'bernoulli' "
                    f"for the seeded Bernoulli binarization of MNIST"
                ) from exc
            log.warning(
                "Larochelle binarized MNIST unavailable, so (data.bmnist_source: auto) "
                "using the seeded Bernoulli binarization of MNIST instead: %s",
                exc,
            )
    seed = int(cfg.data.bmnist_seed)
    records: list[dict[str, Any]] = []

    def build() -> dict[str, np.ndarray]:
        grey, labels = _mnist_split(_fetch_mnist(cfg, raw_root, mirror, records))
        binary = bernoulli_binarize(grey, seed)
        out = {f"x_{s}": binary[s] for s in SPLITS}
        out.update({f"y_{s}": labels[s] for s in SPLITS})
        return out

    notes = {
        "labels": "MNIST digit labels 0-9",
        "image_shape": [28, 28],
        "binarization": (
            f"Bernoulli: rng = numpy.random.Generator(numpy.random.PCG64({seed})); for train, "
            f"valid, test in order u = rng.random(shape, dtype=float32); pixel = u < k/255"
        ),
        "numpy_version": np.__version__,
    }
    return Plan(
        f"bernoulli-seed{seed}",
        {"bmnist_seed": seed, "train_rows": MNIST_TRAIN},
        dict(sources.MNIST_SHA256),
        build,
        notes,
        records,
    )


def _plan_larochelle(cfg: Config, raw_root: Path, mirror: str | None) -> Plan:
    fetched: dict[str, Fetched] = {}
    records = []
    for name, rows in sources.LAROCHELLE_ROWS.items():

        def check(path: Path, rows: int = rows) -> None:
            parse_amat(read_bytes(path), str(path), rows)

        spec = RemoteFile(
            "bmnist",
            name,
            tuple(b + name for b in sources.LAROCHELLE_BASE_URLS),
            sources.LAROCHELLE_SHA256[name],
            check=check,
        )
        got = fetch(spec, raw_root, mirror, cfg.data.download)
        fetched[name] = got
        records.append(_source_record(spec, got))

    def build() -> dict[str, np.ndarray]:
        out = {}
        for split in SPLITS:
            name = f"binarized_mnist_{split}.amat"
            got = fetched[name]
            bits = parse_amat(read_bytes(got.path), str(got.path), sources.LAROCHELLE_ROWS[name])
            out[f"x_{split}"] = bits.astype(np.float32)
        return out

    notes = {"labels": "none: the Larochelle .amat files carry no labels", "image_shape": [28, 28]}
    inputs = {r["file"]: r["sha256"] for r in records}
    return Plan("larochelle-amat", {}, inputs, build, notes, records)


def _plan_frey(cfg: Config, raw_root: Path, mirror: str | None) -> Plan:
    split = cfg.data.frey_split
    seed, n_valid, n_test = int(split.seed), int(split.valid), int(split.test)
    n_frames = sources.FREY_SHAPE[1]
    if n_valid + n_test >= n_frames:
        raise ConfigError(
            f"data.frey_split: valid ({n_valid}) + test ({n_test}) must leave "
            f"training frames out of {n_frames}; lower them"
        )
    spec = RemoteFile(
        "frey",
        sources.FREY_FILE,
        tuple(sources.FREY_URLS),
        None,
        mirror_sha256=sources.FREY_MIRROR_SHA256,
        check=check_frey,
    )
    got = fetch(spec, raw_root, mirror, cfg.data.download)

    def build() -> dict[str, np.ndarray]:
        x = GREY[load_frey(got.path)]
        perm = np.random.Generator(np.random.PCG64(seed)).permutation(n_frames)
        rows = {
            "valid": perm[:n_valid],
            "test": perm[n_valid : n_valid + n_test],
            "train": perm[n_valid + n_test :],
        }
        return {f"x_{s}": x[rows[s]] for s in SPLITS}

    notes = {
        "labels": "none",
        "image_shape": [28, 20],
        "split": (
            f"perm = numpy.random.Generator(numpy.random.PCG64({seed})).permutation("
            f"{n_frames}); valid = perm[:{n_valid}], test = perm[{n_valid}:"
            f"{n_valid + n_test}], train = the rest"
        ),
    }
    return Plan(
        f"split-seed{seed}",
        {"seed": seed, "valid": n_valid, "test": n_test},
        {spec.name: got.sha256},
        build,
        notes,
        [_source_record(spec, got)],
    )


def _plan_tfd(cfg: Config, raw_root: Path, mirror: str | None) -> Plan:
    tfd_path = cfg.data.tfd_path
    if not tfd_path:
        raise DataError(
            "the Toronto Face Database is licence-gated and cannot be downloaded: if you hold "
            "TFD_48x48.mat, set data.tfd_path in params.yaml (or pass --tfd-path FILE); "
            "otherwise use `frey`, the default open stand-in"
        )
    path = Path(tfd_path)
    if not path.is_file():
        raise DataError(
            f"data.tfd_path / --tfd-path {path} does not exist; point it at your "
            f"licensed TFD_48x48.mat, or use `frey`, the open stand-in"
        )
    fold = int(cfg.data.tfd_fold)
    record = {
        "file": path.name,
        "path": str(path),
        "sha256": content_sha256(path),
        "sha256_of": "file",
        "fetched_from": "user-supplied (licensed)",
    }
    notes = {"labels": "labs_ex (facial expression)", "image_shape": [48, 48]}
    return Plan(
        f"fold{fold}",
        {"tfd_fold": fold},
        {record["file"]: record["sha256"]},
        lambda: load_tfd(path, fold),
        notes,
        [record],
    )


PLANNERS: dict[str, Callable[[dict[str, Any], Path, str | None], Plan]] = {
    "mnist": _plan_mnist,
    "bmnist": _plan_bmnist,
    "frey": _plan_frey,
    "tfd": _plan_tfd,
}
