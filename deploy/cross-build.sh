#!/usr/bin/env bash
# Builds `runnel` and `runnel-bridge` for the Raspberry Pi (and, on request, for the host):
#
#   deploy/cross-build.sh                          # release, aarch64 + armv7
#   deploy/cross-build.sh --profile cross-test armv7-unknown-linux-gnueabihf
#   deploy/cross-build.sh x86_64-unknown-linux-gnu # the host triple, e.g. for deploy/package.sh
#
# Targets: aarch64-unknown-linux-gnu (Pi 3/4/5 with a 64-bit OS; alias arm64, aarch64),
# armv7-unknown-linux-gnueabihf (Pi 2/3/4 with a 32-bit OS; alias armhf, armv7) and
# x86_64-unknown-linux-gnu (alias amd64). Pi Zero / Pi 1 are ARMv6: not supported here.
#
# What it does, per run:
# 1. installs the Debian cross toolchains and qemu-user that are missing (apt-get, as root or
#    via sudo; RUNNEL_SKIP_APT=1 skips this) and `rustup target add`s the missing targets;
# 2. `cargo build --target T -p runnel-broker -p runnel-bridge` with the cross linker and
#    CC_/AR_ for T in the environment, so that the C code of the dependencies (LMDB through
#    lmdb-master-sys, zstd, lz4, ring) is compiled for T: the `cc` crate silently falls back
#    to the host compiler otherwise, and linking then fails with "file in wrong format". The
#    settings live here, not in a .cargo/config.toml, so host builds stay untouched;
# 3. checks with `file` that each binary is built for T and prints its stripped size.
#
# Binaries land in ${CARGO_TARGET_DIR:-target}/T/<profile dir>/ (`release`, `debug` for the
# dev profile, else the profile's name). Run an ARM binary on this machine with
#   qemu-aarch64 -L /usr/aarch64-linux-gnu   target/aarch64-unknown-linux-gnu/release/runnel
#   qemu-arm     -L /usr/arm-linux-gnueabihf target/armv7-unknown-linux-gnueabihf/release/runnel
# (cargo's runner is set to these, so `cargo run/test --target T` works from this script's
# environment as well).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

profile=release
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) [ $# -ge 2 ] || usage 2; profile=$2; shift 2 ;;
        --profile=*) profile=${1#--profile=}; shift ;;
        --release) profile=release; shift ;;
        -h | --help) usage 0 ;;
        -*) echo "cross-build.sh: unknown option $1" >&2; usage 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

host=$(rustc -vV | sed -n 's/^host: //p')

# Per target: the GNU triple of its toolchain, its Debian packages, what `file` says about
# its binaries, and the qemu-user command that runs them.
canonical() {
    case "$1" in
        aarch64 | arm64 | aarch64-unknown-linux-gnu) echo aarch64-unknown-linux-gnu ;;
        armv7 | armhf | armv7-unknown-linux-gnueabihf) echo armv7-unknown-linux-gnueabihf ;;
        x86_64 | amd64 | x86_64-unknown-linux-gnu) echo x86_64-unknown-linux-gnu ;;
        *) echo "cross-build.sh: unsupported target $1" >&2; return 2 ;;
    esac
}
gnu_triple() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
        armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
        x86_64-unknown-linux-gnu) echo x86_64-linux-gnu ;;
    esac
}
apt_packages() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user ;;
        armv7-unknown-linux-gnueabihf) echo gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user ;;
        x86_64-unknown-linux-gnu) echo gcc libc6-dev ;;
    esac
}
file_pattern() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo 'ELF 64-bit LSB .*ARM aarch64' ;;
        armv7-unknown-linux-gnueabihf) echo 'ELF 32-bit LSB .*ARM, EABI5' ;;
        x86_64-unknown-linux-gnu) echo 'ELF 64-bit LSB .*x86-64' ;;
    esac
}
qemu_runner() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo "qemu-aarch64 -L /usr/aarch64-linux-gnu" ;;
        armv7-unknown-linux-gnueabihf) echo "qemu-arm -L /usr/arm-linux-gnueabihf" ;;
    esac
}

for i in "${!targets[@]}"; do
    targets[i]=$(canonical "${targets[i]}")
done

install_packages() {
    local wanted=(file) missing=() p t
    for t in "${targets[@]}"; do
        # shellcheck disable=SC2207 # the package names have no spaces
        [ "$t" = "$host" ] || wanted+=($(apt_packages "$t"))
    done
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            echo "cross-build.sh: need root or sudo to install: ${missing[*]}" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    # `sort -u`: qemu-user is wanted by both ARM targets.
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "==> apt-get install ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
}

add_rust_targets() {
    local installed missing=() t
    if ! command -v rustup >/dev/null; then
        for t in "${targets[@]}"; do
            [ -d "$(rustc --print sysroot)/lib/rustlib/$t/lib" ] || {
                echo "cross-build.sh: the Rust standard library for $t is missing and there is" \
                    "no rustup to add it" >&2
                exit 1
            }
        done
        return 0
    fi
    installed=$(rustup target list --installed)
    for t in "${targets[@]}"; do
        grep -qx "$t" <<<"$installed" || missing+=("$t")
    done
    [ ${#missing[@]} -eq 0 ] || rustup target add "${missing[@]}"
}

# Exports the linker, C compiler, archiver and runner for target $1 (no-op for the host).
cross_env() {
    local t=$1 gnu upper lower
    [ "$t" = "$host" ] && return 0
    gnu=$(gnu_triple "$t")
    upper=$(tr 'a-z-' 'A-Z_' <<<"$t")
    lower=${t//-/_}
    for tool in gcc ar; do
        command -v "$gnu-$tool" >/dev/null || {
            echo "cross-build.sh: $gnu-$tool not found (apt packages: $(apt_packages "$t"))" >&2
            exit 1
        }
    done
    export "CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
    export "CARGO_TARGET_${upper}_RUNNER=$(qemu_runner "$t")"
    export "CC_${lower}=$gnu-gcc"
    export "AR_${lower}=$gnu-ar"
    # Only the C compilers above: no host CFLAGS (e.g. -march=native) for a foreign target.
    export "CFLAGS_${lower}="
}

profile_dir() {
    case "$1" in
        dev | test) echo debug ;;
        release | bench) echo release ;;
        *) echo "$1" ;;
    esac
}

[ "${RUNNEL_SKIP_APT:-0}" = 1 ] || install_packages
add_rust_targets

target_dir=${CARGO_TARGET_DIR:-target}
summary=()
for t in "${targets[@]}"; do
    echo "==> cargo build --profile $profile --target $t -p runnel-broker -p runnel-bridge"
    (
        cross_env "$t"
        cargo build --profile "$profile" --target "$t" -p runnel-broker -p runnel-bridge
    )
    out="$target_dir/$t/$(profile_dir "$profile")"
    strip_tool="strip"
    [ "$t" = "$host" ] || strip_tool="$(gnu_triple "$t")-strip"
    for bin in runnel runnel-bridge; do
        path="$out/$bin"
        description=$(file -b "$path")
        if ! grep -Eq "$(file_pattern "$t")" <<<"$description"; then
            echo "cross-build.sh: $path is not a $t binary: $description" >&2
            exit 1
        fi
        # The size a `strip`ped copy has (the release profile strips already; others do not).
        stripped=$(mktemp)
        "$strip_tool" -o "$stripped" "$path"
        size=$(stat -c %s "$stripped")
        rm -f "$stripped"
        summary+=("$(printf '%-32s %-14s %10s bytes (%s MiB) stripped   %s' "$t" "$bin" "$size" \
            "$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')" "$path")")
    done
done

echo "==> built ($profile profile)"
printf '%s\n' "${summary[@]}"
