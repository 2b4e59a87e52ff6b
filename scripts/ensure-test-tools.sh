#!/usr/bin/env bash
# Make sure the tools the credential tests drive are installed: Debian's OpenSSH server
# (sshd, started on loopback by tests/integration/test_ssh_access.py) and kubectl from
# Debian's kubernetes-client (reads the kubeconfig `together clusters get-credentials`
# writes). Installs the Debian packages when missing.
set -euo pipefail
missing=()
if ! [ -x /usr/sbin/sshd ]; then
  missing+=(openssh-server)
fi
if ! command -v kubectl >/dev/null 2>&1; then
  missing+=(kubernetes-client)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "${missing[*]} not installed and this is not root: install them first" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
