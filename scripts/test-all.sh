#!/usr/bin/env bash
# Runs every check and test of the workspace, from a fresh Debian 12 machine with a Rust
# toolchain: installs the system packages the tests need (apt-get, as root or via sudo) and
# the Python Kafka clients (pip, into the virtualenv target/pyclients), then formatting,
# clippy, unit tests and the integration tests against the real `runnel` binary with real
# clients (librdkafka through the rdkafka crate, kcat, kafka-python and confluent-kafka).
#
# Environment:
#   RUNNEL_FAULT_ITERATIONS  kill -9 iterations of the fault tests (default 3)
#   RUNNEL_SKIP_APT=1        do not touch system packages
#   RUNNEL_PYTHON            a python that already has tests/compat/requirements.txt installed;
#                            when set, target/pyclients is neither created nor used
set -euo pipefail
cd "$(dirname "$0")/.."

# The cross toolchains and qemu-user are for tests/tests/cross_qemu.rs (deploy/cross-build.sh);
# systemd (systemd-analyze) and file for tests/tests/deploy_files.rs and the cross build;
# socat is the TLS terminator in front of the broker in tests/tests/client_tls.rs and uplink.rs;
# ca-certificates is the system trust store deploy/examples/truck-gps.toml's uplink relies on;
# libssl-dev is OpenSSL's headers and pkg-config file for openssl-sys: the tests crate builds
# librdkafka with the rdkafka crate's `ssl` feature (linked to the system OpenSSL, not
# vendored) for the SSL, SASL_SSL and SCRAM tests and runnel-bench's security scenario;
# iproute2 (`ip netns`, veth pairs, a bridge) puts each node of tests/tests/cluster*.rs in a
# network namespace of its own, so a node can be cut off instead of only killed.
packages=(iproute2 kcat build-essential pkg-config zlib1g-dev libssl-dev python3 python3-venv perl mosquitto openssl socat ca-certificates
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
    qemu-user systemd file)

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

# The Raspberry Pi targets of tests/tests/cross_qemu.rs; a no-op once they are installed.
if command -v rustup >/dev/null; then
    rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
fi

# kafka-python and confluent-kafka for tests/tests/python_clients.rs and python_groups.rs, pinned
# in the requirements file, in a virtualenv of their own (tests/src/harness/python.rs finds it
# there). pip runs only when a pin is not installed at its version, so reruns take no network
# and no time.
pyclients=target/pyclients
requirements=tests/compat/requirements.txt

pins_installed() {
    "$pyclients/bin/python" - "$requirements" 2>/dev/null <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

for line in open(sys.argv[1]):
    pin = line.split("#")[0].strip()
    if pin:
        name, _, wanted = pin.partition("==")
        try:
            if version(name) != wanted:
                sys.exit(1)
        except PackageNotFoundError:
            sys.exit(1)
PY
}

setup_pyclients() {
    pins_installed && return 0
    # A venv without a working pip (interrupted, or its interpreter gone) is made anew.
    if ! "$pyclients/bin/python" -m pip --version >/dev/null 2>&1; then
        echo "==> python3 -m venv $pyclients"
        rm -rf "$pyclients"
        mkdir -p "$(dirname "$pyclients")"
        python3 -m venv "$pyclients"
    fi
    echo "==> pip install -r $requirements into $pyclients"
    "$pyclients/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$requirements"
    pins_installed || { echo "pip did not install the pins of $requirements" >&2; exit 1; }
}

[ -n "${RUNNEL_PYTHON:-}" ] || setup_pyclients

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> build binaries (the integration tests start target/debug/runnel)"
cargo build --workspace --bins
echo "==> tests"
cargo test --workspace --no-fail-fast
