#!/usr/bin/env bash
# Fetches what the image is made of and what boots it in tests, as Debian packages
# (`apt-get download`, no installation), unpacked with `dpkg-deb -x` into the git-ignored
# cache folder:
#
#   kernel-<flavour>/  linux-image-<flavour> (cloud: linux-image-cloud-amd64, generic:
#                      linux-image-amd64): vmlinuz and modules
#   busybox/           busybox-static: the whole userland of the appliance
#   sdboot/            systemd-boot-efi: the UEFI boot loader
#   ca/                ca-certificates: Mozilla's CA roots, bundled for upstream TLS
#   qemu/              qemu-system-x86 with the libraries this machine lacks, seabios, OVMF:
#                      the boot tests run QEMU from here (never `apt-get install
#                      qemu-system-x86`: it would replace the machine's newer qemu-utils)
#
# Usage: fetch.sh [--flavour cloud|generic] [--no-qemu]
# Idempotent: a package already downloaded and unpacked costs a directory listing. The
# versions used are written to <cache>/versions-<flavour>.txt and into the image manifest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${WEIR_IMAGE_CACHE:-$ROOT/.cache/image}"
FLAVOUR=cloud
WITH_QEMU=1
while [ $# -gt 0 ]; do
    case "$1" in
        --flavour) FLAVOUR=$2; shift 2 ;;
        --no-qemu) WITH_QEMU=0; shift ;;
        *) echo "usage: $0 [--flavour cloud|generic] [--no-qemu]" >&2; exit 2 ;;
    esac
done
case "$FLAVOUR" in
    cloud) KERNEL_META=linux-image-cloud-amd64 ;;
    generic) KERNEL_META=linux-image-amd64 ;;
    *) echo "unknown flavour $FLAVOUR (cloud or generic)" >&2; exit 2 ;;
esac

DEBS="$CACHE/debs"
mkdir -p "$DEBS"

# apt_download PKG...: downloads the candidate version of each package not yet in $DEBS.
apt_download() {
    local missing=() p
    for p in "$@"; do
        compgen -G "$DEBS/${p}_*.deb" >/dev/null || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "    downloading: ${missing[*]}"
    # apt-get download writes into the current folder; as root it warns that the _apt user
    # cannot write there, which is harmless.
    if ! (cd "$DEBS" && apt-get download -qq "${missing[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed'); then
        :
    fi
    for p in "${missing[@]}"; do
        if ! compgen -G "$DEBS/${p}_*.deb" >/dev/null; then
            # A fresh machine may have no package lists yet.
            apt-get update -qq
            (cd "$DEBS" && apt-get download -qq "$p" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
            compgen -G "$DEBS/${p}_*.deb" >/dev/null || { echo "cannot download $p" >&2; exit 1; }
        fi
    done
}

# unpack DIR PKG...: unpacks the packages into DIR unless DIR already holds exactly them.
unpack() {
    local dir=$1; shift
    local want p f
    want=$(for p in "$@"; do basename "$(compgen -G "$DEBS/${p}_*.deb" | sort | tail -n1)"; done)
    if [ -f "$dir/.debs" ] && [ "$(cat "$dir/.debs")" = "$want" ]; then
        return 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    for f in $want; do
        dpkg-deb -x "$DEBS/$f" "$dir"
    done
    echo "$want" >"$dir/.debs"
}

t0=$SECONDS
echo "==> image dependencies ($FLAVOUR) in $CACHE"

# The meta package names the versioned kernel package (e.g. linux-image-6.1.0-57-cloud-amd64).
KERNEL_PKG=$(apt-cache depends "$KERNEL_META" 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
if [ -z "$KERNEL_PKG" ]; then
    apt-get update -qq
    KERNEL_PKG=$(apt-cache depends "$KERNEL_META" | awk '/Depends: linux-image-/ { print $2; exit }')
fi
[ -n "$KERNEL_PKG" ] || { echo "cannot resolve $KERNEL_META" >&2; exit 1; }

apt_download "$KERNEL_PKG" busybox-static systemd-boot-efi ca-certificates
unpack "$CACHE/kernel-$FLAVOUR" "$KERNEL_PKG"
unpack "$CACHE/busybox" busybox-static
unpack "$CACHE/sdboot" systemd-boot-efi
unpack "$CACHE/ca" ca-certificates

if [ "$WITH_QEMU" = 1 ]; then
    # qemu-system-x86 and the libraries of its Depends that a Debian 12 machine with
    # qemu-utils lacks (found with ldd), the BIOS (seabios) and UEFI (ovmf) firmware.
    QEMU_PKGS=(qemu-system-x86 qemu-system-common qemu-system-data seabios ovmf libcapstone4 libfdt1 libpmem1
        librdmacm1 libibverbs1 libslirp0 libvdeplug2 libndctl6 libdaxctl1 libnl-3-200
        libnl-route-3-200)
    apt_download "${QEMU_PKGS[@]}"
    unpack "$CACHE/qemu" "${QEMU_PKGS[@]}"
    Q="$CACHE/qemu"
    missing=$(LD_LIBRARY_PATH="$Q/usr/lib/x86_64-linux-gnu:$Q/lib/x86_64-linux-gnu" \
        ldd "$Q/usr/bin/qemu-system-x86_64" | grep 'not found' || true)
    if [ -n "$missing" ]; then
        echo "qemu-system-x86_64 from $Q misses libraries:" >&2
        echo "$missing" >&2
        exit 1
    fi
fi

{
    for d in "kernel-$FLAVOUR" busybox sdboot ca; do cat "$CACHE/$d/.debs"; done
} >"$CACHE/versions-$FLAVOUR.txt"
echo "    $(tr '\n' ' ' <"$CACHE/versions-$FLAVOUR.txt")"
echo "    done in $((SECONDS - t0))s"
