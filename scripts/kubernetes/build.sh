#!/usr/bin/env bash
# Build Kubernetes from Debian's `kubernetes` source package, offline, into OUT:
#   scripts/kubernetes/build.sh WORK OUT "APT_OPTIONS"
# OUT/bin gets kube-apiserver, kube-scheduler, kube-controller-manager and kubelet;
# OUT/images/pause.tar the pause image, from the tree's pause.c. WORK (about 3 GB) is the
# build tree; the caller removes it. Go modules come from the vendor tree only
# (GOPROXY=off). scripts/ensure-kubernetes.sh runs this and caches OUT under a key that
# hashes this file, the patch, mkimage.py, the source version and `go version`.
set -euo pipefail
kit="$(cd "$(dirname "$0")" && pwd)"
work="$1" out="$2" apt_options="$3"
binaries=(kube-apiserver kube-scheduler kube-controller-manager kubelet)
rm -rf "$work"
mkdir -p "$work" "$out/bin" "$out/images"
# shellcheck disable=SC2086
(cd "$work" && apt-get $apt_options source --download-only kubernetes >/dev/null 2>&1)
tar xzf "$work"/kubernetes_*.orig.tar.gz -C "$work"
tree=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
# The vendored reflect2 v1.0.1 crashes on Go >= 1.18 (SIGSEGV in jsoniter's map encoding);
# Debian's 1.0.2 is a drop-in replacement.
rm -rf "$tree/vendor/github.com/modern-go/reflect2"
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/"
rm -f "$tree/vendor/github.com/modern-go/reflect2/go.mod"
# The kubelet refuses a loopback --node-ip without it (test hosts live on 127.1.x).
(cd "$tree" && patch -p1 -s < "$kit/kubelet-loopback-nodeip.patch")
mkdir -p "$tree/.go/src/k8s.io" "$work/home"
ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
what=""
for binary in "${binaries[@]}"; do what="$what cmd/$binary"; done
started=$(date +%s)
if ! (cd "$tree" && GOPATH="$tree/.go" CGO_ENABLED=0 GOPROXY=off GOFLAGS= HOME="$work/home" \
  make WHAT="${what# }" > "$work/make.log" 2>&1); then
  tail -30 "$work/make.log" >&2
  exit 1
fi
echo "build.sh: make took $(( $(date +%s) - started )) s"
for binary in "${binaries[@]}"; do cp "$tree/_output/bin/$binary" "$out/bin/"; done
gcc -Os -static -DVERSION=v3.2-clusterplane -o "$work/pause" "$tree/build/pause/linux/pause.c"
strip "$work/pause"
python3 "$kit/mkimage.py" "$out/images/pause.tar" localhost/clusterplane/pause:3.2 \
  --entrypoint '["/pause"]' "$work/pause=/pause"
