#!/usr/bin/env bash
# Builds the weir appliance image: a static (musl) weir, busybox, kernel modules and CA roots
# in an initramfs; one GPT disk that boots on BIOS (syslinux, gptmbr) and UEFI (systemd-boot):
#
#   out/weir.img      raw disk (dd it to a USB stick / disk, or boot it in a VM)
#   out/weir.qcow2    the same disk for hypervisors
#   out/vmlinuz, out/initrd.img, out/cmdline   for direct kernel boot (-kernel/-initrd)
#   out/manifest.txt  inputs (package versions, weir commit) and SHA-256 of the outputs
#
# Disk layout (512-byte sectors, fixed GUIDs):
#   p1  1 MiB..65 MiB   EFI System, FAT32 "WEIRBOOT", legacy-BIOS-bootable: syslinux
#                       (/syslinux), systemd-boot (/EFI/BOOT/BOOTX64.EFI), vmlinuz, initrd.img
#   p2  65 MiB..73 MiB  Microsoft basic data, FAT "WEIRCFG": weir.toml, network.conf,
#                       README.txt — mounted read-only at /etc/weir
#
# Reproducible bit for bit from the same inputs: every timestamp is SOURCE_DATE_EPOCH (the
# weir commit's date unless set), FAT serials and GPT GUIDs are constants, the initramfs is a
# sorted cpio with owner root, compressed single-threaded. `--check` builds twice into two
# folders and compares the SHA-256 of every output.
#
# Usage: build.sh [--flavour cloud|generic] [--weir PATH] [--out DIR] [--check]
#   --weir PATH   use this static x86_64 weir binary instead of building one
#                 (default: cargo build --profile ci --target x86_64-unknown-linux-musl -p weir)
#   --out DIR     output folder (default firmware-image/out; generic: firmware-image/out/generic)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CACHE="${WEIR_IMAGE_CACHE:-$ROOT/.cache/image}"
FLAVOUR=cloud
WEIR=""
OUT=""
CHECK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --flavour) FLAVOUR=$2; shift 2 ;;
        --weir) WEIR=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --check) CHECK=1; shift ;;
        *) echo "usage: $0 [--flavour cloud|generic] [--weir PATH] [--out DIR] [--check]" >&2; exit 2 ;;
    esac
done
case "$FLAVOUR" in cloud|generic) ;; *) echo "unknown flavour $FLAVOUR" >&2; exit 2 ;; esac
if [ -z "$OUT" ]; then
    OUT="$HERE/out"
    [ "$FLAVOUR" = cloud ] || OUT="$HERE/out/$FLAVOUR"
fi

t_start=$SECONDS
step() { echo "==> $* (+$((SECONDS - t_start))s)"; }

# --- inputs ------------------------------------------------------------------------------------
"$HERE/fetch.sh" --flavour "$FLAVOUR" --no-qemu
if [ -z "$WEIR" ]; then
    step "weir (static, musl)"
    rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl ||
        rustup target add x86_64-unknown-linux-musl
    # jemalloc (tikv-jemallocator) is C: build it with musl's gcc wrapper (apt musl-tools).
    (cd "$ROOT" && CC_x86_64_unknown_linux_musl=musl-gcc \
        cargo build --profile ci --locked --target x86_64-unknown-linux-musl -p weir)
    WEIR="$ROOT/target/x86_64-unknown-linux-musl/ci/weir"
fi
[ -x "$WEIR" ] || { echo "no weir binary at $WEIR" >&2; exit 1; }
if readelf -l "$WEIR" | grep -q 'Requesting program interpreter'; then
    echo "$WEIR is dynamically linked; the appliance needs a static (musl) build" >&2
    exit 1
fi

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 1700000000)
fi
export SOURCE_DATE_EPOCH
export TZ=UTC LC_ALL=C
WEIR_COMMIT=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)

KROOT="$CACHE/kernel-$FLAVOUR"
KVER=$(ls "$KROOT/lib/modules")
BUSYBOX="$CACHE/busybox/bin/busybox"
SDBOOT="$CACHE/sdboot/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
GPTMBR=/usr/lib/syslinux/mbr/gptmbr.bin
for f in "$KROOT/boot/vmlinuz-$KVER" "$BUSYBOX" "$SDBOOT" "$GPTMBR"; do
    [ -f "$f" ] || { echo "missing $f (run scripts/image-deps.sh)" >&2; exit 1; }
done
for t in sfdisk mkfs.vfat mcopy mmd syslinux cpio zstd qemu-img; do
    command -v "$t" >/dev/null || { echo "missing tool $t (run scripts/image-deps.sh)" >&2; exit 1; }
done

# Kernel command line of every boot path. `quiet`: kernel messages cost boot time on an
# emulated serial port; init's own lines and weir's log still reach the console.
CMDLINE="console=tty0 console=ttyS0,115200n8 quiet panic=10"

# build_once DIR: builds every output into DIR.
build_once() {
    local out=$1
    local work="$out/.work"
    rm -rf "$work"
    mkdir -p "$work" "$out"

    # --- initramfs ---------------------------------------------------------------------------
    step "initramfs ($FLAVOUR, kernel $KVER)"
    local r="$work/root"
    mkdir -p "$r"/{bin,dev,proc,sys,run,tmp,etc/ssl/certs,usr/share/weir,lib/modules/"$KVER"}
    ln -s bin "$r/sbin"
    ln -s ../bin "$r/usr/bin"
    ln -s ../bin "$r/usr/sbin"
    cp -a "$HERE/rootfs/." "$r/"
    install -m 0755 "$BUSYBOX" "$r/bin/busybox"
    local applet
    for applet in $("$BUSYBOX" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$r/bin/$applet"
    done
    install -m 0755 "$WEIR" "$r/bin/weir"
    strip "$r/bin/weir"
    ln -s /run/resolv.conf "$r/etc/resolv.conf"
    echo "weir $WEIR_COMMIT ($FLAVOUR)" >"$r/etc/weir-release"
    # Mozilla's roots as Debian ships them; update-ca-certificates concatenates them the
    # same way (sorted by name).
    find "$CACHE/ca/usr/share/ca-certificates/mozilla" -name '*.crt' | sort | xargs cat \
        >"$r/etc/ssl/certs/ca-certificates.crt"
    printf 'root:x:0:0:root:/:/bin/sh\nweir:x:100:100:weir:/:/bin/false\n' >"$r/etc/passwd"
    printf 'root:x:0:\nweir:x:100:\n' >"$r/etc/group"

    # Modules of the flavour plus their dependencies (modules.dep of the whole kernel).
    local mdir="$KROOT/lib/modules/$KVER"
    [ -f "$mdir/modules.dep" ] || "$BUSYBOX" depmod -b "$KROOT" "$KVER"
    local names=("$HERE/modules.cloud")
    [ "$FLAVOUR" = generic ] && names+=("$HERE/modules.generic")
    local wanted=() m path missing=()
    for m in $(grep -hv '^#' "${names[@]}" | sort -u); do
        path=$(awk -F: -v a="/$m.ko" -v b="/${m//-/_}.ko" -v c="/${m//_/-}.ko" \
            'index($1, a) || index($1, b) || index($1, c) { print $1; exit }' "$mdir/modules.dep")
        if [ -z "$path" ]; then
            if grep -qE "/(${m//-/_}|${m//_/-})\.ko$" "$mdir/modules.builtin"; then continue; fi
            missing+=("$m")
            continue
        fi
        wanted+=("$path")
        # shellcheck disable=SC2207
        wanted+=($(awk -F': *' -v p="$path" '$1 == p { print $2 }' "$mdir/modules.dep"))
    done
    [ ${#missing[@]} -eq 0 ] || echo "    not in $KVER (skipped): ${missing[*]}"
    local count=0
    for path in $(printf '%s\n' "${wanted[@]}" | sort -u); do
        mkdir -p "$r/lib/modules/$KVER/$(dirname "$path")"
        cp "$mdir/$path" "$r/lib/modules/$KVER/$path"
        count=$((count + 1))
    done
    cp "$mdir/modules.builtin" "$mdir/modules.order" "$r/lib/modules/$KVER/"
    "$BUSYBOX" depmod -b "$r" "$KVER"
    echo "    $count modules"

    # Reproducible archive: fixed mtimes, sorted names, owner root, newc format.
    find "$r" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    (cd "$r" && find . -mindepth 1 | sort |
        cpio --quiet -o -H newc -R 0:0 --reproducible) |
        zstd -q -19 -T1 >"$work/initrd.img"
    cp "$KROOT/boot/vmlinuz-$KVER" "$work/vmlinuz"

    # --- boot partition --------------------------------------------------------------------------
    step "boot partition"
    cat >"$work/syslinux.cfg" <<EOF
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT weir
LABEL weir
    LINUX /vmlinuz
    INITRD /initrd.img
    APPEND $CMDLINE
EOF
    cat >"$work/loader.conf" <<EOF
default weir.conf
timeout 0
editor no
EOF
    cat >"$work/weir.conf" <<EOF
title weir
linux /vmlinuz
initrd /initrd.img
options $CMDLINE
EOF
    local boot="$work/boot.fat"
    rm -f "$boot"
    mkfs.vfat -C -F 32 -S 512 -s 1 --invariant -n WEIRBOOT -i 57454952 "$boot" $((64 * 1024)) >/dev/null
    export MTOOLS_SKIP_CHECK=1
    mmd -i "$boot" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries ::/syslinux
    find "$work" -maxdepth 1 -type f -exec touch -d "@$SOURCE_DATE_EPOCH" {} +
    cp "$SDBOOT" "$work/BOOTX64.EFI"
    touch -d "@$SOURCE_DATE_EPOCH" "$work/BOOTX64.EFI"
    mcopy -m -i "$boot" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
    mcopy -m -i "$boot" "$work/loader.conf" ::/loader/loader.conf
    mcopy -m -i "$boot" "$work/weir.conf" ::/loader/entries/weir.conf
    mcopy -m -i "$boot" "$work/syslinux.cfg" ::/syslinux/syslinux.cfg
    mcopy -m -i "$boot" "$work/vmlinuz" ::/vmlinuz
    mcopy -m -i "$boot" "$work/initrd.img" ::/initrd.img
    syslinux --install --directory /syslinux "$boot"

    # --- config partition ------------------------------------------------------------------------
    step "config partition"
    local cfg="$work/cfg.fat"
    rm -f "$cfg"
    mkfs.vfat -C --invariant -n WEIRCFG -i 57454943 "$cfg" $((8 * 1024)) >/dev/null
    local c="$work/cfg"
    mkdir -p "$c"
    cp "$HERE/rootfs/usr/share/weir/default.toml" "$c/weir.toml"
    cp "$HERE/config/network.conf" "$HERE/config/README.txt" "$c/"
    # Users open these files on Windows too: CRLF line ends in README.txt only (weir.toml and
    # network.conf are read with either).
    sed -i 's/$/\r/' "$c/README.txt"
    touch -d "@$SOURCE_DATE_EPOCH" "$c"/*
    mcopy -m -i "$cfg" "$c/weir.toml" "$c/network.conf" "$c/README.txt" ::/

    # --- disk --------------------------------------------------------------------------------------
    step "disk"
    local img="$work/weir.img"
    rm -f "$img"
    truncate -s $((74 * 1024 * 1024)) "$img"
    sfdisk --quiet "$img" <<EOF
label: gpt
label-id: 57454952-0000-4000-8000-000000000000
unit: sectors
first-lba: 2048
start=2048, size=$((64 * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=57454952-0000-4000-8000-000000000001, name="WEIRBOOT", attrs="LegacyBIOSBootable"
start=$((65 * 2048)), size=$((8 * 2048)), type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=57454952-0000-4000-8000-000000000002, name="WEIRCFG"
EOF
    dd if="$boot" of="$img" bs=1M seek=1 conv=notrunc,sparse status=none
    dd if="$cfg" of="$img" bs=1M seek=65 conv=notrunc,sparse status=none
    # BIOS: gptmbr.bin (boot code only, the protective MBR's partition table stays) chains to
    # the partition marked legacy-BIOS-bootable, where syslinux lives.
    dd if="$GPTMBR" of="$img" bs=440 count=1 conv=notrunc status=none
    qemu-img convert -f raw -O qcow2 "$img" "$work/weir.qcow2"

    mv "$work/weir.img" "$work/weir.qcow2" "$work/vmlinuz" "$work/initrd.img" "$out/"
    echo "$CMDLINE" >"$out/cmdline"
    {
        echo "weir $WEIR_COMMIT, flavour $FLAVOUR, kernel $KVER, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
        echo "weir.toml offset (bytes) in weir.img: $((65 * 1024 * 1024))"
        echo "packages:"
        sed 's/^/  /' "$CACHE/versions-$FLAVOUR.txt"
        echo "sha256:"
        (cd "$out" && sha256sum weir.img weir.qcow2 vmlinuz initrd.img | sed 's/^/  /')
        echo "sizes (bytes, allocated KiB):"
        (cd "$out" && for f in weir.img weir.qcow2 vmlinuz initrd.img; do
            echo "  $f $(stat -c %s "$f") $(du -k "$f" | cut -f1)"
        done)
    } >"$out/manifest.txt"
    rm -rf "$work"
}

if [ "$CHECK" = 1 ]; then
    build_once "$OUT"
    second=$(mktemp -d -t weir-image-check-XXXXXX)
    trap 'rm -rf "$second"' EXIT
    build_once "$second"
    step "reproducibility"
    a=$(cd "$OUT" && sha256sum weir.img weir.qcow2 vmlinuz initrd.img)
    b=$(cd "$second" && sha256sum weir.img weir.qcow2 vmlinuz initrd.img)
    if [ "$a" != "$b" ]; then
        echo "NOT reproducible:" >&2
        diff <(echo "$a") <(echo "$b") >&2 || true
        exit 1
    fi
    echo "    two builds, identical outputs:"
    echo "$a" | sed 's/^/    /'
else
    build_once "$OUT"
fi
step "done: $OUT"
sed -n '/^sizes/,$p' "$OUT/manifest.txt"
