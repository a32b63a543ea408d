#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the tests marked `slurm` (tests/test_slurm.py).
#
# Installs Debian's slurm-wlm, slurmdbd, munge and mariadb-server when absent (apt-get, as root), writes
# /etc/slurm/slurm.conf (this host as controller and only node, its CPUs and memory, one partition `debug`,
# requeue allowed) and slurmdbd.conf (job accounting in MariaDB: submitit reads job states with `sacct`, as on
# a real cluster), starts mariadb, munged, slurmdbd, slurmctld and slurmd as root, and waits until `sinfo`
# shows the node idle. Idempotent: when the node already answers idle (or busy) it does nothing.
# Undo with .ci/slurm-down.sh.
#
# Exit 0: the cluster is up. Exit 3: it cannot be set up here (not root, no apt-get, packages not
# installable); the slurm tests then skip with a reason, so CI on such a machine runs everything else.
# Exit 1: a cluster that should have come up did not (the daemons' logs under /var/log/slurm are named).
set -euo pipefail

WAIT_S=${SLURM_UP_WAIT_S:-60}
LOGS=/var/log/slurm
CLUSTER=alrun-ci
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)

say() { echo "slurm-up: $*" >&2; }
node_state() { sinfo -h -N -o %t 2>/dev/null | head -n1 || true; }
accounting() { sacct -n -X -S now-1minutes >/dev/null 2>&1; }
wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll COMMAND once a second until it succeeds
  local limit=$1 what=$2 t; shift 2
  for ((t = 0; t < limit; t++)); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  say "$what did not come up within ${limit}s; see $LOGS/"; exit 1
}

if [ "$(id -u)" -ne 0 ]; then
  case "$(node_state)" in
    idle|mix|alloc|comp) say "not root: the cluster that answers is left as it is"; exit 0 ;;
  esac
  say "not root, so no SLURM here: the slurm tests will skip"; exit 3
fi

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "${missing[*]} not installed and there is no apt-get: the slurm tests will skip"; exit 3
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
      >/tmp/slurm-up-apt.log 2>&1; then
    say "apt-get could not install ${missing[*]} (see /tmp/slurm-up-apt.log): the slurm tests will skip"; exit 3
  fi
fi

host=$(hostname -s)
# CPUs and memory as slurmd sees them; memory a little under, so the node is never refused for having less
cpus=$(slurmd -C 2>/dev/null | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -n1)
mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
cpus=${cpus:-$(nproc)}
mem=$(( ${mem:-$(free -m | awk '/^Mem:/ {print $2}')} * 9 / 10 ))

wanted=$(mktemp)
trap 'rm -f "$wanted"' EXIT
cat > "$wanted" <<CONF
# written by alrun's .ci/slurm-up.sh: a single-node cluster for the tests
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# short scheduling cycles: a requeued job waits for its begin time, then for the next cycle
SchedulerParameters=bf_interval=5,sched_interval=5
ReturnToService=2
JobRequeue=1
KillWait=10
# a requeued job may start again after this many seconds (SLURM's default, 120, would stall every requeue test)
AuthInfo=cred_expire=10
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
if cmp -s "$wanted" /etc/slurm/slurm.conf; then
  case "$(node_state)" in
    idle|mix|alloc|comp) if accounting; then say "already up ($(sinfo -h -o '%P %D %t' | head -n1))"; exit 0; fi ;;
  esac
fi
mkdir -p /etc/slurm "$LOGS" /var/spool/slurmctld /var/spool/slurmd /run/slurm
cp "$wanted" /etc/slurm/slurm.conf
cat > /etc/slurm/slurmdbd.conf <<CONF
# written by alrun's .ci/slurm-up.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
LogFile=$LOGS/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
CONF
chmod 600 /etc/slurm/slurmdbd.conf

# MariaDB (its root is reached through the unix socket as root, as Debian sets it up)
if ! mysqladmin ping >/dev/null 2>&1; then
  service mariadb start >/dev/null
fi
wait_for 30 "mariadb" mysqladmin ping

# munge: a key when the package left none, then the daemon (no systemd needed)
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile /etc/munge/munge.key
fi
mkdir -p /run/munge && chown munge:munge /etc/munge /etc/munge/munge.key /run/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  su -s /bin/sh munge -c munged
fi
wait_for 10 "munged" sh -c 'munge -n | unmunge >/dev/null 2>&1'

# the SLURM daemons, restarted when running (the config may have changed)
for daemon in slurmctld slurmd slurmdbd; do
  pidfile=/run/slurm/$daemon.pid
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null || break; sleep 0.5; done
  fi
done
slurmdbd
wait_for 30 "slurmdbd" sh -c 'sacctmgr -n list cluster >/dev/null 2>&1'
sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
slurmctld
slurmd

for ((t = 0; t < WAIT_S; t++)); do
  state=$(node_state)
  case "$state" in
    idle|mix|alloc) accounting && { say "up: node $host, $cpus CPUs, $mem MB, partition debug ($state)"; exit 0; } ;;
    down*|drain*|inval*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
say "the node did not become idle within ${WAIT_S}s (sinfo: '${state:-no answer}'); see $LOGS/slurmctld.log and $LOGS/slurmd.log"
exit 1
