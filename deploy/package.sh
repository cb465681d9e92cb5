#!/usr/bin/env bash
# Builds the `runnel` Debian packages:
#
#   deploy/package.sh                 # amd64, arm64 and armhf → target/debian/
#   deploy/package.sh arm64 armhf     # some of them (Debian or Rust names)
#
# Per architecture: deploy/cross-build.sh builds release `runnel` and `runnel-bridge` for the
# Rust target (installing the cross toolchain if needed), then
# `cargo deb -p runnel-broker --target T --no-build` packs them with the metadata of
# [package.metadata.deb] in broker/Cargo.toml: both binaries in /usr/bin, the configs in
# /etc/runnel/ (conffiles), the systemd units, the maintainer scripts of deploy/debian/.
# Each package is then checked with dpkg-deb (files, conffiles, architecture, the binaries'
# ELF machine) and its path and size printed.
#
# cargo-deb is installed with `cargo install cargo-deb --locked` when missing. dpkg-dev
# (dpkg-shlibdeps, for the `$auto` dependencies) comes from apt like the cross toolchains
# (RUNNEL_SKIP_APT=1 skips apt).
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir=target/debian
arches=()
for a in "$@"; do
    case "$a" in
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        amd64 | x86_64 | x86_64-unknown-linux-gnu) arches+=(amd64) ;;
        arm64 | aarch64 | aarch64-unknown-linux-gnu) arches+=(arm64) ;;
        armhf | armv7 | armv7-unknown-linux-gnueabihf) arches+=(armhf) ;;
        *) echo "package.sh: unknown architecture $a (amd64, arm64, armhf)" >&2; exit 2 ;;
    esac
done
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64 armhf)

rust_target() {
    case "$1" in
        amd64) echo x86_64-unknown-linux-gnu ;;
        arm64) echo aarch64-unknown-linux-gnu ;;
        armhf) echo armv7-unknown-linux-gnueabihf ;;
    esac
}
# What `file` says about each architecture's binaries.
elf_pattern() {
    case "$1" in
        amd64) echo 'ELF 64-bit LSB .*x86-64' ;;
        arm64) echo 'ELF 64-bit LSB .*ARM aarch64' ;;
        armhf) echo 'ELF 32-bit LSB .*ARM, EABI5' ;;
    esac
}

if [ "${RUNNEL_SKIP_APT:-0}" != 1 ] &&
    ! dpkg-query -W -f='${Status}' dpkg-dev 2>/dev/null | grep -q "install ok installed"; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "==> apt-get install dpkg-dev"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        dpkg-dev
fi
if ! cargo deb --version >/dev/null 2>&1; then
    echo "==> cargo install cargo-deb --locked"
    cargo install cargo-deb --locked
fi

fail() {
    echo "package.sh: $*" >&2
    exit 1
}

# Checks the package $1 built for Debian architecture $2.
check_deb() {
    local deb=$1 arch=$2 contents conffiles path bin unit unpacked description libc_min needed lib glibc
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] ||
        fail "$deb: Architecture is $(dpkg-deb -f "$deb" Architecture), not $arch"
    contents=$(dpkg-deb -c "$deb" | awk '{ print $NF }' | sed 's|^\./|/|')
    for path in /usr/bin/runnel /usr/bin/runnel-bridge /etc/runnel/runnel.toml \
        /etc/runnel/bridge.toml; do
        grep -qx "$path" <<<"$contents" || fail "$deb lacks $path"
    done
    for unit in runnel.service runnel-bridge.service; do
        grep -Eqx "(/usr)?/lib/systemd/system/$unit" <<<"$contents" ||
            fail "$deb lacks the unit $unit under /lib/systemd/system or /usr/lib/systemd/system"
    done
    conffiles=$(dpkg-deb -I "$deb" conffiles) || fail "$deb has no conffiles"
    for path in /etc/runnel/runnel.toml /etc/runnel/bridge.toml; do
        grep -qx "$path" <<<"$conffiles" || fail "$deb: $path is not a conffile"
    done
    dpkg-deb -I "$deb" postinst | grep -q "adduser --system" ||
        fail "$deb: postinst does not create the service user"
    dpkg-deb -I "$deb" postinst | grep -q "deb-systemd-helper" ||
        fail "$deb: postinst lacks the systemd unit handling (#DEBHELPER#)"
    unpacked=$(mktemp -d)
    dpkg-deb -x "$deb" "$unpacked"
    libc_min=$(dpkg-deb -f "$deb" Depends | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')
    [ -n "$libc_min" ] || fail "$deb: Depends names no minimum libc6 version"
    for bin in runnel runnel-bridge; do
        description=$(file -b "$unpacked/usr/bin/$bin")
        grep -Eq "$(elf_pattern "$arch")" <<<"$description" ||
            fail "$deb: /usr/bin/$bin is not an $arch binary: $description"
        # Depends is written by hand (see broker/Cargo.toml): the binaries must need nothing
        # beyond glibc and libgcc_s (required on every Debian system), at libc_min at most.
        needed=$(readelf -d "$unpacked/usr/bin/$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
        for lib in $needed; do
            case "$lib" in
                libc.so.6 | libm.so.6 | libgcc_s.so.1 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux*) ;;
                *) fail "$deb: /usr/bin/$bin needs $lib, which Depends does not cover" ;;
            esac
        done
        glibc=$(readelf -W --dyn-syms "$unpacked/usr/bin/$bin" | grep -o 'GLIBC_[0-9.]*[0-9]' |
            sed 's/GLIBC_//' | sort -uV | tail -n 1)
        [ "$(printf '%s\n%s\n' "$glibc" "$libc_min" | sort -V | tail -n 1)" = "$libc_min" ] ||
            fail "$deb: /usr/bin/$bin needs GLIBC_$glibc, Depends says libc6 (>= $libc_min)"
    done
    rm -rf "$unpacked"
}

mkdir -p "$out_dir"
summary=()
for arch in "${arches[@]}"; do
    target=$(rust_target "$arch")
    bash deploy/cross-build.sh "$target"
    echo "==> cargo deb -p runnel-broker --target $target --no-build"
    # The release profile strips already; --no-strip spares cargo-deb looking for a cross strip.
    deb=$(cargo deb -p runnel-broker --target "$target" --no-build --no-strip \
        --output "$out_dir/" | tail -n 1)
    [ -f "$deb" ] || fail "cargo deb printed no package path (got: $deb)"
    check_deb "$deb" "$arch"
    size=$(stat -c %s "$deb")
    summary+=("$(printf '%-6s %10s bytes (%s MiB)   %s' "$arch" "$size" \
        "$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')" "$deb")")
done

echo "==> packages (checked with dpkg-deb: binaries, configs as conffiles, systemd units)"
printf '%s\n' "${summary[@]}"
