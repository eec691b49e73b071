#!/usr/bin/env bash
# Finds or builds the control-plane binaries schema-gate's local cluster uses, one
# pinned version each, and prints `name=path` lines for them.
#
# Lookup order per binary: $SCHEMA_GATE_BIN_DIR, $KUBEBUILDER_ASSETS, the per-version
# cache ($SCHEMA_GATE_CACHE, default ~/.cache/schema-gate), else a build from the Go
# module proxy into that cache (once per machine; later runs are cache hits).
#   tools/binaries.sh            name=path lines, building what is missing
#   tools/binaries.sh --build    only builds what is missing, reporting the time taken
#   tools/binaries.sh --versions the pinned versions
set -euo pipefail

KUBERNETES_VERSION=v1.36.3
ETCD_VERSION=v3.6.10
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
# Prometheus 3.x is published as Go module versions v0.3xx.y: v0.316.0 is Prometheus 3.16.0.
# Only its promtool is built (checks and unit-tests the alerting rules).
PROMETHEUS_VERSION=v0.316.0
# krew and its manifest validator (the one krew-index runs) check the kubectl plugin's manifest.
KREW_VERSION=v0.4.3
COREDNS_VERSION=v1.15.0

CACHE="${SCHEMA_GATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/schema-gate}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { echo "[binaries] $*" >&2; }

# component -> binaries it provides
declare -A COMPONENT_OF=(
  [etcd]=etcd
  [kube-apiserver]=kubernetes [kube-controller-manager]=kubernetes
  [kube-scheduler]=kubernetes [kubectl]=kubernetes
  [kubelet]=kubernetes [kube-proxy]=kubernetes
  [kwok]=kwok [kwokctl]=kwok [helm]=helm [coredns]=coredns
  [promtool]=prometheus
  [krew]=krew [validate-krew-manifest]=krew
)
declare -A COMPONENT_DIR=(
  [etcd]="$CACHE/etcd-$ETCD_VERSION"
  [kubernetes]="$CACHE/kubernetes-$KUBERNETES_VERSION"
  [kwok]="$CACHE/kwok-$KWOK_VERSION"
  [helm]="$CACHE/helm-$HELM_VERSION"
  [prometheus]="$CACHE/prometheus-$PROMETHEUS_VERSION"
  [krew]="$CACHE/krew-$KREW_VERSION"
  [coredns]="$CACHE/coredns-$COREDNS_VERSION"
)
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy kwok kwokctl helm coredns promtool krew validate-krew-manifest)

# A throwaway module whose go.mod replaces each of $module's local `=> ../x` or
# `=> ./staging/...` paths by the published module at the given version.
scratch_module() {
  local module=$1 version=$2 staging_version=$3 dir
  dir=$(mktemp -d)
  local gomod
  gomod=$(cd "$dir" && go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module schema-gate.dev/binaries"
    echo "go $(go env GOVERSION | sed 's/^go//')"
    echo "require $module $version"
    grep -E '^\s*(replace\s+)?[a-z0-9./-]+\s+=>\s+\.' "$gomod" | grep -v FORBIDDEN \
      | sed -E 's/^\s*(replace\s+)?([^ ]+)\s+=>.*/replace \2 => \2 '"$staging_version"'/'
  } > "$dir/go.mod"
  echo "$dir"
}

build_kubernetes() {
  local out=$1 minor dir
  minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
  dir=$(scratch_module k8s.io/kubernetes "$KUBERNETES_VERSION" "v0.${KUBERNETES_VERSION#v1.}")
  # Without these the server reports v0.0.0-master and kwokctl cannot pick its flags.
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$dir" && go build -trimpath -ldflags "$ld" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  rm -rf "$dir"
}

build_etcd() {
  local out=$1 dir
  dir=$(scratch_module go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION")
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
  rm -rf "$dir"
}

build_kwok() {
  GOBIN="$1" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
}

build_helm() {
  GOBIN="$1" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# The module has no replace directives, so `go install` builds it as published. remove_all_sd
# leaves out the cloud service discoveries promtool does not need for rules (a much
# smaller build); the version is what `promtool --version` prints.
build_prometheus() {
  local v=${PROMETHEUS_VERSION#v0.}
  local version="3.$((10#${v%%.*} - 300)).${v#*.}"
  GOBIN="$1" go install -trimpath -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$version" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
}

build_krew() {
  GOBIN="$1" go install -trimpath -ldflags "-s -w -X sigs.k8s.io/krew/internal/version.gitTag=$KREW_VERSION" \
    "sigs.k8s.io/krew/cmd/krew@$KREW_VERSION" "sigs.k8s.io/krew/cmd/validate-krew-manifest@$KREW_VERSION"
}

# Cluster DNS for the real node's pods (no replace lines in its go.mod).
build_coredns() {
  GOBIN="$1" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
}

# Builds into a temporary directory and renames it, so an interrupted build never
# looks like a cache hit.
# A cache from before a binary joined its component counts as missing, so it is rebuilt.
ensure_component() {
  local component=$1 name=$2 final=${COMPONENT_DIR[$1]}
  [[ -f "$final/.complete" && -x "$final/$name" ]] && return 0
  mkdir -p "$CACHE"
  exec {lock}>"$CACHE/.lock-$component"
  flock "$lock"
  if [[ ! -f "$final/.complete" || ! -x "$final/$name" ]]; then
    local tmp="$final.partial.$$" start=$SECONDS
    rm -rf "$tmp"; mkdir -p "$tmp"
    log "building $component into $final (one time per machine; several minutes)"
    "build_$component" "$tmp"
    touch "$tmp/.complete"
    rm -rf "$final"; mv "$tmp" "$final"
    log "built $component in $((SECONDS - start))s"
  fi
  exec {lock}>&-
}

find_binary() {
  local name=$1 d
  for d in "${SCHEMA_GATE_BIN_DIR:-}" "${KUBEBUILDER_ASSETS:-}"; do
    [[ -n "$d" && -x "$d/$name" ]] && { echo "$d/$name"; return; }
  done
  local component=${COMPONENT_OF[$name]}
  ensure_component "$component" "$name"
  echo "${COMPONENT_DIR[$component]}/$name"
}

case "${1:-}" in
  --versions)
    echo "kubernetes=$KUBERNETES_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION helm=$HELM_VERSION coredns=$COREDNS_VERSION prometheus=$PROMETHEUS_VERSION krew=$KREW_VERSION" ;;
  --build)
    total=$SECONDS
    for b in "${BINARIES[@]}"; do find_binary "$b" > /dev/null; done
    log "binaries ready in $((SECONDS - total))s" ;;
  "")
    for b in "${BINARIES[@]}"; do echo "$b=$(find_binary "$b")"; done ;;
  *) echo "usage: $0 [--versions|--build]" >&2; exit 2 ;;
esac
