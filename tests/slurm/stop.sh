#!/usr/bin/env bash
# Stops the single-node SLURM of tests/slurm/start.sh: slurmd, slurmctld, then munged, each by
# the pid in its pid file (so only those daemons are touched). Jobs still queued or running are
# cancelled first. Safe to re-run: a daemon that is not running is skipped. Packages, munge key,
# slurm.conf and logs (/var/log/slurm) stay.
set -uo pipefail

say() { echo "stop.sh: $*"; }
[ "$(id -u)" = 0 ] || { echo "stop.sh: needs root" >&2; exit 1; }

declare -A PIDFILE=([munged]=/run/munge/munged.pid [slurmctld]=/run/slurm/slurmctld.pid
  [slurmd]=/run/slurm/slurmd.pid)
pid_of() { local f=${PIDFILE[$1]}; [ -s "$f" ] && cat "$f"; }
running() { local pid; pid=$(pid_of "$1") && kill -0 "$pid" 2>/dev/null; }

if running slurmctld; then
  jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    # shellcheck disable=SC2086
    scancel $jobs && say "cancelled jobs $jobs"
  fi
fi
for daemon in slurmd slurmctld munged; do
  if ! running "$daemon"; then
    say "$daemon not running"
    continue
  fi
  pid=$(pid_of "$daemon")
  kill "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"
    say "$daemon (pid $pid) did not stop within 10 s: killed"
  else
    say "stopped $daemon (pid $pid)"
  fi
done
