#!/usr/bin/env bash
# Make sure what the Kubernetes runtime tests run is on this machine, building what Debian
# does not ship as a binary:
#   * kube-apiserver, kube-scheduler, kube-controller-manager and kubelet, built offline
#     from Debian's `kubernetes` source package with Debian's Go (vendored modules only,
#     GOPROXY=off) and scripts/kubernetes/kubelet-loopback-nodeip.patch applied (the
#     kubelet then accepts a 127.x --node-ip);
#   * the pause and busybox images (docker-archive tarballs, scripts/kubernetes/mkimage.py)
#     that the tests import into containerd;
#   * Debian's etcd, containerd, runc, CNI plugins and static busybox.
# The build (about 7 minutes on two cores) is cached under $CLUSTERPLANE_KUBERNETES_CACHE
# (default /var/cache/clusterplane) as k8s-<key>/{bin,images}, the key hashing the source
# version, `go version`, the recipe (scripts/kubernetes/build.sh), the patch and
# mkimage.py; a failed build leaves no entry. <cache>/kubernetes links to
# the current one, which is where the tests look. No daemon is started: the packages' init
# scripts are blocked for the install with a policy-rc.d (when the machine has none).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kit="$root/scripts/kubernetes"
cache="${CLUSTERPLANE_KUBERNETES_CACHE:-/var/cache/clusterplane}"
packages=(golang-go rsync make gcc libc6-dev golang-github-modern-go-reflect2-dev
  etcd-server containerd runc containernetworking-plugins busybox-static iproute2 openssl)

missing_packages() {
  local package
  for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || echo "$package"
  done
}

install_packages() {
  local missing
  missing=$(missing_packages)
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-kubernetes: not root; install first:" $missing >&2
    exit 1
  fi
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if ! [ -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 $missing >/dev/null ||
    { [ $own_policy -eq 0 ] || rm -f "$policy"; exit 1; }
  [ $own_policy -eq 0 ] || rm -f "$policy"
}

# A deb-src twin of the machine's Debian sources, private to the cache (the system's apt
# configuration stays untouched); its lists are fetched once and kept.
source_apt_options() {
  local dir="$cache/apt"
  mkdir -p "$dir/lists/partial" "$dir/sources.list.d"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      > "$dir/sources.list.d/src.sources"
  else
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > "$dir/sources.list.d/src.list"
  fi
  echo "-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=$dir/sources.list.d" \
    "-o Dir::State::Lists=$dir/lists"
}

source_version() {
  # shellcheck disable=SC2086
  apt-get $apt_options source --print-uris kubernetes 2>/dev/null |
    sed -n "s/^'[^']*' kubernetes_\(.*\)\.dsc .*/\1/p" | head -1
}

busybox_image() {
  local out="$1" links=() applet
  [ -s "$out/images/busybox.tar" ] && return 0
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || links+=(--symlink "/bin/$applet=busybox")
  done
  python3 "$kit/mkimage.py" "$out/images/busybox.tar.part" localhost/clusterplane/busybox:1.35 \
    --cmd '["/bin/sh"]' /bin/busybox=/bin/busybox "${links[@]}"
  mv "$out/images/busybox.tar.part" "$out/images/busybox.tar"
}

install_packages
mkdir -p "$cache"
exec 9> "$cache/.kubernetes.lock"
flock 9
apt_options=$(source_apt_options)
# shellcheck disable=SC2086
[ -n "$(ls -A "$cache/apt/lists" | grep -v partial)" ] || apt-get $apt_options update -qq
version=$(source_version)
[ -n "$version" ] || { echo "ensure-kubernetes: no kubernetes source package in apt" >&2; exit 1; }
key=$( { echo "$version"; go version
  cat "$kit/build.sh" "$kit/kubelet-loopback-nodeip.patch" "$kit/mkimage.py"; } | sha256sum | cut -c1-16)
out="$cache/k8s-$key"
if ! [ -f "$out/.complete" ]; then
  echo "ensure-kubernetes: building Kubernetes $version with $(go version | cut -d' ' -f3) into $out"
  "$kit/build.sh" "$cache/build-$key" "$out" "$apt_options" ||
    { rm -rf "$out" "$cache/build-$key"; exit 1; }
  rm -rf "$cache/build-$key"
  echo "$version" > "$out/source-version"
  touch "$out/.complete"
fi
busybox_image "$out"
ln -sfn "k8s-$key" "$cache/kubernetes"
