#!/usr/bin/env python3
"""Consumer groups and idempotent producers of Runnel with kafka-python and confluent-kafka.

Usage: python_groups.py BOOTSTRAP        (e.g. 127.0.0.1:9092, a fresh broker started with
                                          short group timings, see tests/tests/python_groups.rs)

The same scenario runs once per client library, each with its own topic and group:
1. an idempotent producer (acks=all) writes RECORDS keyed records to a PARTITIONS-partition topic;
2. two subscribed consumers of one group split the partitions 3 + 3, consume about half the
   records and commit synchronously; one closes (it leaves the group), the other takes over
   every partition, consumes the rest and commits;
3. a fresh member of the group resumes from the committed offsets: nothing is left to read
   until EXTRA more records are produced, and then it reads exactly those;
4. the admin API lists the group, describes it as Stable with one member, returns committed
   offsets equal to the log end offsets, and deletes the group once its member has closed.
Throughout: every record is consumed at least once, a record is consumed again only from its
partition's last committed offset on (the only re-delivery a rebalance may cause), and the
records of each key arrive in the order they were produced.

Exits 0 when every check holds; otherwise prints `MISMATCH: ...` and exits 1 (2 when a client
library is missing). Every wait is bounded, and an alarm ends a run that hangs anyway.
"""

import signal
import sys
import time
import traceback

from python_groups_clients import CLIENTS, TIMEOUT_S, Mismatch, check

SETUP_HINT = "bash scripts/test-all.sh (it creates target/pyclients), or set RUNNEL_PYTHON"
# Backstop for the whole run; the Rust test kills the script a little later still.
OVERALL_TIMEOUT_S = 150
# How long a group may take to settle, or the records to arrive; only turns a hang into a failure.
SETTLE_S = 30
# How long a consumer that should receive nothing keeps polling to show that it does not.
QUIET_S = 2

PARTITIONS = 6
KEYS = 60
RECORDS = 600
EXTRA = 60


def step(client, what):
    print(f"{client}: {what}: ok", flush=True)


def wait_until(condition, poll, what):
    """Calls `poll()` then `condition()` until the condition holds, for at most SETTLE_S."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        poll()
        if condition():
            return
    raise Mismatch(f"{what}: not reached within {SETTLE_S} s")


def record(n):
    """The key and value of the n-th record: KEYS keys, each with its own sequence 0, 1, …"""
    key, seq = f"key-{n % KEYS:02}", n // KEYS
    return key.encode(), f"{key} #{seq}".encode()


def seq_of(value):
    return int(value.decode().rsplit("#", 1)[1])


class Ledger:
    """What was produced, consumed and committed, with the delivery rules checked per record."""

    def __init__(self, lib):
        self.lib = lib
        self.produced = {}  # (partition, offset) -> (key, value)
        self.committed = {}  # partition -> the group's committed offset (as this run set it)
        self.consumed = set()  # (partition, offset) delivered at least once
        self.per_consumer = {}  # consumer -> number of deliveries
        self.redelivered = 0  # deliveries of records consumed before
        self.key_seqs = {}  # key -> sequence numbers of first deliveries, in delivery order

    def acknowledge(self, delivered):
        for partition, offset, key, value in delivered:
            check(
                (partition, offset) not in self.produced,
                f"{self.lib}: offset {partition}/{offset} acknowledged twice",
            )
            self.produced[(partition, offset)] = (key, value)
        # Idempotent, acks=all, one producer: each partition is a gapless run from offset 0,
        # and each key lives in one partition with its records in send order.
        for partition in range(PARTITIONS):
            offsets = sorted(o for p, o in self.produced if p == partition)
            check(offsets, f"{self.lib}: no key landed in partition {partition}")
            check(
                offsets == list(range(len(offsets))),
                f"{self.lib} partition {partition}: acknowledged offsets {offsets[:5]}… "
                f"are not 0..{len(offsets) - 1}",
            )
        by_key = {}
        for (partition, offset), (key, value) in sorted(self.produced.items()):
            by_key.setdefault(key, []).append((partition, seq_of(value)))
        for key, placed in by_key.items():
            check(len({p for p, _ in placed}) == 1, f"{self.lib}: key {key} in partitions {placed}")
            seqs = [s for _, s in placed]
            check(
                seqs == list(range(len(seqs))),
                f"{self.lib}: key {key} stored out of order: {seqs}",
            )

    def deliver(self, consumer, partition, offset, key, value):
        where = (partition, offset)
        check(
            self.produced.get(where) == (key, value),
            f"{self.lib}: {consumer} got {partition}/{offset} = {(key, value)}, "
            f"produced {self.produced.get(where)}",
        )
        self.per_consumer[consumer] = self.per_consumer.get(consumer, 0) + 1
        if where in self.consumed:
            committed = self.committed.get(partition, 0)
            check(
                offset >= committed,
                f"{self.lib}: {consumer} got {partition}/{offset} again, below the committed "
                f"offset {committed} of partition {partition}",
            )
            self.redelivered += 1
            return
        self.consumed.add(where)
        seqs = self.key_seqs.setdefault(key, [])
        check(
            seq_of(value) == len(seqs),
            f"{self.lib}: {consumer} got {value!r} after {key!r} #{seqs[-1] if seqs else None}",
        )
        seqs.append(seq_of(value))

    def commit(self, consumer, offsets):
        for partition, offset in offsets.items():
            check(
                offset >= self.committed.get(partition, 0),
                f"{self.lib}: {consumer} would move partition {partition}'s committed offset "
                f"back from {self.committed.get(partition)} to {offset}",
            )
        consumer.commit(offsets)
        self.committed.update(offsets)

    def missing(self):
        return set(self.produced) - self.consumed

    def log_end(self):
        return {p: 1 + max(o for q, o in self.produced if q == p) for p in range(PARTITIONS)}


def poller(ledger, consumers):
    """A `poll()` for `wait_until`: polls every open consumer once, in turn."""

    def poll():
        for consumer in consumers:
            if not consumer.closed:
                for rec in consumer.poll():
                    ledger.deliver(consumer, *rec)

    return poll


def commit_position(ledger, member):
    """Commits what `member` has read so far, synchronously."""
    offsets = member.positions()
    # Records read before the positions were taken, not yet handed over.
    for rec in member.drain():
        ledger.deliver(member, *rec)
    ledger.commit(member, offsets)


def scenario(lib, bootstrap):
    """Runs steps 1 to 4 of the module docstring with the client library `lib`."""
    name, topic, group = lib.NAME, f"pygroups-{lib.NAME}", f"pygroups-{lib.NAME}-group"
    all_partitions = set(range(PARTITIONS))
    client = lib.Client(bootstrap, topic, group)
    client.create_topic(PARTITIONS)
    ledger = Ledger(name)

    producer = client.producer()
    ledger.acknowledge(producer.send_all([record(n) for n in range(RECORDS)]))
    step(name, f"idempotent producer with acks=all: {RECORDS} keyed records, gapless offsets")

    a, b = client.consumer("member-a"), client.consumer("member-b")
    poll = poller(ledger, [a, b])

    def split_evenly():
        mine, theirs = a.assignment(), b.assignment()
        return len(mine) == len(theirs) == PARTITIONS // 2 and mine | theirs == all_partitions

    wait_until(split_evenly, poll, f"{name}: two members with {PARTITIONS // 2} partitions each")
    step(
        name,
        f"two members: {sorted(a.assignment())} and {sorted(b.assignment())} "
        f"({len(ledger.consumed)} records consumed, {ledger.redelivered} re-deliveries)",
    )
    wait_until(lambda: len(ledger.consumed) >= RECORDS // 2, poll, f"{name}: half the records")
    check(split_evenly(), f"{name}: assignments changed to {a.assignment()} and {b.assignment()}")
    for member in (a, b):
        commit_position(ledger, member)
    committed = sorted(ledger.committed.items())
    step(name, f"{len(ledger.consumed)} records consumed, committed {committed}")

    a.close()
    wait_until(
        lambda: b.assignment() == all_partitions and not ledger.missing(),
        poll,
        f"{name}: the remaining member owns every partition and has consumed every record",
    )
    commit_position(ledger, b)
    check(
        ledger.committed == ledger.log_end(),
        f"{name}: committed {ledger.committed}, log end {ledger.log_end()}",
    )
    b.close()
    step(
        name,
        "after member-a left, member-b took over all partitions and consumed the rest "
        f"({ledger.redelivered} re-deliveries so far, each at or after its partition's "
        "committed offset)",
    )

    c = client.consumer("member-c")
    poll = poller(ledger, [c])
    wait_until(
        lambda: c.assignment() == all_partitions, poll, f"{name}: a fresh member's assignment"
    )
    deadline = time.monotonic() + QUIET_S
    while time.monotonic() < deadline:
        poll()
    check(
        ledger.per_consumer.get(c, 0) == 0,
        f"{name}: a fresh member got {ledger.per_consumer.get(c)} records past the "
        "committed offsets",
    )
    check(c.committed() == ledger.committed, f"{name}: the fresh member sees {c.committed()}")
    ledger.acknowledge(producer.send_all([record(n) for n in range(RECORDS, RECORDS + EXTRA)]))
    wait_until(lambda: not ledger.missing(), poll, f"{name}: the {EXTRA} new records")
    deadline = time.monotonic() + QUIET_S
    while time.monotonic() < deadline:
        poll()
    check(
        ledger.per_consumer.get(c) == EXTRA,
        f"{name}: the fresh member got {ledger.per_consumer.get(c)} records, expected {EXTRA}",
    )
    commit_position(ledger, c)
    producer.close()
    step(name, f"a fresh member resumed at the committed offsets, then got exactly {EXTRA} new")

    end = c.end_offsets()
    check(end == ledger.log_end(), f"{name}: end offsets {end}, acknowledged {ledger.log_end()}")
    admin = client.admin()
    groups = admin.list_groups()
    check(group in groups, f"{name}: list groups returned {sorted(groups)}, without {group}")
    state, members = admin.describe_group(group)
    check(
        (state, members) == ("Stable", 1),
        f"{name}: describe {group}: {state} with {members} members",
    )
    committed = admin.committed(group)
    check(committed == end, f"{name}: admin committed offsets {committed}, log end offsets {end}")
    step(name, f"admin: {group} listed, Stable, 1 member, committed = end {sorted(end.items())}")

    c.close()
    admin.delete_group(group)
    groups = admin.list_groups()
    check(group not in groups, f"{name}: {group} still listed after deleting it: {sorted(groups)}")
    admin.close()
    step(name, f"delete group {group}")


def on_alarm(_signum, _frame):
    raise TimeoutError(f"the checks did not finish within {OVERALL_TIMEOUT_S} s")


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import confluent_kafka
        import kafka
    except ImportError as error:
        print(f"{error} (python {sys.executable}): {SETUP_HINT}", file=sys.stderr)
        return 2
    print(
        f"python {sys.version.split()[0]}, kafka-python {kafka.__version__}, "
        f"confluent-kafka {confluent_kafka.version()} "
        f"(librdkafka {confluent_kafka.libversion()[0]}), "
        f"timeouts {TIMEOUT_S} s per call and {SETTLE_S} s per wait",
        flush=True,
    )
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(OVERALL_TIMEOUT_S)
    lib = None
    try:
        for lib in CLIENTS:
            scenario(lib, argv[1])
    except Mismatch as error:
        print(f"MISMATCH: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a client error or the alarm: a mismatch too, with its trace
        traceback.print_exc()
        print(f"MISMATCH: {lib.NAME}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
    print("all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
