"""The bootable disk's layout (cli/playground/image/disk.py), made from a small rootfs: what a BIOS, GRUB
and GCE's image import read of it. Booting it is tests/image/test_vm_boot.py's."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib

import pytest
from playground.errors import PlaygroundError
from playground.image import disk


def tiny_rootfs(tmp_path):
    root = tmp_path / "rootfs"
    grub = root / "boot/grub/i386-pc"
    grub.mkdir(parents=True)
    (grub / "boot.img").write_bytes(b"\xeb\x63\x90" + bytes(509))
    (grub / "core.img").write_bytes(b"CORE" * 8000)  # 32 000 bytes, as big as a real one
    esp = root / "boot/esp/EFI/BOOT"
    esp.mkdir(parents=True)
    (esp / "BOOTX64.EFI").write_bytes(b"MZ shim")
    (esp / "grubx64.efi").write_bytes(b"MZ grub")
    (root / "boot/esp/EFI/debian").mkdir()
    (root / "boot/esp/EFI/debian/grub.cfg").write_text("search --label playground-root\n")
    (root / "boot/vmlinuz-6.1").write_bytes(b"kernel")
    (root / "boot/initrd.img-6.1").write_bytes(b"initrd")
    (root / "vmlinuz").symlink_to("boot/vmlinuz-6.1")
    (root / "initrd.img").symlink_to("boot/initrd.img-6.1")
    (root / "etc").mkdir()
    (root / "etc/hello").write_text("from the rootfs\n")
    return root


@pytest.fixture
def need_tools():
    for tool in ("mkfs.ext4", "mkfs.vfat", "mcopy", "sfdisk"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed "
                        "(`scripts/install.sh test` installs e2fsprogs, dosfstools, mtools, fdisk)")


def test_the_disk_is_a_gpt_with_bios_boot_efi_and_ext4_root_partitions(tmp_path, need_tools):
    root = tiny_rootfs(tmp_path)
    out = tmp_path / "disk.raw"
    with open(tmp_path / "log", "w") as log:
        info = disk.make_disk(root, out, 10_000, log)
    size = out.stat().st_size
    assert size == info["size_bytes"] and size % disk.GIB == 0
    assert out.stat().st_blocks * 512 < 200 * 1024 * 1024, "the disk is sparse"
    # util-linux reads the table as a firmware or a kernel would (and checks both headers' CRCs).
    table = json.loads(subprocess.run(["sfdisk", "--json", str(out)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    assert table["label"] == "gpt" and table["lastlba"] == size // 512 - 34
    parts = table["partitions"]
    assert [(p["type"].lower(), p["start"]) for p in parts] == [
        (str(disk.BIOS_BOOT), 2048), (str(disk.ESP), 4096), (str(disk.LINUX_FS), 4096 + disk.ESP_SECTORS)]
    assert (parts[2]["start"] + parts[2]["size"]) % 2048 == 0, "the root ends on a MiB"
    verify = subprocess.run(["sfdisk", "--verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0 and "No errors detected" in verify.stdout, verify.stdout + verify.stderr
    with open(out, "rb") as fh:
        data = fh.read(4096 * 512)
        fh.seek(size - 512)
        backup = fh.read(512)
    assert data[510:512] == b"\x55\xaa" and data[450] == 0xEE, "the protective MBR"
    assert data[:0x5C] == (b"\xeb\x63\x90" + bytes(509))[:0x5C], "GRUB's boot code in the MBR"
    assert struct.unpack_from("<Q", data, disk.BOOT_IMG_KERNEL_SECTOR)[0] == 2048, "boot.img points at core.img"
    core = data[2048 * 512:][:32000]
    assert struct.unpack_from("<Q", core, disk.DISKBOOT_LIST_START)[0] == 2049, "core.img's block list follows"
    assert core[512:32000] == (b"CORE" * 8000)[512:]
    assert backup[:8] == b"EFI PART" and struct.unpack_from("<QQ", backup, 24) == (size // 512 - 1, 1)
    header = bytearray(data[512:512 + 92])
    crc = struct.unpack_from("<I", header, 16)[0]
    header[16:20] = bytes(4)
    assert zlib.crc32(bytes(header)) == crc
    with open(out, "rb") as fh:  # the ext4 root: its superblock and label
        fh.seek(parts[2]["start"] * 512 + 1024)
        superblock = fh.read(1024)
    assert struct.unpack_from("<H", superblock, 56)[0] == 0xEF53
    assert superblock[120:136].rstrip(b"\0").decode() == disk.LABEL
    assert not list(tmp_path.glob("disk.raw.*")), "the partitions' scratch files are gone"


def test_the_efi_system_partition_holds_shim_at_the_removable_path(tmp_path, need_tools):
    root = tiny_rootfs(tmp_path)
    out = tmp_path / "disk.raw"
    disk.make_disk(root, out, 10_000, None)
    esp = tmp_path / "esp.fat"
    with open(out, "rb") as src, open(esp, "wb") as dst:
        src.seek(4096 * 512)
        dst.write(src.read(disk.ESP_SECTORS * 512))
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
    listing = subprocess.run(["mdir", "-/", "-b", "-i", str(esp), "::/"], capture_output=True, text=True,
                             env=env, check=True).stdout.split()
    assert set(listing) >= {"::/EFI/BOOT/BOOTX64.EFI", "::/EFI/BOOT/grubx64.efi", "::/EFI/debian/grub.cfg"}
    shim = subprocess.run(["mtype", "-i", str(esp), "::/EFI/BOOT/BOOTX64.EFI"], capture_output=True, env=env,
                          check=True).stdout
    assert shim == b"MZ shim"


def test_a_rootfs_without_grub_or_kernel_is_refused_and_leaves_no_disk(tmp_path):
    root = tiny_rootfs(tmp_path)
    (root / "vmlinuz").unlink()
    with pytest.raises(PlaygroundError, match="no /vmlinuz"):
        disk.make_disk(root, tmp_path / "disk.raw", 10_000, None)
    (root / "vmlinuz").symlink_to("boot/vmlinuz-6.1")
    (root / "boot/esp/EFI/BOOT/BOOTX64.EFI").unlink()
    with pytest.raises(PlaygroundError, match="no UEFI boot loader"):
        disk.make_disk(root, tmp_path / "disk.raw", 10_000, None)
    (root / "boot/grub/i386-pc/core.img").unlink()
    with pytest.raises(PlaygroundError, match="no GRUB boot images"):
        disk.make_disk(root, tmp_path / "disk.raw", 10_000, None)
    assert not (tmp_path / "disk.raw").exists()


def test_disk_size_is_whole_gib_with_room_to_write():
    assert disk.disk_bytes(0) == 3 * disk.GIB
    assert disk.disk_bytes(1_600_000_000) == 4 * disk.GIB
    assert disk.disk_bytes(1_700_000_000) == 5 * disk.GIB  # the 101 MiB before the root count too
