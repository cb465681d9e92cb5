#!/usr/bin/env bash
# Screenshots of each main screen of runnel-admin for the README, taken from the real
# binaries: a `runnel` broker with a little demo data (topics with records, consumer groups,
# one with growing lag, a bridge status record), for the uplinks screen an edge `runnel` with
# three [[uplink]]s (one forwarding to a central `runnel` under a bandwidth cap, one to an
# upstream that is down, one outside its time window), and `runnel-admin` drawing with Mesa's
# software OpenGL (llvmpipe) under Xvfb. Writes docs/screenshots/{connections,brokers,topics,
# groups,messages,bridges,uplinks}.png (1200x800, the app's window size).
#
# Usage: scripts/screenshots.sh [--release] [SCREEN...]
#   --release   build and use the release binaries (default: debug builds, faster to build)
#   SCREEN...   only these screenshots (e.g. `uplinks`); default: all of them
# Environment:
#   RUNNEL_BIN, RUNNEL_ADMIN_BIN   use these binaries instead of building them
#   SETTLE                         seconds to wait before a capture (default 6; the consumer
#                                  groups screen waits 3 times as long to fill its lag chart)
#
# Installs what is missing with apt-get: xvfb, x11-apps (xwd), netpbm (xwdtopnm, pnmtopng),
# libgl1-mesa-dri (llvmpipe) and kcat (to produce and consume the demo data). Each screen is
# chosen with the RUNNEL_ADMIN_* variables that admin-gui/src/main.rs documents.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/docs/screenshots
SETTLE=${SETTLE:-6}
PROFILE=debug
ALL_SHOTS=(connections brokers topics groups messages bridges uplinks)
SHOTS=()
for arg in "$@"; do
    case $arg in
    --release) PROFILE=release ;;
    connections | brokers | topics | groups | messages | bridges | uplinks) SHOTS+=("$arg") ;;
    *)
        echo "usage: $0 [--release] [${ALL_SHOTS[*]}]..." >&2
        exit 2
        ;;
    esac
done
((${#SHOTS[@]})) || SHOTS=("${ALL_SHOTS[@]}")
# wanted NAME...: whether any of these screenshots is to be taken.
wanted() {
    local name shot
    for name in "$@"; do
        for shot in "${SHOTS[@]}"; do
            [[ $name == "$shot" ]] && return 0
        done
    done
    return 1
}

log() { printf '[screenshots] %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
need=()
command -v Xvfb >/dev/null || need+=(xvfb)
command -v xwd >/dev/null || need+=(x11-apps)
{ command -v xwdtopnm && command -v pnmtopng; } >/dev/null || need+=(netpbm)
command -v kcat >/dev/null || need+=(kcat)
dpkg-query -W -f='${Status}' libgl1-mesa-dri 2>/dev/null | grep -q "ok installed" ||
    need+=(libgl1-mesa-dri)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    SUDO=$([[ $(id -u) == 0 ]] || echo sudo)
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# --- binaries ------------------------------------------------------------------------------
if [[ -z ${RUNNEL_BIN:-} || -z ${RUNNEL_ADMIN_BIN:-} ]]; then
    flags=()
    [[ $PROFILE == release ]] && flags+=(--release)
    log "building runnel and runnel-admin ($PROFILE)"
    cargo build "${flags[@]}" -p runnel-broker --bin runnel -p runnel-admin-gui --bin runnel-admin
fi
RUNNEL_BIN=${RUNNEL_BIN:-$ROOT/target/$PROFILE/runnel}
RUNNEL_ADMIN_BIN=${RUNNEL_ADMIN_BIN:-$ROOT/target/$PROFILE/runnel-admin}

# --- cleanup: only the processes this script started, by pid -------------------------------
WORK=$(mktemp -d /tmp/runnel-screenshots.XXXXXX)
PIDS=()
cleanup() {
    # Newest first: the app and the clients before the broker they talk to.
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[i]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- broker --------------------------------------------------------------------------------
BROKER_PID=
BOOTSTRAP=
# launch LOG ARGS...: starts `runnel` on a free port with ARGS, appending to LOG, and sets
# BROKER_PID and BOOTSTRAP (from its `listening on` line).
launch() {
    local log=$1 start
    shift
    start=$(stat -c %s "$log" 2>/dev/null || echo 0)
    NO_COLOR=1 "$RUNNEL_BIN" --listen 127.0.0.1:0 "$@" >>"$log" 2>&1 &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    for _ in $(seq 200); do
        BOOTSTRAP=$(tail -c +"$((start + 1))" "$log" |
            grep -o 'listening on [0-9.]*:[0-9]*' | head -1 | cut -d' ' -f3 || true)
        [[ -n $BOOTSTRAP ]] && return 0
        sleep 0.1
    done
    log "the broker did not start:"
    tail -20 "$log" >&2
    exit 1
}
# start_broker PARTITIONS: (re)starts the broker on $WORK/data with that many partitions for
# auto-created topics.
start_broker() {
    launch "$WORK/runnel.log" --data-dir "$WORK/data" --default-partitions "$1"
}
stop_broker() {
    kill "$BROKER_PID"
    wait "$BROKER_PID" || true
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# produce TOPIC [PARTITION]: stdin lines `key|value`.
produce() {
    kcat -q -b "$BOOTSTRAP" -P -t "$1" -K '|' ${2:+-p "$2"}
}

mkdir -p "$WORK/data" "$OUT"
if wanted connections brokers topics groups messages bridges; then
    # The bridge status topic has one partition, as a bridge creates it; the rest have three.
    start_broker 1
    log "broker at $BOOTSTRAP; writing a bridge status record"
    t=$(now_ms)
    cat <<EOF | tr -d '\n' | { cat; echo; } | produce __runnel_bridge_status 0
truck|{"bridge":"truck","at_ms":$t,"connected":true,"connected_since_ms":$((t - 5400000)),
"reconnects":2,"pending":3,"oldest_pending_ms":$((t - 40)),
"last_error":"MQTT connection lost: connection reset by peer","last_error_ms":$((t - 5402000)),
"ingress":[{"filter":"trucks/+/gps","topic":"gps","received":18234,"written":18231,
"dead_lettered":0,"dropped":0},{"filter":"trucks/+/temperature","topic":"sensors.temperature",
"received":6120,"written":6117,"dead_lettered":3,"dropped":0}],
"egress":[{"topic":"commands","mqtt_topic":"trucks/{key}/commands","delivered":42,"lag":1}]}
EOF
    stop_broker
    start_broker 3
    TRUCK17=$BOOTSTRAP
    log "broker at $BOOTSTRAP; writing demo topics and groups"

    gps_line() {
        local truck=$1 n=$2
        printf 'truck-%02d|{"truck":"truck-%02d","lat":%d.%04d,"lon":%d.%04d,"speed_kmh":%d,"ts":%s}\n' \
            "$truck" "$truck" $((52 + truck % 2)) $(((n * 37 + truck * 911) % 10000)) \
            $((4 + truck % 3)) $(((n * 53 + truck * 577) % 10000)) $(((n * 7 + truck * 13) % 90)) "$(now_ms)"
    }
    for n in $(seq 20); do for truck in $(seq 6); do gps_line "$truck" "$n"; done; done | produce gps
    for n in $(seq 300); do
        printf 'order-%05d|{"order":%d,"customer":"c-%03d","total_eur":%d.%02d}\n' \
            "$n" "$n" $((n % 97)) $((n % 180 + 5)) $((n * 7 % 100))
    done | produce orders
    for n in $(seq 120); do
        printf 'truck-%02d|{"celsius":%d.%d}\n' $((n % 6 + 1)) $((2 + n % 5)) $((n % 10))
    done | produce sensors.temperature
    printf 'truck-03|{"cmd":"reroute","depot":"Utrecht"}\n' | produce commands

    # Consumer groups: `billing` read 120 of the 300 orders and stopped (its lag grows as orders
    # keep coming), `archiver` read all of sensors.temperature, `dashboard` keeps reading gps.
    consume() {
        kcat -q -b "$BOOTSTRAP" -G "$1" -X auto.offset.reset=earliest "${@:3}" "$2" >/dev/null
    }
    consume billing orders -c 120
    consume archiver sensors.temperature -c 120
    kcat -q -b "$BOOTSTRAP" -G dashboard -X auto.offset.reset=earliest \
        -X auto.commit.interval.ms=1000 gps >/dev/null 2>&1 &
    PIDS+=($!)
    # New orders and GPS fixes while the screenshots are taken.
    (
        n=300
        while true; do
            for o in $((n + 1)) $((n + 2)) $((n + 3)); do
                printf 'order-%05d|{"order":%d,"customer":"c-%03d","total_eur":%d.00}\n' \
                    "$o" "$o" $((o % 97)) $((o % 180 + 5))
            done | produce orders
            n=$((n + 3))
            for truck in $(seq 6); do gps_line "$truck" "$n"; done | produce gps
            sleep 1
        done
    ) &
    PIDS+=($!)
fi

if wanted uplinks; then
    # An edge broker (device truck-042) with three uplinks: `central` forwards to a central
    # broker under a bandwidth cap (a backlog draining at a visible rate), `archive` points at
    # an upstream that is down (its backlog stays, with the error), and `bulk` waits for its
    # window (UTC, opening two hours from now).
    launch "$WORK/central.log" --data-dir "$WORK/central"
    CENTRAL=$BOOTSTRAP
    window_start=$((($(date -u +%-H) + 2) % 24))
    window=$(printf '%02d:00-%02d:00' "$window_start" $(((window_start + 4) % 24)))
    cat >"$WORK/edge.toml" <<EOF
[topics]
default_partitions = 3

[[uplink]]
name = "central"
bootstrap = ["$CENTRAL"]
device_id = "truck-042"
topics = ["gps", "sensors.*"]
remote_topic = "trucks.\${device_id}.\${topic}"
compression = "none"
max_batch_bytes = 2048
max_bytes_per_sec = 3000
status_interval_ms = 1000

[[uplink]]
name = "archive"
bootstrap = ["127.0.0.1:1"]
device_id = "truck-042"
topics = ["gps"]
status_interval_ms = 1000
retry_backoff_max_ms = 2000

[[uplink]]
name = "bulk"
bootstrap = ["$CENTRAL"]
device_id = "truck-042"
topics = ["camera.events"]
window = "$window"
status_interval_ms = 1000
EOF
    launch "$WORK/edge.log" --data-dir "$WORK/edge" --config "$WORK/edge.toml"
    EDGE=$BOOTSTRAP
    log "edge at $EDGE, central at $CENTRAL; writing demo records"
    fix() { printf 'truck-042|{"lat":52.%04d,"lon":4.%04d,"speed_kmh":%d}\n' \
        $(($1 * 37 % 10000)) $(($1 * 53 % 10000)) $(($1 * 7 % 90)); }
    for n in $(seq 600); do fix "$n"; done | produce gps
    for n in $(seq 200); do
        printf 'truck-042|{"celsius":%d.%d}\n' $((2 + n % 5)) $((n % 10))
    done | produce sensors.temperature
    for n in $(seq 50); do
        printf 'cam-1|{"event":"door_open","frame":%d}\n' "$n"
    done | produce camera.events
    # A new GPS fix every second, so `central` keeps forwarding.
    (
        n=600
        while true; do
            n=$((n + 1))
            fix "$n" | produce gps
            sleep 1
        done
    ) &
    PIDS+=($!)
fi

# --- display -------------------------------------------------------------------------------
display=99
while [[ -e /tmp/.X$display-lock || -e /tmp/.X11-unix/X$display ]]; do
    display=$((display + 1))
done
Xvfb ":$display" -screen 0 1200x800x24 -nolisten tcp -noreset >"$WORK/xvfb.log" 2>&1 &
XVFB_PID=$!
PIDS+=("$XVFB_PID")
for _ in $(seq 50); do
    [[ -e /tmp/.X11-unix/X$display ]] && break
    sleep 0.1
done
export DISPLAY=:$display LIBGL_ALWAYS_SOFTWARE=1 WINIT_X11_SCALE_FACTOR=1

# shot NAME SCREEN SETTLE [CONNECT]: unless NAME is not wanted, starts runnel-admin on SCREEN
# (RUNNEL_ADMIN_SCREEN) connected to CONNECT (RUNNEL_ADMIN_CONNECT; default: the depot, which
# is offline, and truck-17, the demo broker), waits, captures docs/screenshots/NAME.png and
# stops it.
shot() {
    local name=$1 screen=$2 settle=$3 connect=${4:-"depot=127.0.0.1:1;truck-17=${TRUCK17:-}"} pid
    wanted "$name" || return 0
    log "$name: $screen"
    XDG_DATA_HOME=$WORK/xdg-$name XDG_CONFIG_HOME=$WORK/xdg-$name \
        RUNNEL_ADMIN_CONNECT=$connect \
        RUNNEL_ADMIN_SCREEN=$screen RUNNEL_ADMIN_REFRESH_MS=1000 \
        "$RUNNEL_ADMIN_BIN" >>"$WORK/admin.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    sleep "$settle"
    if ! kill -0 "$pid" 2>/dev/null; then
        log "runnel-admin exited early:"
        tail -20 "$WORK/admin.log" >&2
        kill -0 "$XVFB_PID" 2>/dev/null || log "Xvfb is gone: $(tail -5 "$WORK/xvfb.log")"
        exit 1
    fi
    xwd -root -silent | xwdtopnm 2>/dev/null | pnmtopng -compression 9 >"$OUT/$name.png"
    # The app's own memory with the demo data (the bench reports it with 2,000 topics).
    grep -E '^Vm(RSS|HWM)' "/proc/$pid/status" | tr -s ' \t\n' ' ' | sed "s/^/[screenshots] $name: /" >&2
    echo >&2
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

shot connections connections "$SETTLE"
shot brokers brokers "$SETTLE"
shot topics topics:orders "$SETTLE"
shot groups groups:billing $((SETTLE * 3))
shot messages messages:gps "$SETTLE"
shot bridges bridges "$SETTLE"
shot uplinks uplinks:central "$SETTLE" "truck-042=${EDGE:-}"
ls -l "$OUT"/*.png >&2
