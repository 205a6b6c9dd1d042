#!/usr/bin/env bash
# Installs what playground needs on a Debian/Ubuntu machine (root): the Debian
# packages and a venv in .venv with the CLI (and, with "test", the test extra).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(packer debootstrap systemd-container iproute2 openssh-client curl python3-venv)
if [[ "${1:-}" == "test" ]]; then
  DEBS+=(shellcheck)
fi
missing=()
for deb in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" || missing+=("$deb")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

PY="${PLAYGROUND_PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
extra=""
if [[ "${1:-}" == "test" ]]; then
  extra="[test]"
fi
.venv/bin/pip install -q --disable-pip-version-check -e ".${extra}"
