"""Where each data set's input files come from, and how a faithful copy is recognised.

The expected sha256 values are of the DECOMPRESSED content (for ``.gz`` files): mirrors may
re-compress archives, so archive bytes differ between faithful copies while the content does not.
They equal the ``SHA256SUMS`` of the offline mirror (``../shared/data``).

Tests monkeypatch the URL tuples below (e.g. to a local ``http.server``), so code reads them at
call time through this module rather than copying them at import.
"""

from __future__ import annotations

# (height, width) of each data set's images; rows of the prepared arrays are these, flattened.
IMAGE_SHAPES: dict[str, tuple[int, int]] = {
    "mnist": (28, 28),
    "bmnist": (28, 28),
    "frey": (28, 20),
    "tfd": (48, 48),
}

# MNIST (LeCun et al.): the IDX files. First URL is the mirror most tools use.
MNIST_BASE_URLS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    ),
    "train-labels-idx1-ubyte.gz": (
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    ),
}
# The shapes the IDX headers must declare (checked on parse, independent of the hash).
MNIST_SHAPES: dict[str, tuple[int, ...]] = {
    "train-images-idx3-ubyte.gz": (60000, 28, 28),
    "train-labels-idx1-ubyte.gz": (60000,),
    "t10k-images-idx3-ubyte.gz": (10000, 28, 28),
    "t10k-labels-idx1-ubyte.gz": (10000,),
}

# Larochelle & Murray (2011) static binarization: the data set behind the published
# static-binarized-MNIST numbers (VampPrior 85.57, IWAE, pythae). A fetched or mirrored copy is
# verified against the PUBLISHED sha256 of the canonical files (as listed in TensorFlow Datasets'
# url_checksums for `binarized_mnist`; 78,400,000 / 15,680,000 / 15,680,000 bytes) and by content
# (rows x 784 values, each 0 or 1). The test file is the MNIST test set sorted by digit: every
# subset of it must be a seeded random sample (gae.data.subsets), never its head.
LAROCHELLE_BASE_URLS: tuple[str, ...] = (
    "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
)
LAROCHELLE_ROWS: dict[str, int] = {
    "binarized_mnist_train.amat": 50000,
    "binarized_mnist_valid.amat": 10000,
    "binarized_mnist_test.amat": 10000,
}
LAROCHELLE_SHA256: dict[str, str] = {
    "binarized_mnist_train.amat": (
        "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"
    ),
    "binarized_mnist_valid.amat": (
        "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"
    ),
    "binarized_mnist_test.amat": (
        "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"
    ),
}

# Frey faces (Brendan Frey via Sam Roweis' page). The canonical file's hash is not the mirror's
# (the mirror copy was rebuilt losslessly), so a downloaded copy is verified by content only;
# a mirror copy is verified against the mirror's SHA256SUMS (default: the value below).
FREY_FILE = "frey_rawface.mat"
FREY_URLS: tuple[str, ...] = ("https://cs.nyu.edu/~roweis/data/frey_rawface.mat",)
FREY_MIRROR_SHA256 = "2afe0b713b6bf25e7bf2815518d20d6b9be3b6b08fcd1fe2c92a0b8a9a7ec3d2"
FREY_SHAPE = (560, 1965)  # variable ff: 28*20 pixels x 1965 frames, uint8
