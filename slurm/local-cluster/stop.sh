#!/usr/bin/env bash
# Stop the cluster started by start.sh: only the daemons named in its pid files.
set -uo pipefail
STATE=${FM_SLURM_STATE:-/var/lib/fm-slurm}
for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" /run/munge/munged.pid; do
  [[ -s $pidfile ]] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
done
echo "stopped"
