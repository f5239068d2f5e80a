"""Remove Snakemake's lock when the run that took it is gone (killed), before `make run`.

    python workflow/scripts/unlock_stale.py

Why: a Snakemake that is killed (kill -9, a closed terminal, an out-of-memory kill) leaves
``.snakemake/locks/`` behind, and the next run stops with "Directory cannot be locked". The lock
only matters while another Snakemake works in this folder, so: no lock, nothing to do; a lock and
a live Snakemake process whose working folder is this one, stop and say which process; a lock and
no such process, the lock is stale and ``snakemake --unlock`` removes it. Where the processes
cannot be listed (no /proc), it prints the one command instead of guessing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LOCKS = Path(".snakemake") / "locks"


def snakemake_processes(folder: Path) -> list[int]:
    """Pids of the other processes running Snakemake with ``folder`` as their working folder."""
    here = folder.resolve()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in (os.getpid(), os.getppid()):
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:  # gone meanwhile, or another user's
            continue
        # `.venv/bin/snakemake ...` (python + script) or `python -m snakemake ...`
        names = {os.path.basename(arg.decode(errors="replace")) for arg in cmdline[:3]}
        if cwd == here and "snakemake" in names:
            found.append(int(proc.name))
    return found


def main() -> int:
    if not LOCKS.is_dir() or not any(LOCKS.iterdir()):
        return 0
    if not Path("/proc/self").exists():
        print(
            f"unlock_stale: {LOCKS}/ holds a lock; if no other Snakemake runs in this folder, "
            f"remove it with: snakemake --unlock",
            file=sys.stderr,
        )
        return 0
    live = snakemake_processes(Path.cwd())
    if live:
        print(
            f"unlock_stale: another Snakemake is running in this folder (pid "
            f"{', '.join(map(str, live))}); wait for it to finish, or stop it (kill PID) and run "
            f"make run again",
            file=sys.stderr,
        )
        return 1
    print(
        "unlock_stale: removing the stale lock of a Snakemake that was killed "
        "(snakemake --unlock); its unfinished jobs are re-run (--rerun-incomplete)",
        file=sys.stderr,
    )
    return subprocess.run([sys.executable, "-m", "snakemake", "--unlock", "--quiet"]).returncode


if __name__ == "__main__":
    raise SystemExit(main())
