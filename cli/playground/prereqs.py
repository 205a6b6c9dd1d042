"""Checks for what a command needs on this machine, each with how to get it."""
from __future__ import annotations

import os
import shutil

from .errors import PlaygroundError

HOW = {
    "packer": "apt-get install packer",
    "debootstrap": "apt-get install debootstrap",
    "systemd-nspawn": "apt-get install systemd-container",
    "ssh-keygen": "apt-get install openssh-client",
    "ssh": "apt-get install openssh-client",
    "ip": "apt-get install iproute2",
    "mkfs.ext4": "apt-get install e2fsprogs",
    "mkfs.vfat": "apt-get install dosfstools",
    "mcopy": "apt-get install mtools",
    "qemu-system-x86_64": "apt-get install qemu-system-x86",
    "qemu-img": "apt-get install qemu-utils",
    "socat": "apt-get install socat",
}


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PlaygroundError(f"{what} needs root (systemd-nspawn and network namespaces): run it with sudo")


def require_tools(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            raise PlaygroundError(f"{tool} is not installed: {HOW.get(tool, 'install ' + tool)}")
