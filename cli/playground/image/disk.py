"""The image as a bootable disk (issue 20), made from the very rootfs the nspawn runtime boots.

`disk.raw` boots both ways GCE boots a VM:
- UEFI with Secure Boot, as a Shielded VM (what `launch` makes). Shielded VM requires a GPT disk with an
  EFI System Partition (FAT) holding the boot loader at \\EFI\\Boot\\bootx64.efi; MBR is not supported
  (https://cloud.google.com/compute/shielded-vm/docs/creating-shielded-images, "Preparing the disk").
  Here that loader is Debian's shim (signed by Microsoft's UEFI CA, which GCE's and OVMF's default keys
  trust), which checks Debian's signed GRUB, which checks Debian's signed kernel.
- BIOS, for a VM without Shielded VM: GRUB's boot code in the protective MBR, its core image in a BIOS
  boot partition.

GPT layout, 512-byte sectors: 1 BIOS boot (1 MiB), 2 the ESP (100 MiB, Google's suggested size), 3 the
ext4 root labelled `playground-root` (the rootfs, written by `mkfs.ext4 -d` without mounting anything).
The boot files come from the image's own packages, staged in the rootfs by 15-boot.sh. GCE imports the
bytes from a file named `disk.raw` in a gzip-compressed tar (image push, image/push.py).
"""
from __future__ import annotations

import os
import struct
import subprocess
import uuid
import zlib
from pathlib import Path

from ..errors import PlaygroundError

SECTOR = 512
START_SECTOR = 2048  # 1 MiB alignment for every partition
BIOS_BOOT_SECTORS = 2048  # 1 MiB for GRUB's core image
ESP_SECTORS = 100 * 2048  # 100 MiB
LABEL = "playground-root"
ESP_LABEL = "PLAYGROUND"
GIB = 1 << 30
# GCE sizes disks in whole GB and an image's disk is at least its size; the VM's boot disk can be larger.
FREE_BYTES = 2 * GIB
# GRUB 2.06 (Debian 12) cannot read ext4's metadata_csum_seed, and Debian 11's 5.10 kernel mounts a
# file system with orphan_file read-only: the host's mke2fs 1.47 would set both.
EXT4_FEATURES = "^metadata_csum_seed,^orphan_file"
GPT_ENTRIES, GPT_ENTRY_SIZE = 128, 128
GPT_TABLE_SECTORS = GPT_ENTRIES * GPT_ENTRY_SIZE // SECTOR  # 32
# Partition type GUIDs (UEFI spec; the BIOS boot one is GRUB's).
BIOS_BOOT = uuid.UUID("21686148-6449-6e6f-744e-656564454649")
ESP = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
LINUX_FS = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
ROOT_PARTITION = 3  # GRUB's core image names it: (hd0,gpt3)
# Where 15-boot.sh leaves what the ESP holds, and GRUB's BIOS images.
ESP_TREE = Path("boot/esp")
GRUB_PC = Path("boot/grub/i386-pc")
# GRUB's boot.img: the 64-bit sector of core.img's first sector (GRUB_BOOT_MACHINE_KERNEL_SECTOR); core.img's
# first sector (diskboot.img) ends with a block list whose 64-bit start names where the rest follows.
BOOT_IMG_KERNEL_SECTOR = 0x5C
DISKBOOT_LIST_START = SECTOR - 12


def disk_bytes(rootfs_bytes: int) -> int:
    """Whole GiB: the partitions before the root, the rootfs with a quarter more for ext4's own use, room to
    write, and the backup GPT at the end."""
    need = (START_SECTOR + BIOS_BOOT_SECTORS + ESP_SECTORS + 34) * SECTOR + rootfs_bytes * 5 // 4 + FREE_BYTES
    return -(-need // GIB) * GIB


def layout(total_bytes: int) -> list[tuple[uuid.UUID, str, int, int]]:
    """(type, name, first sector, last sector) of the three partitions of a disk this big."""
    sectors = total_bytes // SECTOR
    bios = START_SECTOR
    esp = bios + BIOS_BOOT_SECTORS
    root = esp + ESP_SECTORS
    last_usable = sectors - 1 - 1 - GPT_TABLE_SECTORS
    root_end = (last_usable + 1) // START_SECTOR * START_SECTOR - 1
    return [(BIOS_BOOT, "bios-boot", bios, esp - 1), (ESP, "efi", esp, root - 1), (LINUX_FS, "root", root, root_end)]


def gpt(total_bytes: int, disk_guid: uuid.UUID, part_guids: list[uuid.UUID]) -> tuple[bytes, bytes, bytes]:
    """(protective MBR table and signature [bytes 440-512], primary header + table [sectors 1-33],
    backup table + header [the last 33 sectors])."""
    sectors = total_bytes // SECTOR
    parts = layout(total_bytes)
    table = b"".join(struct.pack("<16s16sQQQ72s", ptype.bytes_le, guid.bytes_le, first, last, 0,
                                 name.encode("utf-16-le"))
                     for (ptype, name, first, last), guid in zip(parts, part_guids, strict=True))
    table = table.ljust(GPT_ENTRIES * GPT_ENTRY_SIZE, b"\0")
    table_crc = zlib.crc32(table)

    def header(current: int, backup: int, entries_lba: int) -> bytes:
        fields = [b"EFI PART", 0x00010000, 92, 0, 0, current, backup, START_SECTOR, sectors - 2 - GPT_TABLE_SECTORS,
                  disk_guid.bytes_le, entries_lba, GPT_ENTRIES, GPT_ENTRY_SIZE, table_crc]
        fmt = "<8sIIIIQQQQ16sQIII"
        crc = zlib.crc32(struct.pack(fmt, *fields))
        fields[3] = crc
        return struct.pack(fmt, *fields).ljust(SECTOR, b"\0")

    protective = struct.pack("<IH", int.from_bytes(os.urandom(4), "little"), 0)
    protective += struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1,
                              min(sectors - 1, 0xFFFFFFFF)) + bytes(48) + b"\x55\xaa"
    primary = header(1, sectors - 1, 2) + table
    backup = table + header(sectors - 1, 1, sectors - 1 - GPT_TABLE_SECTORS)
    return protective, primary, backup


def grub_bios(boot_img: bytes, core_img: bytes, core_sector: int) -> tuple[bytes, bytes]:
    """GRUB's boot code and core image pointed at a core image written at core_sector (what grub-bios-setup
    does for a BIOS boot partition)."""
    boot = bytearray(boot_img[:440])
    struct.pack_into("<Q", boot, BOOT_IMG_KERNEL_SECTOR, core_sector)
    core = bytearray(core_img)
    struct.pack_into("<Q", core, DISKBOOT_LIST_START, core_sector + 1)
    return bytes(boot), bytes(core)


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


def _run(args: list[str], what: str, log, env=None) -> None:
    proc = subprocess.run(args, stdout=log, stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise PlaygroundError(f"{what} failed: {proc.stderr.strip()[-500:]}")


def esp_image(tree: Path, out: Path, log) -> None:
    """A FAT32 file system holding tree, made without mounting (mkfs.vfat, then mtools' mcopy)."""
    _run(["mkfs.vfat", "-F", "32", "-S", str(SECTOR), "-n", ESP_LABEL, "-C", str(out), str(ESP_SECTORS // 2)],
         "mkfs.vfat of the EFI System Partition", log)
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    _run(["mcopy", "-s", "-i", str(out), *[str(p) for p in sorted(tree.iterdir())], "::/"],
         "mcopy of the boot loader onto the EFI System Partition", log, env)


def make_disk(rootfs: Path, out: Path, rootfs_bytes: int, log) -> dict:
    """Write out (disk.raw) from rootfs; returns what the manifest records of it."""
    try:
        boot_img = (rootfs / GRUB_PC / "boot.img").read_bytes()
        core_img = (rootfs / GRUB_PC / "core.img").read_bytes()
    except FileNotFoundError as exc:
        raise PlaygroundError(f"the rootfs has no GRUB boot images ({exc.filename}): 15-boot.sh did not run") from exc
    if len(boot_img) != SECTOR or len(core_img) > BIOS_BOOT_SECTORS * SECTOR:
        raise PlaygroundError(f"GRUB's boot.img ({len(boot_img)} B) or core.img ({len(core_img)} B) does not fit "
                              f"the MBR and the {BIOS_BOOT_SECTORS}-sector BIOS boot partition")
    loader = rootfs / ESP_TREE / "EFI/BOOT/BOOTX64.EFI"
    if not loader.is_file():
        raise PlaygroundError(f"the rootfs has no UEFI boot loader (/{ESP_TREE}/EFI/BOOT/BOOTX64.EFI): "
                              "15-boot.sh did not run")
    for link in ("vmlinuz", "initrd.img"):
        if not (rootfs / link).exists():
            raise PlaygroundError(f"the rootfs has no /{link}: the kernel package did not install")
    total = disk_bytes(rootfs_bytes)
    (_, _, bios, _), (_, _, esp, _), (_, _, root, root_end) = layout(total)
    part = out.with_name(out.name + ".ext4")
    fat = out.with_name(out.name + ".esp")
    try:
        _run(["mkfs.ext4", "-q", "-F", "-L", LABEL, "-O", EXT4_FEATURES, "-d", str(rootfs), str(part),
              f"{(root_end + 1 - root) * SECTOR // 1024}k"], "mkfs.ext4 -d of the rootfs", log)
        esp_image(rootfs / ESP_TREE, fat, log)
        protective, primary, backup = gpt(total, uuid.uuid4(), [uuid.uuid4() for _ in range(3)])
        boot, core = grub_bios(boot_img, core_img, bios)
        with open(out, "wb") as disk:
            disk.truncate(total)
            disk.write(boot + protective)
            disk.write(primary)
            disk.seek(bios * SECTOR)
            disk.write(core)
            _copy_sparse(fat, disk, esp * SECTOR)
            _copy_sparse(part, disk, root * SECTOR)
            disk.seek(total - len(backup))
            disk.write(backup)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        part.unlink(missing_ok=True)
        fat.unlink(missing_ok=True)
    return {"file": out.name, "size_bytes": total,
            "format": f"raw, GPT (BIOS boot, EFI System, ext4 root labelled {LABEL})",
            "boot": "UEFI with Secure Boot (shim, GRUB, kernel signed by Debian) or BIOS (GRUB i386-pc); "
                    "serial console ttyS0"}
