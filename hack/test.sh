#!/usr/bin/env bash
# The test command (README): installs what the tests need, lints with ruff (pyproject.toml says
# how), starts dockerd with the harness's runtime wrapper, builds kind and the offline node image
# (cached), runs every test including the e2e suite on real kind clusters, and stops dockerd at
# the end.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KINDGPU_HARNESS_CACHE:-/var/cache/kindgpu-harness}"
start=$SECONDS
phase() { local name=$1 t0=$SECONDS; shift; echo "== phase $name" >&2; "$@"; echo "== phase $name: $((SECONDS - t0))s" >&2; }

phase python-deps python3 -m pip install -q --disable-pip-version-check -e '.[test]'
phase lint python3 -m ruff check .
phase harness bash hack/harness/setup.sh
# shellcheck disable=SC1091
source "$CACHE/env"
trap 'bash hack/harness/docker-down.sh; echo "== total: $((SECONDS - start))s" >&2' EXIT
export KINDGPU_ARTIFACTS="${KINDGPU_ARTIFACTS:-$PWD/out/e2e}"
phase tests python3 -m pytest -v -ra -p no:cacheprovider tests "$@"
