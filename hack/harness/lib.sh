# Shared helpers for the kindgpu real-cluster test harness (sourced, not run).
# shellcheck shell=bash disable=SC2034

HARNESS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${KINDGPU_HARNESS_CACHE:-/var/cache/kindgpu-harness}"
export PATH="/usr/local/go/bin:${HOME:-/root}/go/bin:$PATH"

# Pinned versions (part of the node-image recipe: changing them changes the tag).
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
# The default line is kind v0.33's own (kindest/node:v1.37.x); setup.sh also builds K8S_EXTRA_VERSIONS.
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
K8S_EXTRA_VERSIONS="${K8S_EXTRA_VERSIONS-v1.34.4}"
CRI_TOOLS_VERSION="${CRI_TOOLS_VERSION:-v1.34.0}"

log() { printf '[harness %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# phase NAME CMD...: run CMD, print how long it took (stderr).
phase() {
  local name=$1; shift
  local t0=$SECONDS
  log "phase '$name' start"
  "$@"
  log "phase '$name' done in $((SECONDS - t0))s"
}

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

apt_updated=0
apt_install() {
  # apt_install PKG...: install the given Debian packages if any is missing.
  local missing=() p
  for p in "$@"; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == *"install ok installed"* ]] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get update -qq >&2
    apt_updated=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
