#!/usr/bin/env bash
# Boots the appliance image under QEMU (TCG: no KVM needed) from the unpacked QEMU of
# fetch.sh, with user-mode networking. Used by the boot test (tests/tests/image.rs) and by
# hand:
#
#   boot.sh kernel   direct kernel boot: -kernel out/vmlinuz -initrd out/initrd.img, the
#                    disk attached (so its WEIRCFG partition is found)
#   boot.sh bios     SeaBIOS -> gptmbr -> syslinux -> kernel
#   boot.sh uefi     OVMF -> systemd-boot -> kernel
#
# Options:
#   --image FILE       disk image (default out/weir.img; a .qcow2 works too). Opened with
#                      snapshot=on: the file is never written.
#   --out DIR          where vmlinuz/initrd.img/cmdline are (default: the image's folder)
#   --serial FILE      serial console to FILE (default: this terminal; quit with Ctrl-A X)
#   --monitor PATH     QEMU human monitor on a unix socket (sendkey, system_powerdown, quit)
#   --hostfwd SPEC     e.g. tcp:127.0.0.1:19000-:9000 (repeatable; default forwards
#                      127.0.0.1:9000 and :9100 to the guest's 9000 and 9100)
#   --guestfwd SPEC    e.g. tcp:10.0.2.100:80-cmd:CMD (repeatable)
#   --mem SIZE         guest memory (default 256M; at least 96M)
#   --smp N            vCPUs (default 2)
#   --append ARGS      extra kernel command line (kernel mode only)
#   --vars FILE        uefi: where the writable copy of OVMF's variables goes (default: a
#                      temporary file removed when QEMU exits)
#   -- ARGS            passed to QEMU as they are
#
# The network is `restrict=on`: the guest reaches nothing but the forwards given.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CACHE="${WEIR_IMAGE_CACHE:-$ROOT/.cache/image}"
Q="$CACHE/qemu"

MODE=${1:-}
case "$MODE" in kernel|bios|uefi) shift ;; *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;; esac
IMAGE="$HERE/out/weir.img"
OUT=""
SERIAL=""
MONITOR=""
HOSTFWD=()
GUESTFWD=()
MEM=256M
SMP=2
APPEND=""
VARS=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --image) IMAGE=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --serial) SERIAL=$2; shift 2 ;;
        --monitor) MONITOR=$2; shift 2 ;;
        --hostfwd) HOSTFWD+=("$2"); shift 2 ;;
        --guestfwd) GUESTFWD+=("$2"); shift 2 ;;
        --mem) MEM=$2; shift 2 ;;
        --smp) SMP=$2; shift 2 ;;
        --append) APPEND=$2; shift 2 ;;
        --vars) VARS=$2; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$OUT" ] || OUT=$(dirname "$IMAGE")
[ -f "$IMAGE" ] || { echo "no image at $IMAGE: run firmware-image/build.sh" >&2; exit 1; }
[ -x "$Q/usr/bin/qemu-system-x86_64" ] || { echo "no QEMU in $Q: run firmware-image/fetch.sh" >&2; exit 1; }
[ ${#HOSTFWD[@]} -gt 0 ] || HOSTFWD=(tcp:127.0.0.1:9000-:9000 tcp:127.0.0.1:9100-:9100)

format=raw
case "$IMAGE" in *.qcow2) format=qcow2 ;; esac
netdev="user,id=n0,restrict=on,hostname=weir"
for f in "${HOSTFWD[@]}"; do netdev+=",hostfwd=$f"; done
for f in "${GUESTFWD[@]}"; do netdev+=",guestfwd=$f"; done

args=(
    -nodefaults -no-user-config -display none -vga none
    -L "$Q/usr/share/qemu" -L "$Q/usr/share/seabios"
    -machine q35,accel=tcg -cpu max -smp "$SMP" -m "$MEM"
    -drive "if=none,id=disk0,file=$IMAGE,format=$format,snapshot=on"
    -device "virtio-blk-pci,drive=disk0$([ "$MODE" = kernel ] || echo ,bootindex=0)"
    -netdev "$netdev"
    # No option ROM: the disk is the only boot device.
    -device virtio-net-pci,netdev=n0,romfile=
)
if [ -n "$SERIAL" ]; then
    args+=(-serial "file:$SERIAL")
else
    args+=(-serial mon:stdio)
fi
[ -z "$MONITOR" ] || args+=(-monitor "unix:$MONITOR,server=on,wait=off")
case "$MODE" in
    kernel)
        args+=(-kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.img"
            -append "$(cat "$OUT/cmdline") $APPEND")
        ;;
    bios) ;;
    uefi)
        if [ -n "$VARS" ]; then
            vars=$VARS
        else
            vars=$(mktemp -t weir-ovmf-vars-XXXXXX.fd)
            trap 'rm -f "$vars"' EXIT
        fi
        cp "$Q/usr/share/OVMF/OVMF_VARS_4M.fd" "$vars"
        args+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$Q/usr/share/OVMF/OVMF_CODE_4M.fd"
            -drive "if=pflash,format=raw,unit=1,file=$vars")
        ;;
esac

export LD_LIBRARY_PATH="$Q/usr/lib/x86_64-linux-gnu:$Q/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Accelerators and devices built as modules (accel-tcg-x86_64.so) are loaded from here.
export QEMU_MODULE_DIR="$Q/usr/lib/x86_64-linux-gnu/qemu"
if [ "$MODE" = uefi ] && [ -z "$VARS" ]; then
    # Not exec: the trap removes the temporary copy of the UEFI variables when QEMU exits.
    "$Q/usr/bin/qemu-system-x86_64" "${args[@]}" "${EXTRA[@]}" &
    qemu=$!
    trap 'kill -TERM $qemu 2>/dev/null' TERM INT HUP
    status=0
    while kill -0 "$qemu" 2>/dev/null; do
        wait "$qemu"
        status=$?
    done
    exit "$status"
fi
exec "$Q/usr/bin/qemu-system-x86_64" "${args[@]}" "${EXTRA[@]}"
