#!/bin/bash
# Stop dockerd (and the containerd it started). Images stay on disk.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pidfile=/var/run/docker.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  pid=$(cat "$pidfile")
  log "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { log "dockerd stopped"; exit 0; }
    sleep 1
  done
  log "dockerd still running after 60s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
else
  log "dockerd not running"
fi
