#!/usr/bin/env bash
# The Debian packages the tests, the demo and the local cluster need, installed when
# missing: `npm test` and `npm run demo` run this first, and so does CI.
#   tools/system-packages.sh           install what is missing (as root), else name the command
#   tools/system-packages.sh --check   only say what is missing (exit 1 if anything is)
# Not as root, it installs nothing: it prints the exact command to run and exits 1.
set -euo pipefail

missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v runuser >/dev/null || missing+=(util-linux)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# The pooler tests put a real PgBouncer between the applications and PostgreSQL.
[[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
# The maintenance page is checked in a real browser, and its screenshot read back by OCR.
command -v chromium >/dev/null || missing+=(chromium fonts-dejavu-core)
command -v tesseract >/dev/null || missing+=(tesseract-ocr tesseract-ocr-eng)
# The local cluster's real kubelet node (src/local/real-node.ts; the kubelet and kube-proxy
# themselves are built by tools/binaries.sh with the control plane).
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
for plugin in bridge host-local portmap loopback; do
  [[ -x /usr/lib/cni/$plugin ]] || { missing+=(containernetworking-plugins); break; }
done
command -v iptables >/dev/null || missing+=(iptables)
command -v conntrack >/dev/null || missing+=(conntrack)
command -v ip >/dev/null || missing+=(iproute2)
# The failover tests run one gate replica with its wall clock offset (libfaketime, LD_PRELOAD).
[[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]] || missing+=(libfaketime)
# The local Ingress controller's data plane (src/local/ingress-controller.ts).
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)

tools_ok=true
command -v go >/dev/null || { echo "[system] Go 1.26+ is needed to build the control-plane binaries once (https://go.dev/doc/install)" >&2; tools_ok=false; }
command -v node >/dev/null || { echo "[system] Node.js 20.19+ is needed" >&2; tools_ok=false; }

if ((${#missing[@]} == 0)); then
  echo "[system] Debian packages: all present"
  $tools_ok
  exit $?
fi
command="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [[ "${1:-}" == "--check" ]]; then
  echo "[system] missing: ${missing[*]}"
  exit 1
fi
if [[ $(id -u) != 0 ]]; then
  echo "[system] missing Debian packages: ${missing[*]}" >&2
  echo "[system] run as root:  $command" >&2
  exit 1
fi
echo "[system] installing the missing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
$tools_ok
