#!/usr/bin/env bash
# What makes the local image a bootable disk as well as a folder (issue 20): Debian's cloud kernel, the
# boot loaders for UEFI with Secure Boot (a Shielded VM on GCE) and for BIOS, the serial console, DHCP
# networking on a VM, Google's guest environment for GCE. The disk itself (GPT, ESP, ext4 root) is
# assembled from this rootfs after the build (cli/playground/image/disk.py).
# GCE images built by googlecompute keep their source image's kernel and bootloader: this runs locally only.
set -euo pipefail
# The file provisioner put lib.sh beside the sources.
# shellcheck source=packer/scripts/lib.sh
source "${PLAYGROUND_SRC:-/tmp/playground-src}/lib.sh"

if [[ "${PLAYGROUND_TARGET:-}" != "local" ]]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# linux-image-cloud-amd64: the kernel Debian builds for VMs (virtio, NVMe, gVNIC), signed for Secure Boot;
# grub-pc-bin: GRUB's BIOS modules and grub-mkimage, without grub-pc's debconf step that wants a disk to
# install to; shim-signed and grub-efi-amd64-signed: the UEFI loaders, signed (their scripts install
# nothing where /sys/firmware/efi is absent, as in the build container).
# A mirror may list a security update it does not yet serve (measured: bullseye-security's cloud kernel
# 5.10.262-1 answered 404): then the release's own kernel, said in the build log.
BOOT_PACKAGES="linux-image-cloud-amd64 initramfs-tools grub-pc-bin shim-signed grub-efi-amd64-signed"
# shellcheck disable=SC2086 # a word list
if ! apt_install $BOOT_PACKAGES; then
  codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  echo "15-boot: the newest cloud kernel could not be fetched; installing ${codename}'s own" >&2
  # shellcheck disable=SC2086
  apt_install -t "$codename" $BOOT_PACKAGES
fi

# GRUB for BIOS: the core image is made here, with the image's own GRUB, and written to the disk's BIOS boot
# partition by disk.py. Its prefix names the third GPT partition, where this rootfs lands.
install -d /boot/grub/i386-pc
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst /boot/grub/i386-pc/
cp /usr/lib/grub/i386-pc/boot.img /boot/grub/i386-pc/boot.img
grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img -p '(hd0,gpt3)/boot/grub' \
  biosdisk part_gpt ext2
# GRUB for UEFI: what disk.py copies onto the EFI System Partition. Shim at the removable-media path
# \EFI\BOOT\BOOTX64.EFI (no NVRAM entry is needed, and a new VM has none) loads grubx64.efi beside it; with
# no fbx64.efi there, shim does not detour through its fallback (which would reboot). Debian's signed GRUB
# reads its config from /EFI/debian, its built-in prefix: that finds the root by its label and goes on to
# the one grub.cfg below.
install -d /boot/esp/EFI/BOOT /boot/esp/EFI/debian
cp /usr/lib/shim/shimx64.efi.signed /boot/esp/EFI/BOOT/BOOTX64.EFI
cp /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed /boot/esp/EFI/BOOT/grubx64.efi
cat > /boot/esp/EFI/debian/grub.cfg <<'CFG'
search --no-floppy --label playground-root --set root
set prefix=($root)/boot/grub
configfile $prefix/grub.cfg
CFG
cp /boot/esp/EFI/debian/grub.cfg /boot/esp/EFI/BOOT/grub.cfg
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

# Google's guest environment, for the disk pushed to GCE (image push): google-guest-agent (accounts from
# ssh-keys, OS Login, startup scripts, clock and network set-up) and OS Login's NSS and PAM modules, as
# Debian 12 packages them. They run on GCE only, told by the SMBIOS product name that google-auth and gRPC
# read (/sys/class/dmi/id/product_name begins "Google"; google.auth.compute_engine._metadata
# .detect_gce_residency_linux). Elsewhere (nspawn, QEMU here) the playground agent installs ssh-keys as
# before: the same check is in its bootstrap.ensure_ssh_keys.
# Debian 11's archive (seed-local) has neither package here: each is installed where packaged.
guest=()
for package in google-guest-agent google-compute-engine-oslogin; do
  if apt-cache show "$package" >/dev/null 2>&1; then
    guest+=("$package")
  else
    echo "15-boot: $package is not packaged for this release; the disk goes without it" >&2
  fi
done
if ((${#guest[@]})); then
  apt_install "${guest[@]}"
fi
install -d /usr/lib/playground
cat > /usr/lib/playground/on-gce <<'SH'
#!/bin/sh
# Exit 0 on a Google Compute Engine VM (its SMBIOS product name), 1 elsewhere: an ExecCondition. A
# container on a GCE VM sees the VM's SMBIOS: not there either.
systemd-detect-virt --quiet --container && exit 1
read -r product < /sys/class/dmi/id/product_name 2>/dev/null || exit 1
case "$product" in Google*) exit 0 ;; *) exit 1 ;; esac
SH
chmod 755 /usr/lib/playground/on-gce
for unit in google-guest-agent google-startup-scripts google-shutdown-scripts google-oslogin-cache; do
  [[ -f "/lib/systemd/system/$unit.service" ]] || continue
  install -d "/etc/systemd/system/$unit.service.d"
  printf '[Service]\nExecCondition=/usr/lib/playground/on-gce\n' > "/etc/systemd/system/$unit.service.d/50-playground-gce-only.conf"
done
