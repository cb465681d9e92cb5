#!/usr/bin/env bash
# Runs every check and test of the workspace, from a fresh Debian 12 machine with a Rust
# toolchain: installs the system packages the tests need (apt-get, as root or via sudo),
# then formatting, clippy, unit tests and the integration tests against the real `runnel`
# binary with real clients (librdkafka through the rdkafka crate, and kcat).
#
# Environment:
#   RUNNEL_FAULT_ITERATIONS  kill -9 iterations of the fault tests (default 3)
#   RUNNEL_SKIP_APT=1        do not touch system packages
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(kcat build-essential pkg-config zlib1g-dev python3 perl)

install_packages() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    echo "==> installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

[ "${RUNNEL_SKIP_APT:-0}" = 1 ] || install_packages

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> build binaries (the integration tests start target/debug/runnel)"
cargo build --workspace --bins
echo "==> tests"
cargo test --workspace --no-fail-fast
