#!/usr/bin/env bash
# The container image, built and run for real (npm run test:image):
#   1. docker build of the Dockerfile;
#   2. checks of the image: numeric non-root user, no package the lockfile marks dev, no
#      sources or tests, the CLI runs, and `schema-gate page` serves the maintenance page
#      from a mounted flag as the namespace backend does;
#   3. the integration suites that start the gate (webhook, window, maintenance, cli,
#      demo), with the gate run from the image under the pod restrictions of
#      manifests/base/deployment.yaml (SCHEMA_GATE_GATE_IMAGE, see src/local/gate.ts).
# Needs a running Docker engine and what `npm test` needs. The base image is
# node:20-bookworm-slim, or NODE_IMAGE if set. Where Docker Hub cannot be reached, a
# stand-in base is made here (root and debootstrap needed): Debian bookworm plus this
# machine's Node.js 20 and npm, and its CA bundle so that `npm ci` inside the build trusts
# the same registries the host does.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${SCHEMA_GATE_CHECK_IMAGE:-schema-gate:check}
LOCAL_BASE=schema-gate-base:node20-bookworm

step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
fail() { echo "image-check: $*" >&2; exit 1; }
command -v docker >/dev/null || fail "docker is required on PATH"
docker info >/dev/null 2>&1 || fail "no Docker engine answers (start dockerd, or check DOCKER_HOST)"

local_base() {
  if docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then echo "reusing $LOCAL_BASE" >&2; return; fi
  command -v debootstrap >/dev/null || fail "Docker Hub is unreachable and debootstrap is missing (apt-get install debootstrap)"
  [[ $(id -u) == 0 ]] || fail "Docker Hub is unreachable; making the stand-in base with debootstrap needs root"
  local node npm_dir root
  node=$(command -v node)
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  [[ $("$node" --version) == v20.* ]] || fail "the stand-in base needs Node.js 20 on PATH, found $("$node" --version)"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' RETURN
  echo "debootstrap bookworm (minbase) + $("$node" --version) + npm $(npm --version)" >&2
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  install -m 0755 "$node" "$root/usr/local/bin/node"
  mkdir -p "$root/usr/local/lib/node_modules" "$root/etc/ssl/certs"
  cp -r "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc "$root"/usr/share/man
  tar -C "$root" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    -c 'CMD ["node"]' - "$LOCAL_BASE" >/dev/null
}

# Gate containers a run cut short left behind (src/local/gate.ts labels them).
docker ps -aq --filter label=schema-gate.dev/local-gate=true | xargs -r docker rm -f >/dev/null

step "base image"
base=${NODE_IMAGE:-node:20-bookworm-slim}
if docker image inspect "$base" >/dev/null 2>&1 || docker pull -q "$base" >/dev/null 2>&1; then
  echo "base: $base"
elif [[ -z ${NODE_IMAGE:-} ]]; then
  echo "cannot pull $base; making a stand-in base $LOCAL_BASE"
  local_base
  base=$LOCAL_BASE
else
  fail "NODE_IMAGE=$base is neither present nor pullable"
fi

step "docker build -t $IMAGE (base $base)"
start=$SECONDS
docker build -q --build-arg "NODE_IMAGE=$base" -t "$IMAGE" . >/dev/null
echo "built in $((SECONDS - start))s, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

step "image contents"
user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
[[ $user =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] || fail "the image user is '$user'; it must be a numeric non-root uid so runAsNonRoot can verify it"
echo "user $user"
docker run --rm --entrypoint node "$IMAGE" -e '
  const fs = require("node:fs");
  const lock = JSON.parse(fs.readFileSync("/app/package-lock.json", "utf8"));
  const dev = Object.entries(lock.packages).filter(([p, e]) => p && e.dev && fs.existsSync("/app/" + p)).map(([p]) => p);
  const stray = ["src", "test", "tsconfig.json", "node_modules/.bin/tsc"].filter((p) => fs.existsSync("/app/" + p));
  if (dev.length || stray.length) { console.error("not for production:", [...dev, ...stray].join(", ")); process.exit(1); }
  const prod = Object.keys(lock.packages).filter((p) => p && !lock.packages[p].dev).length;
  console.log(`production packages only: ${prod} from the lockfile, none of its dev packages`);
' || fail "the image carries development files"
docker run --rm "$IMAGE" --help >/dev/null || fail "schema-gate --help failed in the image"
echo "schema-gate --help runs"

step "schema-gate page from the image"
flag=$(mktemp -d)
printf true >"$flag/enabled"
printf 'Upgrading the shop database' >"$flag/message"
chmod -R a+rX "$flag"
page=$(docker run -d --rm --read-only --cap-drop ALL --publish 127.0.0.1::8080 \
  --volume "$flag:/etc/schema-gate/maintenance:ro" "$IMAGE" page)
trap 'docker rm -f "$page" >/dev/null 2>&1 || true' EXIT
port=$(docker port "$page" 8080/tcp | head -n1 | sed 's/.*://')
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/.schema-gate/healthz" >/dev/null && break; sleep 0.2; done
headers=$(mktemp)
body=$(curl -s -D "$headers" -H 'Accept: text/html' "http://127.0.0.1:$port/checkout")
grep -q '^HTTP/1.1 503' "$headers" || { docker logs "$page" >&2; fail "the page did not answer 503: $(head -n1 "$headers")"; }
grep -qi '^retry-after:' "$headers" || fail "the page answered without Retry-After"
grep -q 'Upgrading the shop database' <<<"$body" || fail "the page does not show the flag's message"
echo "503 with Retry-After and the flag's message, served by uid $user on a read-only root"
rm -rf "$headers" "$flag"
docker rm -f "$page" >/dev/null

step "integration suites with the gate run from $IMAGE"
SCHEMA_GATE_GATE_IMAGE=$IMAGE npx mocha \
  test/integration/webhook.test.ts test/integration/window.test.ts test/integration/restart.test.ts test/integration/maintenance.test.ts \
  test/integration/cli.test.ts test/integration/demo.test.ts
echo "image-check: passed ($IMAGE)"
