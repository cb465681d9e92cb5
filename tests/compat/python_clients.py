#!/usr/bin/env python3
"""Runnel against the two main Python Kafka clients, kafka-python and confluent-kafka.

Usage: python_clients.py BOOTSTRAP        (e.g. 127.0.0.1:9092, a fresh broker)

Driven by tests/tests/python_clients.rs with the interpreter of the virtualenv that
scripts/test-all.sh creates at target/pyclients (pins in requirements.txt beside this file).
Exits 0 when every check holds; otherwise prints what differed and exits 1 (2 when a client
library is missing). Every client call has a timeout, and an alarm ends a run that hangs anyway.
"""

import signal
import sys
import time

REQUIREMENTS = "tests/compat/requirements.txt"
SETUP_HINT = "bash scripts/test-all.sh (it creates target/pyclients), or set RUNNEL_PYTHON"

# Per call; far above what a healthy local broker needs.
TIMEOUT_S = 15
# Backstop for the whole run; the Rust test kills the script a little later still.
OVERALL_TIMEOUT_S = 150

KP_TOPIC = "py-kafka-python"
KP_PARTITIONS = 2
KP_RECORDS = 200

CK_TOPIC = "py-confluent"
CK_PARTITIONS = 3
CK_RECORDS = 1000
CK_CODECS = ("zstd", "lz4")
DEFAULT_RETENTION_MS = "604800000"
NEW_RETENTION_MS = "3600000"


class Mismatch(Exception):
    """A check that did not hold; the message says what differed."""


def check(condition, message):
    if not condition:
        raise Mismatch(message)


def step(client, what):
    print(f"{client}: {what}: ok", flush=True)


def consume_until(poll_once, wanted, what):
    """Calls `poll_once()` (returns a list of records) until `wanted` records arrived."""
    records = []
    deadline = time.monotonic() + TIMEOUT_S * 2
    while len(records) < wanted and time.monotonic() < deadline:
        records.extend(poll_once())
    check(len(records) == wanted, f"{what}: consumed {len(records)} records, expected {wanted}")
    return records


# --- kafka-python -----------------------------------------------------------------------------


def kafka_python(bootstrap):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

    common = {
        "bootstrap_servers": bootstrap,
        "request_timeout_ms": TIMEOUT_S * 1000,
        "bootstrap_timeout_ms": TIMEOUT_S * 1000,
    }
    admin = KafkaAdminClient(client_id="runnel-compat-admin", **common)
    try:
        created = admin.create_topics(
            {KP_TOPIC: {"num_partitions": KP_PARTITIONS, "replication_factor": 1}},
            timeout_ms=TIMEOUT_S * 1000,
        )
        errors = [(t["name"], t["error_code"]) for t in created["topics"] if t["error_code"]]
        check(not errors, f"kafka-python create_topics errors: {errors}")
        described = admin.describe_topics([KP_TOPIC])
        partitions = described[0]["partitions"] if described else []
        check(
            len(partitions) == KP_PARTITIONS,
            f"kafka-python describe_topics({KP_TOPIC}): {len(partitions)} partitions, "
            f"expected {KP_PARTITIONS}: {described}",
        )
    finally:
        admin.close()
    step("kafka-python", f"create topic {KP_TOPIC} with {KP_PARTITIONS} partitions")

    # A plain at-least-once producer: gzip, acks=all, and idempotence off. kafka-python 3
    # enables idempotence by default (InitProducerId); this check is about the plain path,
    # and tests/tests/idempotence.rs covers idempotent producers.
    producer = KafkaProducer(
        client_id="runnel-compat-producer",
        acks="all",
        compression_type="gzip",
        enable_idempotence=False,
        linger_ms=5,
        max_block_ms=TIMEOUT_S * 1000,
        delivery_timeout_ms=TIMEOUT_S * 2000,
        **common,
    )
    try:
        sent = []
        for i in range(KP_RECORDS):
            key, value = f"key-{i}".encode(), f"kafka-python value {i}".encode()
            sent.append((key, value, producer.send(KP_TOPIC, key=key, value=value)))
        producer.flush(timeout=TIMEOUT_S)
        # expected[partition] = [(offset, key, value)] in send order
        expected = {p: [] for p in range(KP_PARTITIONS)}
        for key, value, future in sent:
            meta = future.get(timeout=TIMEOUT_S)
            expected[meta.partition].append((meta.offset, key, value))
    finally:
        producer.close(timeout=TIMEOUT_S)
    for partition, records in expected.items():
        offsets = [offset for offset, _, _ in records]
        check(
            offsets == list(range(len(records))),
            f"kafka-python partition {partition}: acknowledged offsets {offsets}, "
            f"expected 0..{len(records) - 1} in send order",
        )
        check(records, f"kafka-python: no key landed in partition {partition}")
    step("kafka-python", f"produce {KP_RECORDS} keyed records with gzip and acks=all")

    consumer = KafkaConsumer(
        client_id="runnel-compat-consumer",
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=200,
        **common,
    )
    try:
        tps = [TopicPartition(KP_TOPIC, p) for p in range(KP_PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning()

        def poll_once():
            batches = consumer.poll(timeout_ms=500)
            return [record for records in batches.values() for record in records]

        records = consume_until(poll_once, KP_RECORDS, "kafka-python")
        got = {p: [] for p in range(KP_PARTITIONS)}
        for r in records:
            check(r.topic == KP_TOPIC, f"kafka-python: record from topic {r.topic!r}")
            got.setdefault(r.partition, []).append((r.offset, r.key, r.value))
        for partition in sorted(set(got) | set(expected)):
            want, have = expected.get(partition, []), got.get(partition, [])
            check(
                have == want,
                f"kafka-python partition {partition}: consumed {len(have)} records, "
                f"expected {len(want)}; first difference: {first_difference(have, want)}",
            )
        step("kafka-python", "consume with assign + seek_to_beginning: keys, values, order")

        ends = consumer.end_offsets(tps, timeout_ms=TIMEOUT_S * 1000)
        want_ends = {tp: len(expected[tp.partition]) for tp in tps}
        check(ends == want_ends, f"kafka-python end_offsets {ends}, expected {want_ends}")
        starts = consumer.beginning_offsets(tps, timeout_ms=TIMEOUT_S * 1000)
        check(
            all(offset == 0 for offset in starts.values()),
            f"kafka-python beginning_offsets {starts}, expected 0 everywhere",
        )
        step("kafka-python", f"end_offsets {sorted(want_ends.values())}")
    finally:
        consumer.close(autocommit=False, timeout_ms=TIMEOUT_S * 1000)


# --- confluent-kafka --------------------------------------------------------------------------


def confluent(bootstrap):
    from confluent_kafka import Consumer, OFFSET_BEGINNING, Producer, TopicPartition
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewTopic,
        OffsetSpec,
        ResourceType,
    )

    common = {"bootstrap.servers": bootstrap, "broker.address.family": "v4"}
    admin = AdminClient(dict(common, **{"client.id": "runnel-compat-admin"}))
    opts = {"request_timeout": TIMEOUT_S}

    futures = admin.create_topics(
        [NewTopic(CK_TOPIC, num_partitions=CK_PARTITIONS, replication_factor=1)],
        operation_timeout=TIMEOUT_S,
        **opts,
    )
    futures[CK_TOPIC].result(timeout=TIMEOUT_S)
    topic_meta = admin.list_topics(topic=CK_TOPIC, timeout=TIMEOUT_S).topics.get(CK_TOPIC)
    check(
        topic_meta is not None and len(topic_meta.partitions) == CK_PARTITIONS,
        f"confluent-kafka metadata for {CK_TOPIC}: {topic_meta and topic_meta.partitions}",
    )
    step("confluent-kafka", f"create topic {CK_TOPIC} with {CK_PARTITIONS} partitions")

    expected = produce_confluent(Producer, common)
    step("confluent-kafka", f"produce {CK_RECORDS} records with headers, codecs {CK_CODECS}")

    # librdkafka requires a group.id even for assign(). An assign()ed consumer never joins the
    # group, and with auto-commit off it commits nothing: this check needs no group support.
    consumer = Consumer(
        dict(
            common,
            **{
                "group.id": "runnel-compat-unused",
                "enable.auto.commit": False,
                "client.id": "runnel-compat-consumer",
                "fetch.wait.max.ms": 200,
            },
        )
    )
    try:
        consumer.assign(
            [TopicPartition(CK_TOPIC, p, OFFSET_BEGINNING) for p in range(CK_PARTITIONS)]
        )

        def poll_once():
            messages = consumer.consume(num_messages=CK_RECORDS, timeout=0.5)
            for m in messages:
                check(m.error() is None, f"confluent-kafka consume error: {m.error()}")
            return messages

        messages = consume_until(poll_once, CK_RECORDS, "confluent-kafka")
    finally:
        consumer.close()
    got = {}
    for m in messages:
        where = (m.partition(), m.offset())
        check(where not in got, f"confluent-kafka: {where} consumed twice")
        got[where] = (m.key(), m.value(), m.headers() or [])
    for where in sorted(set(expected) | set(got)):
        check(
            got.get(where) == expected.get(where),
            f"confluent-kafka (partition, offset) {where}: consumed {got.get(where)}, "
            f"expected {expected.get(where)}",
        )
    step("confluent-kafka", "consume with assign: every key, value and header")

    topic = ConfigResource(ResourceType.TOPIC, CK_TOPIC)
    retention = describe_retention(admin, topic, opts)
    check(
        retention == DEFAULT_RETENTION_MS,
        f"confluent-kafka describe_configs retention.ms={retention}, expected {DEFAULT_RETENTION_MS}",
    )
    step("confluent-kafka", f"describe_configs retention.ms={retention}")

    alter = ConfigResource(
        ResourceType.TOPIC,
        CK_TOPIC,
        incremental_configs=[
            ConfigEntry(
                "retention.ms", NEW_RETENTION_MS, incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    for future in admin.incremental_alter_configs([alter], **opts).values():
        future.result(timeout=TIMEOUT_S)
    retention = describe_retention(admin, topic, opts)
    check(
        retention == NEW_RETENTION_MS,
        f"confluent-kafka after incremental_alter_configs retention.ms={retention}, "
        f"expected {NEW_RETENTION_MS}",
    )
    step("confluent-kafka", f"incremental_alter_configs retention.ms={retention}")

    cluster = admin.describe_cluster(**opts).result(timeout=TIMEOUT_S)
    check(
        len(cluster.nodes) == 1,
        f"confluent-kafka describe_cluster: {len(cluster.nodes)} nodes, expected 1",
    )
    check(cluster.cluster_id, "confluent-kafka describe_cluster: empty cluster id")
    step("confluent-kafka", f"describe_cluster: 1 node, cluster id {cluster.cluster_id}")

    partition0 = sorted(offset for (p, offset) in expected if p == 0)
    check(partition0, "confluent-kafka: no record landed in partition 0")
    end = partition0[-1] + 1
    cut = end // 2
    deleted = admin.delete_records([TopicPartition(CK_TOPIC, 0, cut)], **opts)
    for future in deleted.values():
        result = future.result(timeout=TIMEOUT_S)
        check(
            result.low_watermark == cut,
            f"confluent-kafka delete_records: low watermark {result.low_watermark}, expected {cut}",
        )
    tp0 = TopicPartition(CK_TOPIC, 0)
    earliest = list_offset(admin, tp0, OffsetSpec.earliest(), opts)
    latest = list_offset(admin, tp0, OffsetSpec.latest(), opts)
    check(
        (earliest, latest) == (cut, end),
        f"confluent-kafka list_offsets after delete_records: earliest {earliest}, "
        f"latest {latest}; expected {cut} and {end}",
    )
    step("confluent-kafka", f"delete_records: partition 0 now starts at {cut} of {end}")

    admin.delete_topics([CK_TOPIC], operation_timeout=TIMEOUT_S, **opts)[CK_TOPIC].result(
        timeout=TIMEOUT_S
    )
    remaining = admin.list_topics(timeout=TIMEOUT_S).topics
    check(CK_TOPIC not in remaining, f"confluent-kafka: {CK_TOPIC} still listed after delete")
    step("confluent-kafka", f"delete_topics {CK_TOPIC}")


def produce_confluent(producer_class, common):
    """Produces CK_RECORDS records, a share with each codec, and returns
    {(partition, offset): (key, value, headers)} from the delivery reports."""
    expected = {}
    sent = {}
    failures = []
    per_codec = CK_RECORDS // len(CK_CODECS)
    for n, codec in enumerate(CK_CODECS):
        delivered = []

        def on_delivery(err, msg, delivered=delivered, codec=codec):
            if err is not None:
                failures.append(f"{codec} {msg.key()}: {err}")
            else:
                delivered.append(msg)

        producer = producer_class(
            dict(
                common,
                **{
                    "client.id": f"runnel-compat-{codec}",
                    "compression.type": codec,
                    "acks": "all",
                    "linger.ms": 5,
                    "message.timeout.ms": TIMEOUT_S * 2000,
                },
            )
        )
        count = per_codec if n < len(CK_CODECS) - 1 else CK_RECORDS - per_codec * n
        for i in range(count):
            key = f"{codec}-{i}".encode()
            value = f"confluent {codec} value {i} ".encode() * 4
            headers = [
                ("codec", codec.encode()),
                ("seq", str(i).encode()),
                ("dup", b"first"),
                ("dup", b"second"),
                ("binary", bytes([0, 255, i % 256])),
            ]
            sent[key] = (key, value, headers)
            producer.produce(
                CK_TOPIC, key=key, value=value, headers=headers, on_delivery=on_delivery
            )
            producer.poll(0)
        left = producer.flush(TIMEOUT_S * 2)
        check(left == 0, f"confluent-kafka {codec}: {left} records not delivered in time")
        check(not failures, f"confluent-kafka delivery failures: {failures[:5]}")
        check(
            len(delivered) == count,
            f"confluent-kafka {codec}: {len(delivered)} delivery reports, expected {count}",
        )
        for msg in delivered:
            # Delivery reports carry no headers: what was sent is the reference.
            expected[(msg.partition(), msg.offset())] = sent[msg.key()]
    check(len(expected) == CK_RECORDS, f"confluent-kafka: {len(expected)} distinct offsets acknowledged")
    for partition in {p for p, _ in expected}:
        offsets = sorted(o for p, o in expected if p == partition)
        check(
            offsets == list(range(len(offsets))),
            f"confluent-kafka partition {partition}: acknowledged offsets are not 0..n-1",
        )
    return expected


def describe_retention(admin, resource, opts):
    for future in admin.describe_configs([resource], **opts).values():
        entries = future.result(timeout=TIMEOUT_S)
        entry = entries.get("retention.ms")
        check(entry is not None, f"describe_configs: no retention.ms in {sorted(entries)}")
        return entry.value
    raise Mismatch("describe_configs returned no resource")


def list_offset(admin, tp, spec, opts):
    for future in admin.list_offsets({tp: spec}, **opts).values():
        return future.result(timeout=TIMEOUT_S).offset
    raise Mismatch("list_offsets returned no partition")


def first_difference(have, want):
    for i, (h, w) in enumerate(zip(have, want)):
        if h != w:
            return f"at index {i}: consumed {h}, expected {w}"
    if len(have) != len(want):
        return f"at index {min(len(have), len(want))}: one side ends"
    return "none"


def on_alarm(_signum, _frame):
    raise TimeoutError(f"the checks did not finish within {OVERALL_TIMEOUT_S} s")


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap = argv[1]
    try:
        import confluent_kafka
        import kafka
    except ImportError as error:
        print(
            f"{error} (python {sys.executable}): install {REQUIREMENTS} with {SETUP_HINT}",
            file=sys.stderr,
        )
        return 2
    print(
        f"python {sys.version.split()[0]}, kafka-python {kafka.__version__}, "
        f"confluent-kafka {confluent_kafka.version()} (librdkafka {confluent_kafka.libversion()[0]})",
        flush=True,
    )
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(OVERALL_TIMEOUT_S)
    try:
        kafka_python(bootstrap)
        confluent(bootstrap)
    except Mismatch as error:
        print(f"MISMATCH: {error}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
    print("all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
