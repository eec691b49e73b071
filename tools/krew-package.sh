#!/usr/bin/env bash
# Packs the operator CLI as the krew plugin `kubectl schema-gate`: an archive with the
# compiled CLI, its production dependencies and bin/kubectl-schema_gate, and the manifest
# plugins/schema-gate.yaml with the archive's uri and sha256 filled in.
#   tools/krew-package.sh OUT_DIR BASE_URL
# BASE_URL is where the archive will be published (the manifest's uri is BASE_URL/<archive>);
# `kubectl krew install --manifest=OUT_DIR/schema-gate.yaml --archive=OUT_DIR/<archive>`
# installs it without publishing. The dependencies are copied from this checkout's
# node_modules and pruned of the dev ones, so nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -eq 2 ]] || { echo "usage: tools/krew-package.sh OUT_DIR BASE_URL" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
base=${2%/}
version=v$(node -p 'require("./package.json").version')
archive=kubectl-schema_gate-$version.tar.gz

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
stage=$scratch/schema-gate
mkdir -p "$stage/bin"
npx tsc -p tsconfig.build.json --outDir "$stage/dist"
cp package.json package-lock.json "$stage/"
cp bin/schema-gate.js bin/kubectl-schema_gate "$stage/bin/"
cp -a "$(readlink -f node_modules)" "$stage/node_modules"
(cd "$stage" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund >/dev/null)
# krew unpacks regular files and directories only; the CLI needs none of npm's .bin links.
find "$stage/node_modules" -name .bin -prune -exec rm -rf {} +
if links=$(find "$stage" -type l) && [[ -n $links ]]; then
  echo "krew-package: krew cannot unpack symbolic links: $links" >&2; exit 1
fi
# Reproducible: the same tree gives the same archive and sha256.
tar -C "$stage" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . | gzip -n >"$out/$archive"
sha=$(sha256sum "$out/$archive" | cut -d' ' -f1)
sed -e "s|uri: \"@URI@\"|uri: \"$base/$archive\"|" -e "s|sha256: \"@SHA256@\"|sha256: \"$sha\"|" plugins/schema-gate.yaml >"$out/schema-gate.yaml"
echo "wrote $out/$archive ($(du -h "$out/$archive" | cut -f1)) and $out/schema-gate.yaml" >&2
