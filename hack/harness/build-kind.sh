#!/bin/bash
# Build the pinned kind release into $CACHE/bin/kind (skipped if already there
# at the right version). Prints the binary's path on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
mkdir -p "$CACHE/bin"
kind="$CACHE/bin/kind"
if [ -x "$kind" ] && [[ "$("$kind" version 2>/dev/null)" == "kind ${KIND_VERSION} "* ]]; then
  log "kind $KIND_VERSION already built: $kind"
else
  log "building sigs.k8s.io/kind@$KIND_VERSION"
  GOBIN="$CACHE/bin.tmp.$$" CGO_ENABLED=0 go install "sigs.k8s.io/kind@$KIND_VERSION" >&2
  mv -f "$CACHE/bin.tmp.$$/kind" "$kind"
  rmdir "$CACHE/bin.tmp.$$"
  "$kind" version >&2
fi
echo "$kind"
