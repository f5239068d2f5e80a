"""Complete variant settings for tests that define their own variants.

Every key of a variant is required (params.yaml writes each default once), so a test variant
lists them all: ``gae_variant(**keys)`` is a GAE with the values the code used to fall back on
where a variant left a key out (the slides' model: sampled E-step, in-batch candidates, the
posterior component variances), updated by ``keys`` - the same effective settings as before.
"""

from __future__ import annotations

from typing import Any

OLD_GAE_FALLBACKS: dict[str, Any] = {
    "kind": "gae",
    "e_step": "sampled",
    "candidates": "batch",
    "n_candidates": 10,
    "neighbour_refresh_epochs": 1,
    "neighbour_search": "exact",
    "leave_one_out": False,
    "exemplar_gradient": False,
    "prior_variance": "posterior",
    "lambda_mu": 0.0,
    "lambda_sigma": 0.0,
    "n_z": 1,
    "warmup_epochs": 0,
}


def gae_variant(**keys: Any) -> dict[str, Any]:
    """A complete ``kind: gae`` variant: the old fallbacks, then ``keys``."""
    return {**OLD_GAE_FALLBACKS, **keys}
