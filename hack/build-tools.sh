#!/usr/bin/env bash
# Builds the local control plane from Go modules into a cache outside git:
#   ${SLIPWAY_CACHE:-~/.cache/slipway}/bin/<key>/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl,
#   kubelet,kube-proxy,etcd,kwok,helm,glua}
# Only what is missing is built, so a machine builds once. Prints the bin directory on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${SLIPWAY_CACHE:-$HOME/.cache/slipway}
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
bin="$cache/bin/$key"
work="$cache/build"
mkdir -p "$bin" "$work"
export GOFLAGS="-buildvcs=false -trimpath"
export CGO_ENABLED=0

log() { echo "[build-tools] $*" >&2; }

# A module of our own that requires k8s.io/kubernetes and points every staging module at its
# published version (upstream's go.mod points them at ./staging, which a module zip lacks).
build_kubernetes() {
  local mod="$work/kubernetes-$KUBERNETES_VERSION"
  local missing=()
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    [ -x "$bin/$b" ] || missing+=("$b")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "building ${missing[*]} ${KUBERNETES_VERSION} (cold: ~15-25 min on 2 cores)"
  mkdir -p "$mod"
  (
    cd "$mod"
    go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" >/dev/null
    local upstream
    upstream=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${KUBERNETES_VERSION}.mod
    local goline
    goline=$(grep -m1 '^go ' "$upstream")
    {
      echo "module slipway.local/kubernetes-tools"
      echo
      echo "$goline"
      echo
      echo "require k8s.io/kubernetes ${KUBERNETES_VERSION}"
      echo
      echo "replace ("
      sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\t\1 => \1 '"${KUBERNETES_STAGING_VERSION}"'#p' "$upstream"
      echo ")"
    } >go.mod
    cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
    go mod tidy -e >/dev/null 2>&1 || go mod tidy
    local major=${KUBERNETES_VERSION#v}; major=${major%%.*}
    local minor=${KUBERNETES_VERSION#v*.}; minor=${minor%%.*}
    local ld="-s -w"
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
      ld+=" -X $pkg.gitVersion=${KUBERNETES_VERSION} -X $pkg.gitMajor=${major} -X $pkg.gitMinor=${minor}"
      ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    for b in "${missing[@]}"; do
      log "  go build $b"
      go build -ldflags "$ld" -o "$bin/$b.tmp" "k8s.io/kubernetes/cmd/$b"
      mv "$bin/$b.tmp" "$bin/$b"
    done
  )
}

# etcd's server module has no main package; a three-line main calls etcdmain like upstream's.
build_etcd() {
  [ -x "$bin/etcd" ] && return 0
  log "building etcd ${ETCD_VERSION}"
  local mod="$work/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  (
    cd "$mod"
    cat >go.mod <<GOMOD
module slipway.local/etcd

go 1.24
GOMOD
    cat >main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null 2>&1
    go mod tidy >/dev/null 2>&1
    go build -ldflags "-s -w" -o "$bin/etcd.tmp" .
    mv "$bin/etcd.tmp" "$bin/etcd"
  )
}

# Builds a command of a module at a pinned version inside a wrapper module (go install mod@v
# refuses modules whose go.mod has replace directives).
build_cmd() {
  local name=$1 module=$2 version=$3 pkg=$4
  [ -x "$bin/$name" ] && return 0
  log "building $name ($module $version)"
  local mod="$work/$name-$version"
  mkdir -p "$mod"
  (
    cd "$mod"
    go mod download -json "$module@$version" >/dev/null
    local upstream
    upstream=$(go env GOMODCACHE)/cache/download/$module/@v/$version.mod
    {
      echo "module slipway.local/$name-tools"
      echo
      grep -m1 '^go ' "$upstream"
      echo
      echo "require $module $version"
      # carry upstream's replace directives over (they apply only in the main module)
      awk '/^replace \($/{r=1;next} r&&/^\)/{r=0;next} r{print "replace " $0} /^replace [^(]/{print}' "$upstream"
    } >go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >tools.go
    go mod tidy >/dev/null 2>&1 || go mod tidy
    go build -ldflags "-s -w" -o "$bin/$name.tmp" "$pkg"
    mv "$bin/$name.tmp" "$bin/$name"
  )
}

build_etcd
build_cmd kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
build_cmd helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
build_cmd glua github.com/yuin/gopher-lua "$GOPHER_LUA_VERSION" github.com/yuin/gopher-lua/cmd/glua
build_kubernetes
echo "$bin"
