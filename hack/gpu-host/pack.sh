#!/usr/bin/env bash
# kindgpu GPU-host test rig ONLY (never part of the product): packs what a bare GPU machine
# (Ubuntu 24.04, Python 3.12, NVIDIA driver; no Docker, no network) needs to run kindgpu in
# real mode, as numbered parts of at most 60 MiB with a manifest of sha256 sums.
#
#   bash hack/gpu-host/pack.sh DEVICE_PLUGIN_SRC DRA_DRIVER_SRC [COMPONENT...]
#
# DEVICE_PLUGIN_SRC: NVIDIA/k8s-device-plugin's source at $DEVICE_PLUGIN_VERSION (with vendor/).
# DRA_DRIVER_SRC: kubernetes-sigs/dra-driver-nvidia-gpu's source at $DRA_DRIVER_VERSION (with vendor/).
# COMPONENTs (default all, then the parts are made): zstd_binary debs tools device_plugin
# dra_driver cuda_base wheels node_image.
#
# Needs the harness (hack/harness/setup.sh: dockerd, kind, kubectl, the node image), Go, and
# Debian's package mirror. Output: $RIG_OUT/parts/part-NN, $RIG_OUT/parts/MANIFEST
# (default out/gpu-host, ignored by git). Each artifact is cached in $RIG_OUT/work and rebuilt
# only when missing. stage.sh unpacks the parts on the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: pack.sh DEVICE_PLUGIN_SRC DRA_DRIVER_SRC [COMPONENT...] (both sources with vendor/)"
SRC=$(cd "${1:?$usage}" && pwd)
DRA_SRC=$(cd "${2:?$usage}" && pwd)
shift 2
. hack/gpu-host/versions.sh
CACHE="${KINDGPU_HARNESS_CACHE:-/var/cache/kindgpu-harness}"
RIG_OUT=$(mkdir -p "${RIG_OUT:-out/gpu-host}" && cd "${RIG_OUT:-out/gpu-host}" && pwd)
WORK=$RIG_OUT/work
ART=$WORK/artifacts  # what goes into the parts, one file per component
mkdir -p "$WORK" "$ART"
export PATH="/usr/local/go/bin:$PATH" CGO_ENABLED=1
log() { printf '[pack %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
built() { [ -s "$ART/$1" ] && log "$1: cached" && return 0; return 1; }
zst() { zstd -q -T0 "${@}"; }

# Debian packages, unpacked into one prefix (dpkg -x: no maintainer scripts run).
debs() {
  built userland.tar.zst && return
  local dir=$WORK/debs root=$WORK/userland
  rm -rf "$dir" "$root" && mkdir -p "$dir" "$root"
  (cd "$dir" && apt-get download -q $USERLAND_DEBS >&2)
  for deb in "$dir"/*.deb; do dpkg -x "$deb" "$root"; done
  # What dpkg's alternatives would have linked; and what kind never uses.
  for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf xtables-nft-multi "$root/usr/sbin/$t"
  done
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/bash-completion" "$root/usr/share/zsh" \
    "$root/usr/bin/ctr" "$root/usr/bin/containerd-stress" "$root/usr/bin/containerd-shim" \
    "$root/usr/bin/containerd-shim-runc-v1" "$root/usr/sbin/dockerd-rootless-setuptool.sh"
  install -D -m 0755 hack/harness/runc-wrapper "$root/usr/libexec/kindgpu-runc-wrapper"
  tar -C "$root" -c . | zst -19 -o "$ART/userland.tar.zst"
}

tools() {
  built tools.tar.zst && return
  local dir=$WORK/tools && rm -rf "$dir" && mkdir -p "$dir/bin"
  cp "$CACHE/bin/kind" "$CACHE/bin/kubectl" "$dir/bin/"
  local pkg=github.com/NVIDIA/nvidia-container-toolkit
  (cd "$WORK" && GOBIN="$dir/bin" go install -trimpath \
    -ldflags "-s -w -X $pkg/internal/info.version=${TOOLKIT_VERSION#v}" \
    "$pkg/cmd/nvidia-ctk@$TOOLKIT_VERSION" "$pkg/cmd/nvidia-container-runtime@$TOOLKIT_VERSION" \
    "$pkg/cmd/nvidia-cdi-hook@$TOOLKIT_VERSION" 2> >(grep -v 'warning:\|note:\|DEPRECATED\|^ *|\|^In file\|^ *[0-9]* |' >&2))
  strip "$dir/bin/kind" "$dir/bin/kubectl" 2>/dev/null || true
  tar -C "$dir" -c bin | zst -19 -o "$ART/tools.tar.zst"
}

# A rootfs with glibc and busybox (a shell, sed, mount, ...): the base of the rig's images.
small_rootfs() { # small_rootfs DIR
  local root=$1 dir=$WORK/debs-rootfs
  rm -rf "$root" "$dir" && mkdir -p "$root" "$dir"
  (cd "$dir" && apt-get download -q libc6 libc-bin busybox-static >&2)
  for deb in "$dir"/*.deb; do dpkg -x "$deb" "$dir/x"; done
  mkdir -p "$root/lib/x86_64-linux-gnu" "$root/lib64" "$root/busybox" "$root/bin" "$root/tmp" "$root/etc" \
    "$root/usr/bin" "$root/licenses"
  cp -a "$dir"/x/lib/x86_64-linux-gnu/*.so* "$root/lib/x86_64-linux-gnu/"
  ln -sf /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/lib64/ld-linux-x86-64.so.2"
  cp "$dir/x/bin/busybox" "$root/busybox/busybox"
  mkdir -p "$root/sbin" && cp "$dir/x/sbin/ldconfig" "$root/sbin/ldconfig"  # NVIDIA's CDI hooks may run it
  # As Debian's and NVIDIA's CUDA images have it: the CDI ldcache hook adds its folders in ld.so.conf.d.
  mkdir -p "$root/etc/ld.so.conf.d"
  echo 'include /etc/ld.so.conf.d/*.conf' >"$root/etc/ld.so.conf"
  printf '/usr/local/nvidia/lib\n/usr/local/nvidia/lib64\n' >"$root/etc/ld.so.conf.d/nvidia.conf"
  for applet in $("$root/busybox/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/busybox/$applet"
  done
  ln -sf /busybox/sh "$root/bin/sh"
  cp "$dir/x/usr/share/doc/libc6/copyright" "$root/licenses/glibc"
  cp "$dir/x/usr/share/doc/busybox-static/copyright" "$root/licenses/busybox"
  chmod 1777 "$root/tmp"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
}

# NVIDIA's device plugin from its own source (the Go proxy refuses the module; vendor/ has every
# dependency), under the exact name kindgpu deploys.
device_plugin() {
  built device-plugin.tar.zst && return
  local root=$WORK/plugin-rootfs
  [ -x "$WORK/nvidia-device-plugin" ] || (cd "$SRC" && go build -mod=vendor -trimpath -ldflags '-s -w' \
    -o "$WORK/nvidia-device-plugin" ./cmd/nvidia-device-plugin 2> >(grep -v 'warning:\|note:\|DEPRECATED\|^ *|\|^In file\|^ *[0-9]* |' >&2))
  small_rootfs "$root"
  install -m 0755 "$WORK/nvidia-device-plugin" "$root/usr/bin/nvidia-device-plugin"
  [ -f "$SRC/LICENSE" ] && cp "$SRC/LICENSE" "$root/licenses/k8s-device-plugin"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox' \
    --change 'ENV NVIDIA_VISIBLE_DEVICES=all' --change 'ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility' \
    --change 'ENTRYPOINT ["nvidia-device-plugin"]' - "$DEVICE_PLUGIN_IMAGE" >/dev/null
  docker save "$DEVICE_PLUGIN_IMAGE" | zst -19 -o "$ART/device-plugin.tar.zst"
}

# NVIDIA's DRA driver's GPU kubelet plugin from its own source's vendor/, with the nvidia-cdi-hook it
# copies into the node for its CDI specs (NVIDIA's image carries the toolkit's), under the exact name
# kindgpu deploys. Its entry is kindgpu's (a shell script), so busybox's sh serves for NVIDIA's bash.
dra_driver() {
  built dra-driver.tar.zst && return
  local root=$WORK/dra-rootfs
  local info=github.com/NVIDIA/k8s-dra-driver-gpu/internal/info  # its version gates its features: set as its Makefile does
  [ -x "$WORK/gpu-kubelet-plugin" ] || (cd "$DRA_SRC" && go build -mod=vendor -trimpath \
    -ldflags "-s -w -X $info.version=$DRA_DRIVER_VERSION -X $info.gitCommit=$DRA_DRIVER_COMMIT" \
    -o "$WORK/gpu-kubelet-plugin" ./cmd/gpu-kubelet-plugin 2> >(grep -v 'warning:\|note:\|DEPRECATED\|^ *|\|^In file\|^ *[0-9]* |' >&2))
  [ -x "$WORK/tools/bin/nvidia-cdi-hook" ] || { rm -f "$ART/tools.tar.zst"; tools; }
  small_rootfs "$root"
  install -m 0755 "$WORK/gpu-kubelet-plugin" "$root/usr/bin/gpu-kubelet-plugin"
  install -m 0755 "$WORK/tools/bin/nvidia-cdi-hook" "$root/usr/bin/nvidia-cdi-hook"
  cp "$DRA_SRC/LICENSE" "$root/licenses/dra-driver-nvidia-gpu"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox' \
    --change 'ENV NVIDIA_DISABLE_REQUIRE=true' --change 'ENV NVIDIA_VISIBLE_DEVICES=all' \
    --change 'ENV NVIDIA_DRIVER_CAPABILITIES=utility' - "$DRA_DRIVER_IMAGE" >/dev/null
  docker save "$DRA_DRIVER_IMAGE" | zst -19 -o "$ART/dra-driver.tar.zst"
}

# The visibility level's image: a shell and glibc, with PATH and LD_LIBRARY_PATH as NVIDIA's CUDA
# images set them (CDI puts nvidia-smi and the driver's libraries at the host's paths).
cuda_base() {
  built cuda-base.tar.zst && return
  local root=$WORK/cuda-rootfs
  small_rootfs "$root"
  tar -C "$root" -c . | docker import \
    --change "ENV PATH=$CUDA_PATH" --change "ENV LD_LIBRARY_PATH=$CUDA_LD_LIBRARY_PATH" \
    --change 'ENV NVIDIA_VISIBLE_DEVICES=all' --change 'ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility' \
    --change 'CMD ["sh"]' - "$SMOKE_CUDA_IMAGE" >/dev/null
  docker save "$SMOKE_CUDA_IMAGE" | zst -19 -o "$ART/cuda-base.tar.zst"
}

node_image() {
  built node-image.tar.zst && return
  # shellcheck disable=SC1091
  . "$CACHE/env"
  log "saving $KINDGPU_NODE_IMAGE (a few minutes)"
  echo "$KINDGPU_NODE_IMAGE" >"$ART/node-image.name"
  docker save "$KINDGPU_NODE_IMAGE" | zst -12 --long=27 -o "$ART/node-image.tar.zst"
}

# kindgpu's dependencies as wheels for the GPU machine's Python.
wheels() {
  built wheels.tar && return
  local dir=$WORK/wheels && rm -rf "$dir" && mkdir -p "$dir"
  python3 - >"$WORK/requirements.txt" <<'PY'
import tomllib
for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    if "python_version" not in dep:
        print(dep)
PY
  python3 -m pip download -q --dest "$dir" --only-binary=:all: --python-version "$GPU_PYTHON" \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any -r "$WORK/requirements.txt"
  tar -C "$dir" -cf "$ART/wheels.tar" .
}

# The GPU machine has no zstd: its binary and library travel uncompressed.
zstd_binary() {
  built zstd && return
  cp "$(command -v zstd)" "$ART/zstd"
  cp "$(readlink -f /usr/lib/x86_64-linux-gnu/libzstd.so.1)" "$ART/libzstd.so.1"
}

split_parts() {
  local parts=$RIG_OUT/parts && rm -rf "$parts" && mkdir -p "$parts"
  (cd "$ART" && sha256sum -- $(ls | grep -vx ARTIFACTS.sha256)) >"$WORK/artifacts.sha256"
  cp "$WORK/artifacts.sha256" "$ART/ARTIFACTS.sha256"
  tar -C "$ART" -c . | split -b "$PART_BYTES" -d -a 2 - "$parts/part-"
  (cd "$parts" && sha256sum part-* >MANIFEST)
  log "$(ls "$parts" | grep -c part-) parts, $(du -sh "$parts" | cut -f1): $parts"
  cat "$parts/MANIFEST" >&2
}

t0=$SECONDS
if [ $# -gt 0 ]; then
  for component in "$@"; do "$component"; done
  exit 0
fi
zstd_binary; debs; tools; device_plugin; dra_driver; cuda_base; wheels; node_image
ls -l "$ART" >&2
split_parts
log "done in $((SECONDS - t0))s"
