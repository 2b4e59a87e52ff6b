#!/usr/bin/env bash
# Make sure the tools the credential and completion tests drive are installed:
#   * Debian's OpenSSH server (sshd), started on loopback by tests/integration/test_ssh_access.py;
#   * kubectl from Debian's kubernetes-client, which reads the kubeconfig that
#     `together clusters get-credentials` writes (tests/compat/test_cli.py);
#   * zsh, which runs the script of `clusterplane completion zsh` (tests/unit/test_cli_completion.py).
# Installs the Debian packages when missing. When /usr/bin/kubectl belongs to another package
# (for example the Google Cloud SDK's version dispatcher, which runs exec plugins and needs a
# live server), Debian's kubectl is unpacked under .cache/tools/ instead; the tests prefer it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
local_kubectl="$root/.cache/tools/kubernetes-client/usr/bin/kubectl"
packages=()
if ! [ -x /usr/sbin/sshd ]; then
  packages+=(openssh-server)
fi
if ! command -v zsh >/dev/null; then
  packages+=(zsh)
fi
need_local_kubectl=0
if ! dpkg -s kubernetes-client >/dev/null 2>&1 && ! [ -x "$local_kubectl" ]; then
  if [ -e /usr/bin/kubectl ]; then
    need_local_kubectl=1
  else
    packages+=(kubernetes-client)
  fi
fi
if [ ${#packages[@]} -eq 0 ] && [ $need_local_kubectl -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing: ${packages[*]} kubernetes-client; this is not root: install them first" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ ${#packages[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
if [ $need_local_kubectl -eq 1 ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  chmod 755 "$work"
  (cd "$work" && apt-get download -qq kubernetes-client 2>/dev/null)
  mkdir -p "$root/.cache/tools/kubernetes-client"
  dpkg-deb -x "$work"/kubernetes-client_*.deb "$root/.cache/tools/kubernetes-client"
fi
