#!/usr/bin/env bash
# Measures runnel's footprint on this machine and prints a table:
#   - idle RSS after start, and open file descriptors;
#   - RSS while sustaining 10k and 100k msgs/s (acks=all, 100-byte records; runnel-bench's
#     latency scenario paces the producer), peak over the run;
#   - RSS and fds with 1,000 topics x 1 partition;
#   - start-up time to the first accepted connection with ~1 GB of data on disk (median of 5).
#
# Usage: bash deploy/footprint.sh            (builds the release binaries first)
# Environment: FOOTPRINT_GB (data for the start-up test, default 1), FOOTPRINT_DIR (scratch
# directory, default a temp dir on the same disk as target/).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p runnel-broker -p runnel-tests
RUNNEL=target/release/runnel
BENCH=target/release/runnel-bench
GB=${FOOTPRINT_GB:-1}
SCRATCH=${FOOTPRINT_DIR:-$(mktemp -d -p target footprint.XXXXXX)}
PY=${RUNNEL_PYTHON:-target/pyclients/bin/python}
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$SCRATCH"' EXIT

pid=""
addr=""
start_broker() { # $1 = data dir; sets pid and addr
    local log="$SCRATCH/broker.log"
    : >"$log"
    "$RUNNEL" --listen 127.0.0.1:0 --data-dir "$1" --log-level info 2>"$log" &
    pid=$!
    for _ in $(seq 200); do
        addr=$(grep -o 'listening on [0-9.:]*,' "$log" | awk '{print $3}' | tr -d , || true)
        [ -n "$addr" ] && return 0
        sleep 0.05
    done
    echo "runnel did not start:" >&2; cat "$log" >&2; exit 1
}
stop_broker() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f MB", k / 1024}'; }
fds() { ls "/proc/$1/fd" | wc -l; }

# Peak RSS of $pid while a paced producer runs at $1 msgs/s for 10 s.
rss_at_rate() {
    local peak=0 now
    "$BENCH" --bootstrap "$addr" --scenarios latency --rate "$1" --latency-secs 10 >"$SCRATCH/bench-$1.txt" 2>&1 &
    local bench=$!
    while kill -0 "$bench" 2>/dev/null; do
        now=$(kib "$pid" VmRSS); [ "$now" -gt "$peak" ] && peak=$now
        sleep 0.2
    done
    wait "$bench" || { cat "$SCRATCH/bench-$1.txt" >&2; exit 1; }
    echo "$peak"
}

echo "==> idle and under load"
start_broker "$SCRATCH/load"
sleep 2
idle=$(kib "$pid" VmRSS); idle_fds=$(fds "$pid")
r10k=$(rss_at_rate 10000)
r100k=$(rss_at_rate 100000)
achieved=$(grep -io 'achieved[^|]*\|sent [0-9]* records' "$SCRATCH/bench-100000.txt" | head -1 || true)
stop_broker

echo "==> 1,000 topics"
start_broker "$SCRATCH/topics"
if [ -x "$PY" ]; then
    "$PY" - "$addr" <<'PYEOF'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
futures = admin.create_topics([NewTopic(f"t{i:04d}", 1, 1) for i in range(1000)], request_timeout=60)
for f in futures.values():
    f.result()
PYEOF
else
    for i in $(seq -w 0 999); do echo x | kcat -P -b "$addr" -t "t$i" -q; done
fi
sleep 2
topics_rss=$(kib "$pid" VmRSS); topics_fds=$(fds "$pid")
stop_broker

echo "==> start-up with ${GB} GB on disk"
start_broker "$SCRATCH/big"
# The produce scenario writes the count twice (acks=1, then acks=all).
records=$((GB * 500 * 1000))
"$BENCH" --bootstrap "$addr" --scenarios produce --records "$records" --record-size 1000 --timeout-secs 900 >"$SCRATCH/fill.txt" 2>&1 \
    || { cat "$SCRATCH/fill.txt" >&2; exit 1; }
stop_broker
size=$(du -sh "$SCRATCH/big" | cut -f1)
starts=()
for _ in 1 2 3 4 5; do
    t0=$(date +%s%N)
    "$RUNNEL" --listen 127.0.0.1:0 --data-dir "$SCRATCH/big" --log-level info 2>"$SCRATCH/start.log" &
    pid=$!
    addr=""
    while [ -z "$addr" ]; do
        addr=$(grep -o 'listening on [0-9.:]*,' "$SCRATCH/start.log" | awk '{print $3}' | tr -d , || true)
    done
    # First accepted connection: a TCP connect that succeeds.
    until (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; do :; done
    t1=$(date +%s%N)
    starts+=($(( (t1 - t0) / 1000000 )))
    stop_broker
done
median=$(printf '%s\n' "${starts[@]}" | sort -n | sed -n 3p)

cat <<EOF

| measure | result | target |
|---|---|---|
| idle RSS after start | $(mb "$idle") | < 10 MB |
| open file descriptors, idle | $idle_fds | |
| peak RSS at 10k msgs/s (acks=all, 100 B) | $(mb "$r10k") | < 32 MB |
| peak RSS at 100k msgs/s | $(mb "$r100k") | |
| RSS with 1,000 topics x 1 partition | $(mb "$topics_rss") | |
| open file descriptors with 1,000 topics | $topics_fds | |
| start-up to first accepted connection, $size of data (median of 5) | ${median} ms (runs: ${starts[*]} ms) | < 1 s |
EOF
[ -n "$achieved" ] && echo "100k run: $achieved"
echo "(RSS includes LMDB file pages mapped and touched by the process.)"
