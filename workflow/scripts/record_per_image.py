"""The study's committed per-image record: loglik_images.npz -> loglik_images.csv (text).

    python workflow/scripts/record_per_image.py IN.npz OUT.csv

The `study_record_images` rule of workflow/rules/study.smk runs it (gae.study.record_per_image).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gae.errors import GaeError
from gae.study import record_per_image

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        record_per_image(Path(sys.argv[1]), Path(sys.argv[2]))
    except GaeError as exc:
        sys.exit(f"record_per_image: {exc}")
