"""The bootable disk's layout (cli/playground/image/disk.py), made from a small rootfs: what a BIOS, GRUB
and GCE's image import read of it. Booting it is tests/image/test_vm_boot.py's."""
from __future__ import annotations

import shutil
import struct

import pytest
from playground.errors import PlaygroundError
from playground.image import disk


def tiny_rootfs(tmp_path):
    root = tmp_path / "rootfs"
    grub = root / "boot/grub/i386-pc"
    grub.mkdir(parents=True)
    (grub / "boot.img").write_bytes(b"\xeb\x63\x90" + bytes(509))
    (grub / "core.img").write_bytes(b"CORE" * 8000)  # 32 000 bytes, as big as a real one
    (root / "boot/vmlinuz-6.1").write_bytes(b"kernel")
    (root / "boot/initrd.img-6.1").write_bytes(b"initrd")
    (root / "vmlinuz").symlink_to("boot/vmlinuz-6.1")
    (root / "initrd.img").symlink_to("boot/initrd.img-6.1")
    (root / "etc").mkdir()
    (root / "etc/hello").write_text("from the rootfs\n")
    return root


@pytest.fixture
def need_mkfs():
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 (e2fsprogs) is not installed")


def test_the_disk_is_an_mbr_with_grub_and_one_bootable_ext4_partition(tmp_path, need_mkfs):
    root = tiny_rootfs(tmp_path)
    out = tmp_path / "disk.raw"
    with open(tmp_path / "log", "w") as log:
        info = disk.make_disk(root, out, 10_000, log)
    data = out.read_bytes()[: 2 * 1024 * 1024]
    assert out.stat().st_size == info["size_bytes"] and info["size_bytes"] % disk.GIB == 0
    assert out.stat().st_blocks * 512 < 64 * 1024 * 1024, "the disk is sparse"
    assert data[:440] == (b"\xeb\x63\x90" + bytes(509))[:440], "GRUB's boot code in the MBR"
    assert data[510:512] == b"\x55\xaa"
    status, ptype, start, sectors = struct.unpack_from("<B3xB3xII", data, 446)
    assert (status, ptype, start) == (0x80, 0x83, disk.START_SECTOR)
    assert (start + sectors) * 512 == info["size_bytes"]
    assert data[512:512 + 32000] == b"CORE" * 8000, "GRUB's core image right after the MBR"
    superblock = data[disk.START_SECTOR * 512 + 1024:][:1024]
    assert struct.unpack_from("<H", superblock, 56)[0] == 0xEF53, "ext4 at the partition's start"
    assert superblock[120:136].rstrip(b"\0").decode() == disk.LABEL
    assert not list(tmp_path.glob("*.ext4")), "the partition's scratch file is gone"


def test_a_rootfs_without_grub_or_kernel_is_refused_and_leaves_no_disk(tmp_path):
    root = tiny_rootfs(tmp_path)
    (root / "vmlinuz").unlink()
    with pytest.raises(PlaygroundError, match="no /vmlinuz"):
        disk.make_disk(root, tmp_path / "disk.raw", 10_000, None)
    (root / "boot/grub/i386-pc/core.img").unlink()
    with pytest.raises(PlaygroundError, match="no GRUB boot images"):
        disk.make_disk(root, tmp_path / "disk.raw", 10_000, None)
    assert not (tmp_path / "disk.raw").exists()


def test_disk_size_is_whole_gib_with_room_to_write():
    assert disk.disk_bytes(1_700_000_000) == 4 * disk.GIB
    assert disk.disk_bytes(0) == 3 * disk.GIB
