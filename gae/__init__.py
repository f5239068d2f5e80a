"""Generative Auto Encoder (Kim, Kim & Hwang 2018) beside a VAE baseline.

Layering, bottom to top (a module never imports from a layer above it):
``errors/io/config/ops`` -> ``data`` -> ``models/priors`` -> ``objectives`` -> ``training``
-> ``evaluation`` -> ``figures/tables/report`` -> ``cli``.
"""

__version__ = "0.1.0"
