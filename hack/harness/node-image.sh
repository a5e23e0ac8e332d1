#!/bin/bash
# Build (or reuse) the kind node image for the kindgpu test harness, offline:
# no container registry is reachable, so every image is built locally.
#
#   1. Kubernetes binaries from the k8s.io/kubernetes Go module (build-k8s.sh)
#   2. containerd 2.x, crictl, CoreDNS, local-path-provisioner and the
#      harness kindnetd from Go modules / local source; pause from pause.c
#   3. two debootstrap rootfs (node base, slim component base), docker import
#   4. node base image (kind's images/base files on the node rootfs)
#   5. component images under the exact names kubeadm and kind expect
#   6. a release-style kubernetes-server tarball carrying binaries + images,
#      fed to `kind build node-image --type file` (no pulls needed)
#
# The tag carries a hash of the recipe (these scripts, the Dockerfiles, the
# kindnetd source and the pinned versions): rebuilt only when that changes.
# Prints ONLY the image tag on stdout (last line); logs go to stderr.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
exec 3>&1 1>&2   # everything to stderr; the tag goes to fd 3

CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.3.7}"
COREDNS_SRC_VERSION="${COREDNS_SRC_VERSION:-v1.11.1}"
LOCAL_PATH_VERSION="${LOCAL_PATH_VERSION:-v0.0.30}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
NODE_PKGS="systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,runc,containernetworking-plugins,e2fsprogs,iputils-ping,socat"
SLIM_PKGS="iptables,nftables,conntrack,iproute2,kmod,ca-certificates,procps"

recipe_hash() {
  (
    cd "$HARNESS_DIR"
    find lib.sh node-image.sh build-k8s.sh images kindnetd -type f ! -name '*~' | LC_ALL=C sort | xargs sha256sum
    echo "$KIND_VERSION $K8S_VERSION $CRI_TOOLS_VERSION $CONTAINERD_VERSION $COREDNS_SRC_VERSION $LOCAL_PATH_VERSION"
    echo "$NODE_PKGS $SLIM_PKGS"
    echo "${KINDGPU_HARNESS_REBUILD_SALT:-}"   # set to force a rebuild under a new tag
  ) | sha256sum | cut -c1-12
}
HASH=$(recipe_hash)
TAG="kindgpu-harness/node:${K8S_VERSION}-${HASH}"

docker info >/dev/null 2>&1 || die "dockerd is not running (run hack/harness/docker-up.sh)"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  log "node image $TAG already built"
  echo "$TAG" >&3
  exit 0
fi
log "building node image $TAG"
T0=$SECONDS
mkdir -p "$CACHE"/{gobin,rootfs,debs,work}
WORK=$(mktemp -d "$CACHE/work/node-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- rootfs ----
# debootstrap <name> <packages>: cached tarball of a bookworm minbase rootfs.
debootstrap_tar() {
  local name=$1 pkgs=$2 key tar dir
  key=$(echo "bookworm $pkgs" | sha256sum | cut -c1-12)
  tar="$CACHE/rootfs/$name-$key.tar"
  if [ -s "$tar" ]; then echo "$tar"; return 0; fi
  dir="$WORK/rootfs-$name"
  mkdir -p "$CACHE/debs/bookworm"
  log "debootstrap $name rootfs"
  debootstrap --variant=minbase --include="$pkgs" --cache-dir="$CACHE/debs/bookworm" \
    bookworm "$dir" "$DEBIAN_MIRROR" >"$WORK/debootstrap-$name.log" 2>&1 || {
      tail -n 30 "$WORK/debootstrap-$name.log"; die "debootstrap $name failed"; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
    "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/*
  : >"$dir/etc/machine-id"
  tar --numeric-owner --xattrs -C "$dir" -cf "$tar.tmp" .
  mv "$tar.tmp" "$tar"
  rm -rf "$dir"
  echo "$tar"
}

# import_rootfs <tar> <image>: docker import once (tag keyed on the tar name).
import_rootfs() {
  local tar=$1 image=$2
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  log "docker import $tar as $image"
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tar" "$image" >/dev/null
}

rootfs_phase() {
  local node_tar slim_tar
  node_tar=$(debootstrap_tar node "$NODE_PKGS")
  slim_tar=$(debootstrap_tar slim "$SLIM_PKGS")
  NODE_ROOTFS_IMAGE="kindgpu-harness/rootfs-node:$(basename "$node_tar" .tar | sed 's/^node-//')"
  SLIM_IMAGE="kindgpu-harness/rootfs-slim:$(basename "$slim_tar" .tar | sed 's/^slim-//')"
  import_rootfs "$node_tar" "$NODE_ROOTFS_IMAGE"
  import_rootfs "$slim_tar" "$SLIM_IMAGE"
}

# ------------------------------------------------------------- Go builds ----
# go_bin <name> <version> <go install args...>: cached `go install`.
go_bin() {
  local name=$1 version=$2; shift 2
  local dir="$CACHE/gobin/$name-$version"
  if [ -d "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then echo "$dir"; return 0; fi
  log "go install $name $version"
  local t=$SECONDS
  rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
  GOBIN="$dir.tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false GONOSUMDB="k8s.io/*,sigs.k8s.io/*" \
    go install -trimpath -ldflags "-s -w" "$@"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  log "built $name $version in $((SECONDS - t))s"
  echo "$dir"
}

go_phase() {
  local t=$SECONDS
  K8S_BIN=$("$HARNESS_DIR/build-k8s.sh")
  log "kubernetes binaries ready in $((SECONDS - t))s"
  CONTAINERD_BIN=$(go_bin containerd "$CONTAINERD_VERSION" -tags "no_btrfs no_devmapper no_zfs no_aufs" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION")
  CRICTL_BIN=$(go_bin crictl "$CRI_TOOLS_VERSION" "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION")
  COREDNS_BIN=$(go_bin coredns "$COREDNS_SRC_VERSION" "github.com/coredns/coredns@$COREDNS_SRC_VERSION")
  LOCAL_PATH_BIN=$(go_bin local-path-provisioner "$LOCAL_PATH_VERSION" \
    "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION")
  # The harness's own kindnetd (stdlib only), keyed on its source.
  local kh; kh=$(cat "$HARNESS_DIR"/kindnetd/* | sha256sum | cut -c1-12)
  KINDNETD_BIN="$CACHE/gobin/kindnetd-$kh"
  if [ ! -x "$KINDNETD_BIN/kindnetd" ]; then
    log "building harness kindnetd"
    mkdir -p "$KINDNETD_BIN"
    (cd "$HARNESS_DIR/kindnetd" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$KINDNETD_BIN/kindnetd" .)
  fi
  # pause: static build of Kubernetes' own pause.c.
  local moddir; moddir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .Dir)
  PAUSE_BIN="$CACHE/gobin/pause-$K8S_VERSION"
  if [ ! -x "$PAUSE_BIN/pause" ]; then
    log "building static pause"
    mkdir -p "$PAUSE_BIN"
    gcc -Os -static -Wall -Werror -DVERSION=harness-"$K8S_VERSION" -o "$PAUSE_BIN/pause" "$moddir/build/pause/linux/pause.c"
    strip "$PAUSE_BIN/pause"
  fi
}

# etcd: built from its Go module at the minor kubeadm asks for (kubeadm 1.37 passes etcd 3.6+ flags
# such as --feature-gates that Debian's 3.5 refuses). etcdmain is etcd's own entry point.
ETCD_PINS="3.6=v3.6.16 3.7=v3.7.3"
etcd_phase() {
  local want minor pin v dir
  want=$("$K8S_BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION" | sed -n 's#.*/etcd:\([0-9]*\.[0-9]*\).*#\1#p')
  for pin in $ETCD_PINS; do [ "${pin%%=*}" = "$want" ] && v=${pin#*=}; done
  [ -n "${v:-}" ] || die "no pinned etcd for the $want line kubeadm $K8S_VERSION asks for (ETCD_PINS)"
  dir="$CACHE/gobin/etcd-$v"
  if [ ! -x "$dir/etcd" ]; then
    log "building etcd $v from go.etcd.io/etcd/server/v3"
    local mod="$CACHE/work/etcd-$v"
    rm -rf "$mod"; mkdir -p "$mod" "$dir"
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$mod/main.go"
    (cd "$mod" && go mod init kindgpu.local/etcd >/dev/null 2>&1 && go get "go.etcd.io/etcd/server/v3@$v" >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1 \
      && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$dir/etcd" .) || die "etcd $v build failed"
    rm -rf "$mod"
  fi
  ETCD_BIN="$dir/etcd"
  "$ETCD_BIN" --version | head -n1
}

# ------------------------------------------------------------- images -------
BASE_IMAGE="kindgpu-harness/base:${KIND_VERSION}-${K8S_VERSION}-${HASH}"
base_image_phase() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  local ctx="$WORK/base-ctx" kmod
  kmod=$(go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir)
  mkdir -p "$ctx/bin"
  cp -r "$kmod/images/base/files" "$ctx/files"
  chmod -R u+w "$ctx/files"
  rm -rf "$ctx/files/LICENSES"
  cp "$CONTAINERD_BIN"/{containerd,ctr,containerd-shim-runc-v2} "$CRICTL_BIN/crictl" "$ctx/bin/"
  cp "$HARNESS_DIR/images/base/Dockerfile" "$ctx/"
  log "docker build $BASE_IMAGE"
  DOCKER_BUILDKIT=0 docker build -q --build-arg ROOTFS="$NODE_ROOTFS_IMAGE" -t "$BASE_IMAGE" "$ctx" >/dev/null
}

# scratch_image <image> <entrypoint json> <file>...: image holding only the files
# (in /usr/local/bin, plus / for pause) and an empty /tmp.
scratch_image() {
  local image=$1 entry=$2; shift 2
  local d
  d="$WORK/img-$(echo "$image" | tr '/:' '__')"
  mkdir -p "$d/usr/local/bin" "$d/tmp" "$d/etc"
  chmod 1777 "$d/tmp"
  echo 'root:x:0:0:root:/root:/sbin/nologin' >"$d/etc/passwd"
  echo 'root:x:0:' >"$d/etc/group"
  echo 'nobody:x:65534:65534:nobody:/:/sbin/nologin' >>"$d/etc/passwd"
  echo 'nogroup:x:65534:' >>"$d/etc/group"
  mkdir -p "$d/etc/ssl/certs"
  cp -L /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/" 2>/dev/null || true
  local f
  for f in "$@"; do cp "$f" "$d/usr/local/bin/"; done
  tar --numeric-owner -C "$d" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change "ENTRYPOINT $entry" - "$image" >/dev/null
}

# slim_image <image> <entrypoint json|""> <file>...
slim_image() {
  local image=$1 entry=$2; shift 2
  local ctx
  ctx="$WORK/ctx-$(echo "$image" | tr '/:' '__')"
  mkdir -p "$ctx/bin"
  cp "$@" "$ctx/bin/"
  cp "$HARNESS_DIR/images/slim.Dockerfile" "$ctx/Dockerfile"
  [ -n "$entry" ] && echo "ENTRYPOINT $entry" >>"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q --build-arg SLIM="$SLIM_IMAGE" -t "$image" "$ctx" >/dev/null
}

component_images_phase() {
  local kmod nodeimage_src kindnetd_img provisioner_img helper_img img
  kmod=$(go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir)
  nodeimage_src="$kmod/pkg/build/nodeimage"
  kindnetd_img=$(sed -n 's/^const kindnetdImage = "\(.*\)"$/\1/p' "$nodeimage_src/const_cni.go")
  provisioner_img=$(sed -n 's/^const storageProvisionerImage = "\(.*\)"$/\1/p' "$nodeimage_src/const_storage.go")
  helper_img=$(sed -n 's/^const storageHelperImage = "\(.*\)"$/\1/p' "$nodeimage_src/const_storage.go")
  [ -n "$kindnetd_img" ] && [ -n "$provisioner_img" ] && [ -n "$helper_img" ] || die "could not read kind's default image names"
  local sandbox_img
  sandbox_img=$(sed -n 's/^\s*sandbox_image = "\(.*\)"$/\1/p' "$kmod/images/base/files/etc/containerd/config.toml")
  [ -n "$sandbox_img" ] || die "could not read kind's sandbox image"

  EXTRA_IMAGES=()
  CORE_TARS=()
  while read -r img; do
    case "$img" in
      */kube-apiserver:*|*/kube-controller-manager:*|*/kube-scheduler:*)
        local b=${img##*/}; b=${b%%:*}
        scratch_image "$img" "[\"/usr/local/bin/$b\"]" "$K8S_BIN/$b" ;;
      */kube-proxy:*)
        slim_image "$img" '["/usr/local/bin/kube-proxy"]' "$K8S_BIN/kube-proxy" ;;
      */etcd:*)
        slim_image "$img" '["/usr/local/bin/etcd"]' "$ETCD_BIN" ;;
      */coredns:*)
        scratch_image "$img" '["/usr/local/bin/coredns"]' "$COREDNS_BIN/coredns"
        # upstream's image has the binary at /coredns
        EXTRA_IMAGES+=("$img") ; continue ;;
      */pause:*) ;;   # handled below with the sandbox image
      *) die "no recipe for image $img" ;;
    esac
    case "$img" in */kube-apiserver:*|*/etcd:*) EXTRA_IMAGES+=("$img") ;; *) CORE_TARS+=("$img") ;; esac
  done < <("$K8S_BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION")

  # pause: the sandbox image kind's containerd config names, plus kubeadm's.
  scratch_image "$sandbox_img" '["/usr/local/bin/pause"]' "$PAUSE_BIN/pause"
  EXTRA_IMAGES+=("$sandbox_img")
  img=$("$K8S_BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION" | grep '/pause:' || true)
  if [ -n "$img" ] && [ "$img" != "$sandbox_img" ]; then
    docker tag "$sandbox_img" "$img"; EXTRA_IMAGES+=("$img")
  fi
  slim_image "$kindnetd_img" '["/usr/local/bin/kindnetd"]' "$KINDNETD_BIN/kindnetd"
  slim_image "$provisioner_img" '["/usr/local/bin/local-path-provisioner"]' "$LOCAL_PATH_BIN/local-path-provisioner"
  slim_image "$helper_img" '' "$PAUSE_BIN/pause"   # needs only sh/mkdir/rm from the rootfs
  EXTRA_IMAGES+=("$kindnetd_img" "$provisioner_img" "$helper_img")
  HARNESS_IMAGES=("${EXTRA_IMAGES[@]}" "${CORE_TARS[@]}")
  log "images: ${HARNESS_IMAGES[*]}"
}

# fq <name>: fully qualified reference (docker shortens docker.io/... on save).
fq() {
  local n=$1 first=${1%%/*}
  if [[ "$n" != */* ]]; then n="docker.io/library/$n"
  elif [[ "$first" != *.* && "$first" != *:* && "$first" != localhost ]]; then n="docker.io/$n"; fi
  echo "$n"
}

# save_archive <out.tar> <image>...: docker-archive whose FIRST metadata entry
# is `repositories` naming every image, so kind counts them all as built.
save_archive() {
  local out=$1; shift
  local d i
  d="$WORK/save-$(basename "$out" .tar)"
  mkdir -p "$d"
  docker save "$@" | tar -C "$d" -xf -
  local mapping='{}'
  for i in "$@"; do
    mapping=$(jq -c --arg short "$(docker image inspect --format '{{.Id}}' "$i")" --arg full "$(fq "$i")" \
      '.[$short] += [$full]' <<<"$mapping")
  done
  # manifest.json: RepoTags fully qualified, per config digest.
  jq -c --argjson m "$mapping" 'map(.RepoTags = ($m["sha256:" + (.Config | sub("\\.json$"; "") | sub("^blobs/sha256/"; ""))] // .RepoTags))' \
    "$d/manifest.json" >"$d/manifest.json.new" && mv "$d/manifest.json.new" "$d/manifest.json"
  jq -c 'reduce .[] as $e ({}; reduce ($e.RepoTags[]) as $t (.;
           ($t | capture("^(?<r>.+):(?<t>[^:/]+)$")) as $p
           | .[$p.r][$p.t] = ($e.Layers[-1] | split("/")[0])))' "$d/manifest.json" >"$d/repositories"
  (cd "$d" && find . -mindepth 1 -maxdepth 1 ! -name repositories ! -name manifest.json -printf '%P\n' \
     | tar --numeric-owner -cf "$out" repositories manifest.json -T -)
  rm -rf "$d"
}

tarball_phase() {
  local root="$WORK/tarball/kubernetes" b img
  mkdir -p "$root/server/bin"
  for b in kubeadm kubelet kubectl; do cp "$K8S_BIN/$b" "$root/server/bin/"; done
  echo "$K8S_VERSION" >"$root/version"
  echo "$K8S_VERSION" >"$root/server/bin/kube-apiserver.docker_tag"
  save_archive "$root/server/bin/kube-apiserver.tar" "${EXTRA_IMAGES[@]}"
  for img in "${CORE_TARS[@]}"; do
    b=${img##*/}; b=${b%%:*}
    save_archive "$root/server/bin/$b.tar" "$img"
  done
  KUBE_TARBALL="$WORK/kubernetes-server-linux-amd64.tar.gz"
  local gz=gzip; command -v pigz >/dev/null && gz=pigz
  tar -C "$WORK/tarball" -cf - kubernetes | $gz -1 >"$KUBE_TARBALL"
  rm -rf "$WORK/tarball"
  ls -la "$KUBE_TARBALL"
}

kind_build_phase() {
  local kind; kind=$("$HARNESS_DIR/build-kind.sh")
  "$kind" build node-image --type file --base-image "$BASE_IMAGE" --image "$TAG" "$KUBE_TARBALL"
}

# Run the network-bound rootfs work alongside the CPU-bound Go builds.
( debootstrap_tar node "$NODE_PKGS" >/dev/null; debootstrap_tar slim "$SLIM_PKGS" >/dev/null ) \
  >"$WORK/rootfs-bg.log" 2>&1 &
ROOTFS_PID=$!
phase go-builds go_phase
phase etcd etcd_phase
log "waiting for debootstrap"
wait "$ROOTFS_PID" || { cat "$WORK/rootfs-bg.log"; die "debootstrap failed"; }
phase rootfs rootfs_phase
phase base-image base_image_phase
phase component-images component_images_phase
phase tarball tarball_phase
phase kind-build-node-image kind_build_phase
log "node image $TAG built in $((SECONDS - T0))s ($(docker image inspect --format '{{.Size}}' "$TAG" | numfmt --to=iec))"

# Drop node/base images of older recipes of this Kubernetes version (1+ GB each); other versions'
# images and ones still used by a container are kept. KINDGPU_HARNESS_KEEP_OLD_IMAGES=1 keeps all.
if [ "${KINDGPU_HARNESS_KEEP_OLD_IMAGES:-0}" != 1 ]; then
  for old in $(docker images --format '{{.Repository}}:{{.Tag}}' kindgpu-harness/node | grep ":$K8S_VERSION-") \
             $(docker images --format '{{.Repository}}:{{.Tag}}' kindgpu-harness/base | grep -- "-$K8S_VERSION-"); do
    [ "$old" = "$TAG" ] || [ "$old" = "$BASE_IMAGE" ] && continue
    docker rmi "$old" >/dev/null 2>&1 && log "removed old image $old" || true
  done
fi
echo "$TAG" >&3
