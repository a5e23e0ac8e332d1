#!/bin/bash
# Install (if needed) and start dockerd for the real-cluster test harness.
# Idempotent: safe to rerun; does nothing if dockerd already answers.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
mkdir -p "$CACHE"

# docker.io plus everything the harness's node-image build needs.
apt_install docker.io containerd runc jq iptables debootstrap ca-certificates gcc libc6-dev \
  xz-utils zstd rsync pigz binutils

# Runtime wrapper (see runc-wrapper for why) as dockerd's DEFAULT runtime.
install -D -m 0755 "$HARNESS_DIR/runc-wrapper" /usr/local/libexec/kindgpu-harness/runc-wrapper
mkdir -p /etc/docker
want='{
  "runtimes": {"kindgpu-runc": {"path": "/usr/local/libexec/kindgpu-harness/runc-wrapper"}},
  "default-runtime": "kindgpu-runc",
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "2"}
}'
changed=0
if [ ! -f /etc/docker/daemon.json ] || [ "$(jq -S . /etc/docker/daemon.json 2>/dev/null)" != "$(jq -S . <<<"$want")" ]; then
  printf '%s\n' "$want" >/etc/docker/daemon.json
  changed=1
fi

# kind nodes run many inotify users (kubelet, systemd, ...).
sysctl -q -w fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512 >&2 || \
  log "warning: could not raise inotify limits"

if docker info >/dev/null 2>&1; then
  if [ "$changed" = 1 ]; then
    log "daemon.json changed; restarting dockerd"
    "$HARNESS_DIR/docker-down.sh"
  else
    log "dockerd already running"
    exit 0
  fi
fi

log "starting dockerd (log: $CACHE/dockerd.log)"
# Use the apt-installed docker CLI/daemon; /usr/local/bin/docker is an
# independent client and talks to the same socket.
setsid nohup /usr/sbin/dockerd --pidfile /var/run/docker.pid >>"$CACHE/dockerd.log" 2>&1 </dev/null &
for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    log "dockerd is up: $(docker version --format '{{.Server.Version}}' 2>/dev/null), default runtime $(docker info --format '{{.DefaultRuntime}}')"
    # kind nodes do not survive a dockerd restart (e.g. a killed session):
    # drop their leftovers so `kind create cluster` can reuse the names.
    if [ "${KINDGPU_HARNESS_KEEP_STALE_NODES:-0}" != 1 ]; then
      stale=$(docker ps -aq --filter label=io.x-k8s.kind.cluster)
      if [ -n "$stale" ]; then
        log "removing $(wc -w <<<"$stale") stale kind node container(s) from before this dockerd start"
        # shellcheck disable=SC2086
        docker rm -f -v $stale >/dev/null || true
      fi
    fi
    exit 0
  fi
  sleep 1
done
tail -n 50 "$CACHE/dockerd.log" >&2 || true
die "dockerd did not come up within 120s"
