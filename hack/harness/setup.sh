#!/bin/bash
# One-stop harness setup for CI: start dockerd, build kind, build (or reuse)
# the node image, and write $CACHE/env for `source`:
#   export PATH=$CACHE/bin:$PATH
#   export KINDGPU_NODE_IMAGE=<tag>
# Phase timings go to stderr. Safe to rerun (everything is cached).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
T0=$SECONDS
mkdir -p "$CACHE/bin"

phase docker-up "$HARNESS_DIR/docker-up.sh"
phase build-kind "$HARNESS_DIR/build-kind.sh" >/dev/null
tag=$(phase node-image "$HARNESS_DIR/node-image.sh" | tail -n1)
[ -n "$tag" ] || die "node-image.sh printed no tag"
# The other supported Kubernetes lines: a smaller e2e set runs on each (KINDGPU_NODE_IMAGES_EXTRA).
extra=()
for v in $K8S_EXTRA_VERSIONS; do
  t=$(K8S_VERSION=$v phase "node-image-$v" "$HARNESS_DIR/node-image.sh" | tail -n1)
  [ -n "$t" ] || die "node-image.sh printed no tag for $v"
  extra+=("$t")
done

# kubectl: the one inside the node image (same version as the cluster).
install_kubectl() {
  if [ -x "$CACHE/bin/kubectl" ] && [[ "$("$CACHE/bin/kubectl" version --client 2>/dev/null)" == *"$K8S_VERSION"* ]]; then
    return 0
  fi
  local k8s_bin="$CACHE/k8s/$K8S_VERSION/bin/kubectl"
  if [ -x "$k8s_bin" ]; then
    cp "$k8s_bin" "$CACHE/bin/kubectl.tmp"
  else
    local cid; cid=$(docker create "$tag")
    docker cp "$cid:/usr/bin/kubectl" "$CACHE/bin/kubectl.tmp"
    docker rm -f "$cid" >/dev/null
  fi
  chmod 0755 "$CACHE/bin/kubectl.tmp"
  mv -f "$CACHE/bin/kubectl.tmp" "$CACHE/bin/kubectl"
}
phase kubectl install_kubectl

cat >"$CACHE/env.tmp" <<ENV
export PATH=$CACHE/bin:\$PATH
export KINDGPU_NODE_IMAGE=$tag
export KINDGPU_NODE_IMAGES_EXTRA="${extra[*]}"
ENV
mv -f "$CACHE/env.tmp" "$CACHE/env"
log "setup done in $((SECONDS - T0))s; source $CACHE/env"
cat "$CACHE/env" >&2
