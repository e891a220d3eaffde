#!/usr/bin/env bash
# Installs what building and boot-testing the appliance image needs, idempotently:
#
#   apt      mtools, dosfstools (mkfs.vfat), fdisk (sfdisk), syslinux + syslinux-common
#            (installer, gptmbr.bin), cpio, zstd, musl-tools (musl-gcc: jemalloc's C build
#            for the static weir), qemu-utils (qemu-img) — only those missing
#   rustup   the x86_64-unknown-linux-musl target
#   .cache/image  kernel, busybox, systemd-boot, CA roots and an unpacked QEMU with SeaBIOS
#            and OVMF, as Debian packages (firmware-image/fetch.sh; never installed:
#            `apt-get install qemu-system-x86` would replace a newer qemu-utils)
#
# Usage: scripts/image-deps.sh [--flavour cloud|generic]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
t0=$SECONDS

echo "==> apt packages (image)"
need=()
command -v mcopy >/dev/null || need+=(mtools)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v syslinux >/dev/null || need+=(syslinux)
[ -f /usr/lib/syslinux/mbr/gptmbr.bin ] || need+=(syslinux-common)
command -v cpio >/dev/null || need+=(cpio)
command -v zstd >/dev/null || need+=(zstd)
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v qemu-img >/dev/null || need+=(qemu-utils)
if [ ${#need[@]} -gt 0 ]; then
    echo "    installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "==> rust target x86_64-unknown-linux-musl"
rustup target list --installed | grep -qx x86_64-unknown-linux-musl ||
    (cd "$ROOT" && rustup target add x86_64-unknown-linux-musl)

"$ROOT/firmware-image/fetch.sh" "$@"
echo "==> image deps done in $((SECONDS - t0))s"
