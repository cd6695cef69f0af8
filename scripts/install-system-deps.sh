#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use, when missing and when we are root.
# Without root it only says what is missing: tests that need a package skip with a reason.
#   prometheus  - promtool + server: the real-Prometheus tests and the demo
#   postgresql  - initdb/pg_ctl: the multi-replica store tests start their own throwaway
#                 cluster on a free port (the package's own cluster, if its post-install
#                 starts one, is not used)
set -euo pipefail
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "not root: cannot install ${missing[*]}; tests that need them will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
