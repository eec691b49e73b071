#!/usr/bin/env bash
# Makes a CA and a serving certificate for the schema-gate webhook, with openssl.
#
#   certs/generate.sh OUT_DIR [SAN...]
#
# SANs default to the in-cluster Service names of schema-gate in namespace
# ${NAMESPACE:-schema-gate}; pass IP:127.0.0.1 etc. for a gate running outside the
# cluster. Writes ca.crt, ca.key, tls.crt, tls.key and ca-bundle.b64 (the caBundle
# value for the webhook configurations). An existing CA in OUT_DIR is reused, so
# re-running renews the serving certificate without changing caBundle.
set -euo pipefail

out=${1:?usage: certs/generate.sh OUT_DIR [SAN...]}
shift
ns=${NAMESPACE:-schema-gate}
svc=${SERVICE:-schema-gate}
days=${DAYS:-365}
if [[ $# -eq 0 ]]; then
  set -- "DNS:$svc" "DNS:$svc.$ns" "DNS:$svc.$ns.svc" "DNS:$svc.$ns.svc.cluster.local"
fi
sans=$(IFS=,; echo "$*")
cn=${1#*:}

mkdir -p "$out"
cd "$out"
umask 077
if [[ ! -s ca.key || ! -s ca.crt ]]; then
  openssl req -x509 -new -nodes -newkey rsa:2048 -keyout ca.key -out ca.crt -days 3650 \
    -subj "/CN=schema-gate webhook CA" 2>/dev/null
fi
openssl req -new -nodes -newkey rsa:2048 -keyout tls.key.new -out tls.csr -subj "/CN=$cn" 2>/dev/null
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
  -out tls.crt.new -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n' "$sans") 2>/dev/null
# Replace key and certificate by rename so a server watching the files never reads a mismatched pair
# for long; it reloads when both have changed.
mv tls.key.new tls.key
mv tls.crt.new tls.crt
rm -f tls.csr ca.srl
base64 -w0 ca.crt > ca-bundle.b64
chmod 644 ca.crt tls.crt ca-bundle.b64
echo "wrote $out/{ca.crt,tls.crt,tls.key,ca-bundle.b64} for $sans" >&2
