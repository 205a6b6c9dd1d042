#!/usr/bin/env bash
# What makes the local image a bootable disk as well as a folder (issue 20): Debian's cloud kernel, GRUB
# for BIOS boot with the serial console, DHCP networking on a VM. The disk itself (partition table, ext4
# root, GRUB in the MBR gap) is assembled from this rootfs after the build (cli/playground/image/disk.py).
# GCE images built by googlecompute keep their source image's kernel and bootloader: this runs locally only.
set -euo pipefail
# The file provisioner put lib.sh beside the sources.
# shellcheck source=packer/scripts/lib.sh
source "${PLAYGROUND_SRC:-/tmp/playground-src}/lib.sh"

if [[ "${PLAYGROUND_TARGET:-}" != "local" ]]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# linux-image-cloud-amd64: the kernel Debian builds for VMs (virtio, NVMe, gVNIC); grub-pc-bin: GRUB's
# BIOS modules and grub-mkimage, without grub-pc's debconf step that wants a disk to install to.
# A mirror may list a security update it does not yet serve (measured: bullseye-security's cloud kernel
# 5.10.262-1 answered 404): then the release's own kernel, said in the build log.
if ! apt_install linux-image-cloud-amd64 initramfs-tools grub-pc-bin; then
  codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  echo "15-boot: the newest cloud kernel could not be fetched; installing ${codename}'s own" >&2
  apt_install -t "$codename" linux-image-cloud-amd64 initramfs-tools grub-pc-bin
fi

# GRUB: the BIOS core image is made here, with the image's own GRUB, and written to the disk's MBR gap by
# disk.py. Its prefix names the first MBR partition, where this rootfs lands.
install -d /boot/grub/i386-pc
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst /boot/grub/i386-pc/
cp /usr/lib/grub/i386-pc/boot.img /boot/grub/i386-pc/boot.img
grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2
# GCE's serial console is ttyS0 at 38400 (its guest images' setting); the root is found by its label.
cat > /boot/grub/grub.cfg <<'CFG'
# written by 15-boot.sh: the playground image's only boot entry
serial --unit=0 --speed=38400
terminal_input serial console
terminal_output serial console
set timeout=0
menuentry "playground" {
  linux /vmlinuz root=LABEL=playground-root rw console=tty0 console=ttyS0,38400n8 net.ifnames=0
  initrd /initrd.img
}
CFG

# A VM's network: DHCP on its NIC, as on GCE. Never inside systemd-nspawn, where the local provider has set
# the address and a DHCP client would fight it.
install -d /etc/systemd/network
cat > /etc/systemd/network/50-playground-dhcp.network <<'NET'
[Match]
Name=eth* en*
Virtualization=!container

[Network]
DHCP=ipv4
NET
# Its wait-online too: in a container it would wait its 2 minutes for a networkd that never ran.
for unit in systemd-networkd.service systemd-networkd-wait-online.service; do
  install -d "/etc/systemd/system/$unit.d"
  printf '[Unit]\nConditionVirtualization=!container\n' > "/etc/systemd/system/$unit.d/50-playground-vm-only.conf"
done
systemctl enable systemd-networkd.service >/dev/null 2>&1
# GCE's guests resolve the metadata server's name from /etc/hosts (Google's images write this line); the
# agent and google-auth ask for metadata.google.internal unless GCE_METADATA_HOST says otherwise.
grep -q "metadata.google.internal" /etc/hosts || echo "169.254.169.254 metadata.google.internal metadata" >> /etc/hosts
# The root file system is mounted rw by the kernel (root=... rw): no fstab entry, so a container's
# systemd has nothing to remount either.
: > /etc/fstab
