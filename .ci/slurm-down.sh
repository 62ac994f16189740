#!/usr/bin/env bash
# Stop what slurm-up.sh started, each daemon by its pidfile; the pidfiles are removed (a stale
# slurmctld pidfile breaks Debian's package removal).
stop() { local name=$1 pf=$2 pid; [ -s "$pf" ] || return 0; pid=$(cat "$pf")
  if kill -0 "$pid" 2>/dev/null; then kill "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && { echo "$name ($pid) still alive" >&2; return 1; }; fi
  rm -f "$pf"; }
stop slurmd /run/slurmd.pid; stop slurmctld /run/slurmctld.pid; stop slurmdbd /run/slurmdbd.pid
stop mariadbd /run/mysqld/mysqld.pid; stop munged /run/munge/munged.pid
exit 0
