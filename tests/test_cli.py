"""Command-line behaviour that is not a subcommand's own work."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# tqdm reads TQDM_* when it is imported: gae.cli must not import it before main() runs
PROBE = (
    "import sys\n"
    "from gae.cli import _quiet_progress_when_logged\n"
    "assert 'tqdm' not in sys.modules, 'gae.cli imports tqdm too early'\n"
    "_quiet_progress_when_logged()\n"
    "from tqdm import tqdm\n"
    "print(tqdm(total=1, disable=False).mininterval)\n"
)


@pytest.mark.parametrize(("preset", "expected"), [(None, "30.0"), ("5", "5.0")])
def test_progress_bars_redraw_rarely_into_log_files(tmp_path, preset, expected) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TQDM_MININTERVAL"}
    if preset is not None:
        env["TQDM_MININTERVAL"] = preset  # the user's own choice wins
    with open(tmp_path / "stderr.log", "w") as stderr:  # a file, as under Snakemake or DVC
        out = subprocess.run(
            [sys.executable, "-c", PROBE],
            env=env,
            stderr=stderr,
            capture_output=False,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
    assert out.stdout.strip() == expected
