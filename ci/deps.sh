#!/usr/bin/env bash
# Installs the Debian packages meta needs to build and test, if missing.
# Safe to run again: it does nothing when everything is present.
set -euo pipefail
need=()
for p in librocksdb-dev pkg-config iptables iproute2; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
