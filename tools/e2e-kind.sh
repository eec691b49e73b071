#!/usr/bin/env bash
# End-to-end on kind, for users with Docker: the image built and loaded, the gate installed
# with `kubectl apply -k` (plain certificates), PostgreSQL in the cluster, and the demo's
# scenario (shop chart install, then an upgrade through a window) checked with
# `schema-gate wait`. Needs docker, kind, kubectl, helm and node on PATH.
#   tools/e2e-kind.sh               # run (keeps the cluster)
#   tools/e2e-kind.sh --down        # delete the cluster
#   tools/e2e-kind.sh --prepare DIR # only write the install overlay and the chart values
#                                   # (what the manifests test renders and dry-runs)
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${KIND_CLUSTER:-schema-gate-e2e}
IMAGE=schema-gate:e2e
NS=shop

# DIR/overlay: manifests/ with plain certificates (certs/generate.sh) and the e2e image;
# DIR/values-1.yaml, DIR/values-2.yaml: the shop chart at schema versions 1 and 2.
prepare() {
  local dir=$1
  mkdir -p "$dir/overlay"
  cp -r manifests "$dir/manifests"
  bash certs/generate.sh "$dir/manifests/tls" >/dev/null
  cat >"$dir/overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../manifests]
images: [{name: schema-gate, newName: ${IMAGE%:*}, newTag: ${IMAGE#*:}}]
# The gate acts in namespace $NS only: the RoleBinding there, and the namespace in its
# --namespaces (the last one given wins).
patches:
  - target: {kind: Deployment, name: schema-gate}
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --namespaces=$NS
YAML
  for version in 1 2; do
    {
      echo "schemaVersion: \"$version\""
      echo "appImage: registry.k8s.io/pause:3.10"
      echo "sql:"
      echo '  001-items.sql: "CREATE TABLE items (id int PRIMARY KEY, name text);"'
      [[ $version == 2 ]] && echo '  002-price.sql: "ALTER TABLE items ADD COLUMN price_cents int NOT NULL DEFAULT 0;"'
      true
    } >"$dir/values-$version.yaml"
  done
}

case ${1:-} in
  --down) kind delete cluster --name "$CLUSTER"; exit 0 ;;
  --prepare) prepare "${2:?usage: tools/e2e-kind.sh --prepare DIR}"; exit 0 ;;
esac
for tool in docker kind kubectl helm node; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: $tool is required on PATH" >&2; exit 1; }
done
step() { echo; echo "=== $*"; }

step "kind cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 180s
KUBECONFIG=$(mktemp)
export KUBECONFIG
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"

step "image $IMAGE"
docker build ${NODE_IMAGE:+--build-arg NODE_IMAGE="$NODE_IMAGE"} -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "install the gate (kubectl apply -k, plain certificates)"
work=$(mktemp -d)
prepare "$work"
kubectl apply -k "$work/overlay"
kubectl -n schema-gate rollout status deployment/schema-gate --timeout=180s

step "PostgreSQL in namespace $NS"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -n "$NS" -f manifests/namespace-access.yaml
kubectl -n "$NS" apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: postgres}
spec:
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      containers:
        - name: postgres
          image: postgres:16
          env: [{name: POSTGRES_PASSWORD, value: e2e-password}]
          ports: [{containerPort: 5432}]
          readinessProbe: {exec: {command: [pg_isready, -U, postgres]}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: postgres}
spec: {selector: {app: postgres}, ports: [{port: 5432}]}
YAML
kubectl -n "$NS" rollout status deployment/postgres --timeout=180s
kubectl -n "$NS" create secret generic shop-db \
  --from-literal=url=postgres://postgres:e2e-password@postgres.$NS.svc:5432/postgres --dry-run=client -o yaml | kubectl apply -f -

cli() { node bin/schema-gate.js "$@"; }

step "helm install (schema version 1), then wait for its window"
helm upgrade --install shop examples/shop-chart -n "$NS" -f "$work/values-1.yaml"
cli wait orders -n "$NS" --timeout 300

step "helm upgrade (schema version 2), then wait for its window"
helm upgrade shop examples/shop-chart -n "$NS" -f "$work/values-2.yaml"
cli wait orders -n "$NS" --timeout 300
cli status -n "$NS"

step "check the schema"
columns=$(kubectl -n "$NS" exec deploy/postgres -- psql -U postgres -Atc \
  "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'items'")
[[ $columns == "id,name,price_cents" ]] || { echo "e2e-kind: unexpected columns: $columns" >&2; exit 1; }
echo "e2e-kind: passed (columns $columns). Delete the cluster with: tools/e2e-kind.sh --down"
