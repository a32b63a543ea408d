#!/usr/bin/env bash
# Stops what .ci/slurm-up.sh started: slurmd, slurmctld, slurmdbd (jobs still queued are cancelled first),
# then munged and MariaDB. Leaves the packages and the config installed. Idempotent.
set -uo pipefail
command -v scancel >/dev/null 2>&1 && scancel --user "$(id -un)" >/dev/null 2>&1
for daemon in slurmd slurmctld slurmdbd; do
  pidfile=/run/slurm/$daemon.pid
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    for _ in $(seq 20); do kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null || break; sleep 0.5; done
  fi
done
if [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
  kill "$(cat /run/munge/munged.pid)"
fi
command -v service >/dev/null 2>&1 && service mariadb status >/dev/null 2>&1 && service mariadb stop >/dev/null
echo "slurm-down: stopped" >&2
