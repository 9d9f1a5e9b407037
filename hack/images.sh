#!/usr/bin/env bash
# Container images for the real node, built on this machine with no registry and no Docker engine,
# and cached by content in ${SLIPWAY_CACHE:-~/.cache/slipway}/images/<name>-<key>.tar (docker-archive
# tarballs that `ctr images import` loads). Only an image whose inputs changed is built again.
#
#   pause     registry.k8s.io/pause:3.10   upstream build/pause/linux/pause.c from the pinned
#                                          Kubernetes module, gcc -static
#   python    docker.io/library/python:3.11-slim-bookworm
#                                          synthesized: Debian bookworm (debootstrap --variant=minbase)
#                                          with Debian's python3 3.11, python3-venv, python-is-python3
#   operator  $SLIPWAY_OPERATOR_IMAGE (default ghcr.io/slipway-dev/slipway:<version>)
#                                          the repository's own Dockerfile, built by buildah
#   mlserver  docker.io/seldonio/mlserver:1.7.1
#                                          hack/images/mlserver/Dockerfile (the sklearn preset's server)
#
#   hack/images.sh build [NAME...]   build what is missing; print "NAME REFERENCE TARBALL" per image
#   hack/images.sh keys              print each image's content key
#
# buildah keeps its own storage under the cache (--root), runs RUN steps with chroot isolation on
# the host's network (the package registries), and sees the host's CA bundle and pip.conf so that
# pip inside a build trusts what pip on the host trusts. Needs root (debootstrap, buildah).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/hack/versions.env"
cache=${SLIPWAY_CACHE:-$HOME/.cache/slipway}
out="$cache/images"
store="$cache/buildah"
mkdir -p "$out" "$store"
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/operator/slipway/__init__.py")
operator_ref=${SLIPWAY_OPERATOR_IMAGE:-ghcr.io/slipway-dev/slipway:$version}

log() { echo "[images] $*" >&2; }
bh() { buildah --root "$store/root" --runroot "$store/run" --storage-driver overlay "$@"; }

sha() { sha256sum | cut -c1-16; }

# The content key of each image: a hash of everything that decides what is in it.
key_pause() { printf 'pause %s %s\n' "$KUBERNETES_VERSION" "$(declare -f build_pause)" | sha; }
key_python() { printf 'python %s %s\n' "$BASE_IMAGE_SUITE" "$(declare -f build_python)" | sha; }
key_operator() {
  # what the Dockerfile's build context holds (.dockerignore lets in only these)
  {
    echo "operator $(key_python) $operator_ref"
    declare -f build_dockerfile
    cat "$root/Dockerfile" "$root/.dockerignore"
    (cd "$root" && git ls-files -co --exclude-standard -- pyproject.toml constraints.txt README.md operator \
      | grep -v -e '__pycache__' -e '\.pyc$' -e '\.egg-info' | sort | xargs sha256sum)
  } | sha
}
key_mlserver() {
  { echo "mlserver $(key_python)"; declare -f build_dockerfile; cat "$root/hack/images/mlserver/"*; } | sha
}

ref_of() {
  case $1 in
    pause) echo "registry.k8s.io/pause:3.10" ;;
    python) echo "docker.io/library/python:3.11-slim-bookworm" ;;
    operator) echo "$operator_ref" ;;
    mlserver) echo "docker.io/seldonio/mlserver:1.7.1" ;;
  esac
}

tarball_of() { echo "$out/$1-$("key_$1").tar"; }

# Save an image from buildah's storage as a docker-archive tarball, atomically.
save() { # name tarball (its content key was taken before the build: sources may change meanwhile)
  local ref tar=$2
  ref=$(ref_of "$1")
  rm -f "$tar.tmp"
  bh push --quiet "$ref" "docker-archive:$tar.tmp:$ref" >/dev/null
  mv "$tar.tmp" "$tar"
  # older builds of the same image are of no further use
  find "$out" -maxdepth 1 -name "$1-*.tar" ! -path "$tar" -delete
}

# An image from a root directory: one layer, the directory's contents as they are.
commit_rootfs() { # rootfs ref config-args...
  local rootfs=$1 ref=$2 ctr mnt
  shift 2
  ctr=$(bh from scratch)
  mnt=$(bh mount "$ctr")
  cp -a "$rootfs/." "$mnt/"
  bh umount "$ctr" >/dev/null
  bh config "$@" "$ctr"
  bh commit --quiet --rm "$ctr" "$ref" >/dev/null
}

build_pause() {
  local work src
  work=$(mktemp -d)
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@${KUBERNETES_VERSION}/build/pause/linux/pause.c"
  [ -f "$src" ] || (cd "$work" && go mod download "k8s.io/kubernetes@${KUBERNETES_VERSION}")
  mkdir -p "$work/rootfs"
  gcc -Os -static -DVERSION="3.10-slipway" -o "$work/rootfs/pause" "$src"
  commit_rootfs "$work/rootfs" "$(ref_of pause)" --entrypoint '["/pause"]' --user 65535:65535
  rm -rf "$work"
}

# What the published python:3.11-slim-bookworm is, as near as Debian's own packages make it:
# Debian 12 with python3 (3.11), venv and pip wheels, `python` on the PATH, CA certificates.
build_python() {
  local work mirror
  work=$(mktemp -d "$cache/debootstrap.XXXXXX")
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    "$BASE_IMAGE_SUITE" "$work/rootfs" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; rm -rf "$work"; return 1; }
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/log/"*
  commit_rootfs "$work/rootfs" "$(ref_of python)" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd '["python3"]' --label org.opencontainers.image.description="Debian bookworm python3, synthesized by slipway hack/images.sh"
  rm -rf "$work"
}

build_dockerfile() { # name context dockerfile
  local ref ca=/etc/ssl/certs/ca-certificates.crt
  ref=$(ref_of "$1")
  local mounts=()
  [ -f "$ca" ] && mounts+=(--volume "$ca:$ca:ro")
  [ -f /etc/pip.conf ] && mounts+=(--volume /etc/pip.conf:/etc/pip.conf:ro)
  bh build --quiet --isolation chroot --pull=never --network host --layers=false \
    "${mounts[@]}" --build-arg "PYTHON_IMAGE=$(ref_of python)" \
    -f "$3" -t "$ref" "$2" >/dev/null
}

build_operator() { build_dockerfile operator "$root" "$root/Dockerfile"; }
build_mlserver() { build_dockerfile mlserver "$root/hack/images/mlserver" "$root/hack/images/mlserver/Dockerfile"; }

ensure() { # name
  local name=$1 tar t0=$SECONDS
  tar=$(tarball_of "$name")
  if [ ! -f "$tar" ]; then
    # a Dockerfile build needs its base in buildah's storage, not only as a tarball
    if [ "$name" = operator ] || [ "$name" = mlserver ]; then ensure_in_store python; fi
    log "building $name ($(ref_of "$name"))"
    "build_$name"
    save "$name" "$tar"
    log "built $name in $((SECONDS - t0))s: $(du -h "$tar" | cut -f1)"
  fi
  echo "$name $(ref_of "$name") $tar"
}

ensure_in_store() { # name: the image present in buildah's storage, as its tarball has it
  local name=$1 tar
  tar=$(tarball_of "$name")
  if [ -f "$tar" ]; then
    bh inspect --type image "$(ref_of "$name")" >/dev/null 2>&1 || bh pull --quiet "docker-archive:$tar" >/dev/null
    return 0
  fi
  ensure "$name" >/dev/null
}

ALL=(pause python operator mlserver)
case "${1:-}" in
  build)
    shift
    [ $# -gt 0 ] || set -- "${ALL[@]}"
    for name in "$@"; do ensure "$name"; done
    # intermediate containers of a failed build hold overlay mounts; none is kept
    bh rm --all >/dev/null 2>&1 || true
    ;;
  keys)
    for name in "${ALL[@]}"; do echo "$name $("key_$name")"; done
    ;;
  *)
    echo "usage: $0 build [pause|python|operator|mlserver ...] | keys" >&2
    exit 2
    ;;
esac
