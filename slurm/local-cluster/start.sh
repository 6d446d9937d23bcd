#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (Debian's slurm-wlm + munge, no systemd, no
# accounting), for trying the `slurm` profile and for the tests. Idempotent: daemons already
# running (per their pid files) are left alone. Needs root (munged runs as user munge).
#
#   bash slurm/local-cluster/start.sh      # installs slurm-wlm + munge with apt if missing
#   bash slurm/local-cluster/stop.sh
#
# State, logs and pid files live in $FM_SLURM_STATE (default /var/lib/fm-slurm). The config is
# written to /etc/slurm/slurm.conf (where sbatch/squeue look) unless one not written by this
# script is already there.
set -euo pipefail
STATE=${FM_SLURM_STATE:-/var/lib/fm-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by forward-models slurm/local-cluster/start.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "installing slurm-wlm and munge with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

mkdir -p "$STATE"/{ctld,d,log}
# munge: one key per machine (the package's postinst creates it; create it if it did not).
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
[[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
if ! alive /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged --force
fi

if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
  echo "$CONF exists and was not written by this script: leaving it (and the cluster) alone" >&2
  exit 1
fi
NODE=$(slurmd -C | head -1)  # NodeName=<host> CPUs=... RealMemory=... as slurmd sees this machine
sed -e "s|@MARK@|$MARK|" -e "s|@HOST@|$(hostname -s)|" -e "s|@STATE@|$STATE|g" -e "s|@NODE@|$NODE|" \
  "$HERE/slurm.conf.in" >"$CONF.new"
mv "$CONF.new" "$CONF"

alive "$STATE/slurmctld.pid" || slurmctld -i
alive "$STATE/slurmd.pid" || slurmd

# Wait until the node takes jobs.
for _ in $(seq 60); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    sinfo
    exit 0
  fi
  sleep 0.5
done
echo "SLURM did not come up; logs in $STATE/log" >&2
tail -n 20 "$STATE"/log/*.log >&2 || true
exit 1
