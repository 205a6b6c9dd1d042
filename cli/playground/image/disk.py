"""The image as a bootable disk (issue 20), made from the very rootfs the nspawn runtime boots.

`disk.raw`: an MBR partition table with one bootable ext4 partition labelled `playground-root` (the
rootfs, written by `mkfs.ext4 -d` without mounting anything), GRUB's BIOS boot code in the MBR and its
core image in the 1 MiB gap before the partition (both made by the image's own GRUB in 15-boot.sh).
What GCE asks of an imported disk: a partition table (MBR or GPT) and a bootable partition, the bytes in a
file named `disk.raw`, archived with tar and compressed with gzip
(https://cloud.google.com/solutions/image-management-best-practices, "Understanding images").
"""
from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

from ..errors import PlaygroundError

SECTOR = 512
START_SECTOR = 2048  # 1 MiB: GRUB's core image lives in the gap before the partition
LABEL = "playground-root"
GIB = 1 << 30
# GCE sizes disks in whole GB and an image's disk is at least its size; the VM's boot disk can be larger.
FREE_BYTES = 2 * GIB
# GRUB 2.06 (Debian 12) cannot read ext4's metadata_csum_seed, and Debian 11's 5.10 kernel mounts a
# file system with orphan_file read-only: the host's mke2fs 1.47 would set both.
EXT4_FEATURES = "^metadata_csum_seed,^orphan_file"


def disk_bytes(rootfs_bytes: int) -> int:
    """Whole GiB: the rootfs with a quarter more for ext4's own use, plus room to write."""
    need = START_SECTOR * SECTOR + rootfs_bytes * 5 // 4 + FREE_BYTES
    return -(-need // GIB) * GIB


def mbr(boot_img: bytes, partition_sectors: int, signature: int) -> bytes:
    """GRUB's boot code (its first 440 bytes), a disk signature, one bootable Linux partition (LBA only:
    the CHS fields say "beyond CHS"), and the boot signature."""
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", START_SECTOR,
                        partition_sectors)
    table = entry + bytes(16 * 3)
    return boot_img[:440] + struct.pack("<IH", signature, 0) + table + b"\x55\xaa"


def _copy_sparse(src: Path, dst, offset: int, chunk: int = 1 << 20) -> None:
    """src into the open file dst at offset, leaving all-zero chunks as holes (the disk stays sparse)."""
    zero = bytes(chunk)
    with open(src, "rb") as fh:
        pos = offset
        while True:
            data = fh.read(chunk)
            if not data:
                return
            if data != zero[: len(data)]:
                dst.seek(pos)
                dst.write(data)
            pos += len(data)


def make_disk(rootfs: Path, out: Path, rootfs_bytes: int, log) -> dict:
    """Write out (disk.raw) from rootfs; returns what the manifest records of it."""
    grub = rootfs / "boot" / "grub" / "i386-pc"
    try:
        boot_img = (grub / "boot.img").read_bytes()
        core_img = (grub / "core.img").read_bytes()
    except FileNotFoundError as exc:
        raise PlaygroundError(f"the rootfs has no GRUB boot images ({exc.filename}): 15-boot.sh did not run") from exc
    if len(boot_img) != SECTOR or len(core_img) > (START_SECTOR - 1) * SECTOR:
        raise PlaygroundError(f"GRUB's boot.img ({len(boot_img)} B) or core.img ({len(core_img)} B) does not fit "
                              f"the MBR and the {START_SECTOR - 1}-sector gap")
    for link in ("vmlinuz", "initrd.img"):
        if not (rootfs / link).exists():
            raise PlaygroundError(f"the rootfs has no /{link}: the kernel package did not install")
    total = disk_bytes(rootfs_bytes)
    part_sectors = total // SECTOR - START_SECTOR
    part = out.with_name(out.name + ".ext4")
    try:
        proc = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", LABEL, "-O", EXT4_FEATURES, "-d", str(rootfs),
                               str(part), f"{part_sectors * SECTOR // 1024}k"],
                              stdout=log, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise PlaygroundError(f"mkfs.ext4 -d of the rootfs failed: {proc.stderr.strip()[-500:]}")
        with open(out, "wb") as disk:
            disk.truncate(total)
            disk.write(mbr(boot_img, part_sectors, int.from_bytes(os.urandom(4), "little")))
            disk.write(core_img)
            _copy_sparse(part, disk, START_SECTOR * SECTOR)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        part.unlink(missing_ok=True)
    return {"file": out.name, "size_bytes": total, "format": "raw, MBR, ext4 root labelled " + LABEL,
            "boot": "BIOS (GRUB i386-pc), serial console ttyS0"}
