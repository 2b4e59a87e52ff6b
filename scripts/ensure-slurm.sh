#!/usr/bin/env bash
# Make sure Debian's Slurm (22.05: slurmctld, slurmd, the client tools) and munge are
# installed; installs the packages when a binary is missing, and does nothing else.
# No service is started: the packages' init scripts are blocked for the install with a
# policy-rc.d (when the machine has none), and the tests start their own daemons with
# private keys, sockets and state (tests/support/hosts.py, clusterplane.agent.slurm.runtime).
set -euo pipefail
needed=(/usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sinfo /usr/bin/scontrol /usr/bin/srun
  /usr/bin/sbatch /usr/sbin/munged /usr/sbin/mungekey)
missing=0
for binary in "${needed[@]}"; do
  [ -x "$binary" ] || missing=1
done
if [ $missing -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "Slurm or munge is not installed and this is not root: install slurmctld slurmd" \
    "slurm-client munge first" >&2
  exit 1
fi
policy=/usr/sbin/policy-rc.d
own_policy=0
if ! [ -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ $own_policy -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
  slurmctld slurmd slurm-client munge >/dev/null
for binary in "${needed[@]}"; do
  [ -x "$binary" ] || { echo "ensure-slurm: $binary still missing after the install" >&2; exit 1; }
done
