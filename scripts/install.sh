#!/usr/bin/env bash
# Installs what playground needs on a Debian/Ubuntu machine (root): the Debian
# packages and a venv in .venv with the CLI (and, with "test", the test extra).
set -euo pipefail
cd "$(dirname "$0")/.."

# dosfstools and mtools: the image disk's EFI System Partition, made without mounting (image/disk.py).
DEBS=(packer debootstrap systemd-container iproute2 nftables openssh-client curl python3-venv dosfstools mtools)
if [[ "${1:-}" == "test" ]]; then
  # mariadb-server: the Cloud SQL stand-in of tests/image/test_cloudsql.py, run by the test itself;
  # chromium: the browser of tests/image/test_browser.py; QEMU and socat: the VM that boots the image's
  # disk in tests/image/test_vm_boot.py (socat carries each of its metadata connections), OVMF its UEFI
  # firmware with Secure Boot (Microsoft's keys enrolled, as on GCE).
  # fdisk (sfdisk) and e2fsprogs: tests/unit/test_image_disk.py reads the made disk's partition table back
  # and checks its root filesystem.
  DEBS+=(shellcheck mariadb-server chromium qemu-system-x86 qemu-utils socat ovmf fdisk e2fsprogs)
fi
missing=()
for deb in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" || missing+=("$deb")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -q
  # Install, never start: no Debian service (MariaDB's) may be left running on this machine.
  no_start=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    no_start=/usr/sbin/policy-rc.d
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" || rc=$?
  if [[ -n "$no_start" ]]; then
    rm -f "$no_start"
  fi
  if ((rc != 0)); then
    exit "$rc"
  fi
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
