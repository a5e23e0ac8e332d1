#!/usr/bin/env bash
# kindgpu GPU-host test rig ONLY (never part of the product): on the bare GPU machine, turns the
# parts pack.sh made into a kindgpu host: Docker (the NVIDIA runtime as its default runtime, the
# harness's cap-stripping runc wrapper below it), iptables, the NVIDIA Container Toolkit, kind,
# kubectl, the images, kindgpu's Python dependencies. Idempotent: every part's sha256 is checked,
# and what is done already is skipped.
#
#   bash hack/gpu-host/stage.sh PARTS_DIR     # then: . $RIG_ROOT/env
#
# Rehearsal on a machine that has a dockerd of its own: RIG_SYSROOT=/tmp/sys RIG_ROOT=/tmp/rig
# puts the system files under RIG_SYSROOT and starts a second dockerd on its own socket and data
# root, in a network namespace of its own (a second dockerd in the host's removes docker0), so
# the host's Docker is left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
. hack/gpu-host/versions.sh
PARTS=${1:?usage: stage.sh PARTS_DIR}
ART=$RIG_ROOT/artifacts
U=$RIG_ROOT/userland
SYS=${RIG_SYSROOT:-}
DOCKERD_ARGS=(--pidfile "$SYS/var/run/docker.pid")
IN_NETNS=()
if [ -n "$SYS" ]; then
  IN_NETNS=(unshare --net)
  mkdir -p "$SYS/usr/bin" "$SYS/usr/local/bin" "$SYS/etc" "$SYS/var/run"
  DOCKERD_ARGS=(--pidfile "$SYS/var/run/docker.pid" -H "unix://$SYS/var/run/docker.sock" --data-root "$SYS/var/lib/docker"
    --exec-root "$SYS/var/run/docker" --config-file "$SYS/etc/docker/daemon.json" --bridge none --iptables=false --ip6tables=false)
  export DOCKER_HOST=unix://$SYS/var/run/docker.sock
fi
log() { printf '[stage %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
mkdir -p "$RIG_ROOT"
t0=$SECONDS

# 1. Every part, whole.
(cd "$PARTS" && sha256sum --quiet -c MANIFEST) || { log "parts missing or damaged in $PARTS (see above)"; exit 1; }
if ! cmp -s "$PARTS/MANIFEST" "$RIG_ROOT/MANIFEST.unpacked"; then
  rm -rf "$ART" && mkdir -p "$ART"
  cat "$PARTS"/part-* | tar -C "$ART" -x
  (cd "$ART" && grep -v " ARTIFACTS.sha256$" ARTIFACTS.sha256 | sha256sum --quiet -c -)  # a list cannot hold its own sum
  rm -f "$RIG_ROOT"/*.done
  cp "$PARTS/MANIFEST" "$RIG_ROOT/MANIFEST.unpacked"
  log "unpacked $(du -sh "$ART" | cut -f1)"
fi
unzstd() { LD_LIBRARY_PATH=$ART "$ART/zstd" -q -d -c "$@"; }
once() { # once NAME CMD...: run CMD unless NAME was done since the last unpack
  [ -f "$RIG_ROOT/$1.done" ] && return 0
  "${@:2}"
  touch "$RIG_ROOT/$1.done"
  log "$1 done"
}

# 2. Files.
userland() { rm -rf "$U" && mkdir -p "$U" && unzstd "$ART/userland.tar.zst" | tar -C "$U" -x; }
tools() {
  local dir=$RIG_ROOT/tools && rm -rf "$dir" && mkdir -p "$dir"
  unzstd "$ART/tools.tar.zst" | tar -C "$dir" -x
  # The toolkit where NVIDIA's packages put it: kindgpu mounts the host's /usr/bin/nvidia-ctk into
  # the nodes, and the runtime's CDI hooks default to /usr/bin/nvidia-cdi-hook.
  install -m 0755 "$dir/bin/nvidia-ctk" "$dir/bin/nvidia-container-runtime" "$dir/bin/nvidia-cdi-hook" "$SYS/usr/bin/"
  install -m 0755 "$dir/bin/kind" "$dir/bin/kubectl" "$U/usr/bin/docker" "$SYS/usr/local/bin/"
}
python_deps() {
  local site=$RIG_ROOT/site && rm -rf "$site" && mkdir -p "$site" "$RIG_ROOT/wheels"
  tar -C "$RIG_ROOT/wheels" -xf "$ART/wheels.tar"
  for whl in "$RIG_ROOT"/wheels/*.whl; do python3 -m zipfile -e "$whl" "$site"; done
}
once userland userland
once tools tools
once python python_deps

# 3. Environment: dockerd and its children find the userland through it; everything else keeps
# the machine's own libraries.
cat >"$RIG_ROOT/env" <<EOF
export PATH=\$PATH${SYS:+:$SYS/usr/bin}:$SYS/usr/local/bin:$U/usr/sbin:$U/usr/bin
export PYTHONPATH=$RIG_ROOT/site\${PYTHONPATH:+:\$PYTHONPATH}
export KINDGPU_NODE_IMAGE=$(cat "$ART/node-image.name")
${DOCKER_HOST:+export DOCKER_HOST=$DOCKER_HOST}
EOF
# The NVIDIA runtime looks for the driver's programs (nvidia-smi) on dockerd's PATH: on the GPU
# machine they are in /usr/local/nvidia/bin (/usr/bin/nvidia-smi is a wrapper script there).
cat >"$RIG_ROOT/dockerd-env" <<EOF
PATH=/usr/local/nvidia/bin:$U/usr/sbin:$U/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LD_LIBRARY_PATH=$U/lib/x86_64-linux-gnu:$U/usr/lib/x86_64-linux-gnu
XTABLES_LIBDIR=$U/usr/lib/x86_64-linux-gnu/xtables
KINDGPU_REAL_RUNC=$U/usr/sbin/runc
XDG_CONFIG_HOME=$SYS/etc
EOF
# shellcheck disable=SC1091
. "$RIG_ROOT/env"

# The runc the NVIDIA runtime calls: the harness's wrapper, with what it needs whoever calls it.
cat >"$RIG_ROOT/runc" <<EOF
#!/bin/sh
export KINDGPU_REAL_RUNC=$U/usr/sbin/runc PATH=$U/usr/sbin:$U/usr/bin:\$PATH
export LD_LIBRARY_PATH=$U/lib/x86_64-linux-gnu:$U/usr/lib/x86_64-linux-gnu
exec $U/usr/libexec/kindgpu-runc-wrapper "\$@"
EOF
chmod 0755 "$RIG_ROOT/runc"

# 4. The toolkit's config, as NVIDIA's docs set it up for kind (volume mounts only, no envvar),
# with the runc wrapper (the machine's bounding set lacks CAP_SYS_RESOURCE) as its low-level runtime.
toolkit_config() {
  local config=$SYS/etc/nvidia-container-runtime/config.toml
  mkdir -p "$(dirname "$config")"
  nvidia-ctk config default --output "$config"
  nvidia-ctk config --in-place --config-file "$config" \
    --set accept-nvidia-visible-devices-as-volume-mounts=true \
    --set accept-nvidia-visible-devices-envvar-when-unprivileged=false \
    --set "nvidia-container-runtime.runtimes=$RIG_ROOT/runc"
}
once toolkit-config toolkit_config

mkdir -p "$SYS/etc/docker"
cat >"$SYS/etc/docker/daemon.json" <<EOF
{
  "runtimes": {"nvidia": {"path": "$SYS/usr/bin/nvidia-container-runtime"}},
  "default-runtime": "nvidia",
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "2"}
}
EOF
[ -n "$SYS" ] || sysctl -q -w fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512

# 5. dockerd.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: $RIG_ROOT/dockerd.log)"
  pidfile=$SYS/var/run/docker.pid
  if [ -f "$pidfile" ]; then  # a dockerd still shutting down, or one that died
    while kill -0 "$(cat "$pidfile")" 2>/dev/null; do sleep 0.2; done
    rm -f "$pidfile"
  fi
  # shellcheck disable=SC2046
  env -i $(cat "$RIG_ROOT/dockerd-env") setsid nohup "${IN_NETNS[@]}" "$U/usr/sbin/dockerd" "${DOCKERD_ARGS[@]}" \
    >>"$RIG_ROOT/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -n 40 "$RIG_ROOT/dockerd.log" >&2; exit 1; }
fi
log "dockerd $(docker version --format '{{.Server.Version}}'), default runtime $(docker info --format '{{.DefaultRuntime}}')"

# 6. Images.
load() { # load ARTIFACT IMAGE
  docker image inspect "$2" >/dev/null 2>&1 && return 0
  unzstd "$ART/$1" | docker load -q >&2
}
load node-image.tar.zst "$KINDGPU_NODE_IMAGE"
load device-plugin.tar.zst "$DEVICE_PLUGIN_IMAGE"
load dra-driver.tar.zst "$DRA_DRIVER_IMAGE"
load cuda-base.tar.zst "$SMOKE_CUDA_IMAGE"
log "staged in $((SECONDS - t0))s; images: $(docker images --format '{{.Repository}}:{{.Tag}}' | tr '\n' ' ')"
