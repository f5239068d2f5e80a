#!/usr/bin/env bash
# A single-node SLURM on this machine, for tests/test_slurm.py (see docs/cluster.md):
#   bash tests/slurm/start.sh && GAE_SLURM_TEST=1 .venv/bin/pytest tests/test_slurm.py
# Installs Debian's slurm-wlm and munge with apt (skipped when installed), makes a munge key
# (kept when there is one), writes a minimal /etc/slurm/slurm.conf (this host as controller and
# the one compute node, all its CPUs, partitions `cpu` (default) and `gpu` on that node, no
# GRES: the test asks for gpu=0 in its profile copy, see tests/test_slurm.py), starts munged,
# slurmctld and slurmd, and waits until `sinfo` shows the node idle. Needs root. Safe to re-run:
# daemons already running are kept, unless slurm.conf changed (then they are restarted).
# No accounting database (slurmdbd): job records go to /var/log/slurm/jobcomp.log
# (JobCompType=jobcomp/filetxt), and finished jobs stay visible to `squeue` for MinJobAge (an hour).
# Stop everything with tests/slurm/stop.sh.
set -euo pipefail

say() { echo "start.sh: $*"; }
[ "$(id -u)" = 0 ] || { echo "start.sh: needs root (apt-get, daemons)" >&2; exit 1; }

# 1. packages
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
  && command -v sbatch >/dev/null; then
  say "slurm-wlm and munge already installed ($(dpkg-query -W -f '${Version}' slurm-wlm 2>/dev/null))"
else
  say "installing slurm-wlm and munge with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
  say "installed slurm-wlm $(dpkg-query -W -f '${Version}' slurm-wlm)"
fi

# 2. munge key
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ -s /etc/munge/munge.key ]; then
  say "munge key exists: /etc/munge/munge.key"
else
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  say "made a munge key: /etc/munge/munge.key"
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

# 3. slurm.conf: this host, its CPUs and memory (a little less than the total, so slurmd
# never finds the node smaller than declared)
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
install -d -m 0755 /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
CONF=/etc/slurm/slurm.conf
NEW=$(mktemp)
cat >"$NEW" <<EOF
# Written by gae's tests/slurm/start.sh: a single-node test cluster on this host.
ClusterName=gae-test
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# no cgroups needed (containers, gVisor): plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# no slurmdbd: completed jobs are written to a text file, and stay in squeue for an hour
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
JobAcctGatherType=jobacct_gather/none
MinJobAge=3600
ReturnToService=2
SlurmdTimeout=300
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=cpu Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
# the same node again: profiles/slurm sends its GPU rules to a GPU partition
PartitionName=gpu Nodes=${HOST} Default=NO MaxTime=INFINITE State=UP
EOF
CHANGED=0
if [ -f "$CONF" ] && cmp -s "$NEW" "$CONF"; then
  say "slurm.conf unchanged: $CONF"
  rm -f "$NEW"
else
  if [ -f "$CONF" ] && ! head -1 "$CONF" | grep -q "tests/slurm/start.sh"; then
    cp "$CONF" "$CONF.before-gae-test"
    say "kept the previous slurm.conf as $CONF.before-gae-test"
  fi
  mv "$NEW" "$CONF"
  chmod 0644 "$CONF"
  CHANGED=1
  say "wrote $CONF (node $HOST, CPUs=$CPUS, RealMemory=${MEM_MB} MB, partitions cpu*, gpu)"
fi
# Debian's packages read /etc/slurm; no cgroup.conf is needed with proctrack/linuxproc

# Each daemon is known by its pid file (only the processes these scripts started are touched).
declare -A PIDFILE=([munged]=/run/munge/munged.pid [slurmctld]=/run/slurm/slurmctld.pid
  [slurmd]=/run/slurm/slurmd.pid)
pid_of() { local f=${PIDFILE[$1]}; [ -s "$f" ] && cat "$f"; }
running() { local pid; pid=$(pid_of "$1") && kill -0 "$pid" 2>/dev/null; }
stop_one() {
  kill "$(pid_of "$1")"
  for _ in $(seq 50); do running "$1" || return 0; sleep 0.2; done
  echo "start.sh: $1 did not stop" >&2
  return 1
}

# 4. daemons
if running munged; then
  say "munged already running"
else
  runuser -u munge -- /usr/sbin/munged
  say "started munged"
fi
munge -n | unmunge >/dev/null || { echo "start.sh: munge does not work" >&2; exit 1; }

if [ "$CHANGED" = 1 ]; then
  running slurmd && stop_one slurmd && say "stopped slurmd (new slurm.conf)"
  running slurmctld && stop_one slurmctld && say "stopped slurmctld (new slurm.conf)"
fi
if running slurmctld; then
  say "slurmctld already running"
else
  /usr/sbin/slurmctld
  say "started slurmctld (log /var/log/slurm/slurmctld.log)"
fi
if running slurmd; then
  say "slurmd already running"
else
  /usr/sbin/slurmd
  say "started slurmd (log /var/log/slurm/slurmd.log)"
fi

# 5. wait for the node
for i in $(seq 60); do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1 || true)
  case "$state" in
    idle | mixed | allocated) break ;;
    down* | drain* | unknown*)
      [ "$i" = 10 ] && scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
sinfo
case "$state" in
  idle | mixed | allocated) say "node $HOST is $state: SLURM is up (stop it with tests/slurm/stop.sh)" ;;
  *)
    echo "start.sh: node $HOST is '${state:-not listed}' after 60 s; see /var/log/slurm/" >&2
    tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    exit 1
    ;;
esac
