"""The two client libraries of python_groups.py behind one small interface, so the scenario
is written once: a `Client` per library makes the topic, an idempotent producer, subscribed
consumers and an admin client, and each of those returns plain Python values (partitions as
ints, offsets as {partition: offset}, records as (partition, offset, key, value)).

Every call is bounded by TIMEOUT_S; a client error is raised as it is, a wrong answer as
`Mismatch`.
"""

import threading
import time

# Per call; far above what a healthy local broker needs.
TIMEOUT_S = 15
# The members' session and heartbeat: a member learns of a rebalance at its next heartbeat.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 300
# Records per poll, so that the scenario, not one poll, decides how far the members read.
MAX_POLL_RECORDS = 20
POLL_TIMEOUT_S = 0.1
# kafka-python's poll thread: long enough that a join usually completes within one poll.
THREAD_POLL_TIMEOUT_MS = 500


class Mismatch(Exception):
    """A check that did not hold; the message says what differed."""


def check(condition, message):
    if not condition:
        raise Mismatch(message)


# --- kafka-python -----------------------------------------------------------------------------


class KafkaPython:
    NAME = "kafka-python"

    class Client:
        def __init__(self, bootstrap, topic, group):
            self.topic, self.group = topic, group
            self.common = {
                "bootstrap_servers": bootstrap,
                "request_timeout_ms": TIMEOUT_S * 1000,
                "bootstrap_timeout_ms": TIMEOUT_S * 1000,
            }

        def create_topic(self, partitions):
            admin = self.admin()
            try:
                created = admin.admin.create_topics(
                    {self.topic: {"num_partitions": partitions, "replication_factor": 1}},
                    timeout_ms=TIMEOUT_S * 1000,
                )
                topics = created["topics"]
                errors = [(t["name"], t["error_code"]) for t in topics if t["error_code"]]
                check(not errors, f"kafka-python create_topics errors: {errors}")
            finally:
                admin.close()

        def producer(self):
            return KafkaPython.Producer(self)

        def consumer(self, name):
            return KafkaPython.Consumer(self, name)

        def admin(self):
            return KafkaPython.Admin(self)

    class Producer:
        def __init__(self, client):
            from kafka import KafkaProducer

            self.topic = client.topic
            # An explicit enable_idempotence=True makes kafka-python fail rather than silently
            # fall back when the broker lacks InitProducerId.
            self.producer = KafkaProducer(
                client_id="runnel-groups-producer",
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                max_block_ms=TIMEOUT_S * 1000,
                delivery_timeout_ms=TIMEOUT_S * 2000,
                **client.common,
            )

        def send_all(self, records):
            futures = [(k, v, self.producer.send(self.topic, key=k, value=v)) for k, v in records]
            self.producer.flush(timeout=TIMEOUT_S * 2)
            delivered = []
            for key, value, future in futures:
                meta = future.get(timeout=TIMEOUT_S)
                delivered.append((meta.partition, meta.offset, key, value))
            return delivered

        def close(self):
            self.producer.close(timeout=TIMEOUT_S)

    class Consumer:
        """A KafkaConsumer polled by a thread of its own.

        Two members of one group cannot be polled in turn from one thread with kafka-python
        3.0.12: a JoinGroup waits at the broker until every member has rejoined, so the first
        member's poll() times out with its join still in flight, and when that join completes
        before the member's next poll(), that poll discards the finished join and sends a new
        JoinGroup (`join_group_async` replaces a done `_join_task` instead of taking its
        result), which starts the next rebalance: the group never settles. Here each member's
        thread keeps polling, and the other calls take the consumer between two polls.
        """

        def __init__(self, client, name):
            from kafka import KafkaConsumer, TopicPartition

            self.name, self.topic, self.closed = name, client.topic, False
            self.tp = lambda p: TopicPartition(client.topic, p)
            self.consumer = KafkaConsumer(
                client_id=f"runnel-groups-{name}",
                group_id=client.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=SESSION_TIMEOUT_MS,
                heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
                max_poll_records=MAX_POLL_RECORDS,
                fetch_max_wait_ms=100,
                **client.common,
            )
            self.consumer.subscribe([client.topic])
            self.owner = threading.Lock()  # held by whoever uses self.consumer
            self.waiting = 0  # calls waiting for self.owner; the poller yields to them
            self.arrived = threading.Condition()  # guards self.records and self.failure
            self.records, self.failure, self.stopping = [], None, False
            self.poller = threading.Thread(target=self._poll_loop, name=f"poll-{name}", daemon=True)
            self.poller.start()

        def __str__(self):
            return self.name

        def _poll_loop(self):
            while not self.stopping:
                with self.arrived:
                    # The next poll only once the scenario has taken what the last one read,
                    # so the scenario sets the pace, as it does with confluent-kafka.
                    if self.records:
                        self.arrived.wait(POLL_TIMEOUT_S)
                        continue
                while self.waiting:
                    time.sleep(0.001)
                with self.owner:
                    if self.stopping:
                        return
                    try:
                        batches = self.consumer.poll(timeout_ms=THREAD_POLL_TIMEOUT_MS)
                    except Exception as error:  # reported by the next poll()
                        with self.arrived:
                            self.failure = error
                            self.arrived.notify_all()
                        return
                    # Appended before the next call can take the consumer, so records a
                    # position covers are in self.records when positions() returns.
                    with self.arrived:
                        self.records.extend(
                            (r.partition, r.offset, r.key, r.value)
                            for records in batches.values()
                            for r in records
                        )
                        self.arrived.notify_all()

        def _call(self, method, *args, **kwargs):
            self.waiting += 1
            try:
                check(
                    self.owner.acquire(timeout=TIMEOUT_S),
                    f"kafka-python {self.name}: the poll thread kept the consumer {TIMEOUT_S} s",
                )
            finally:
                self.waiting -= 1
            try:
                return method(*args, **kwargs)
            finally:
                self.owner.release()

        def poll(self):
            with self.arrived:
                self.arrived.wait_for(lambda: self.records or self.failure, POLL_TIMEOUT_S)
                return self.drain()

        def drain(self):
            """The records the poll thread has read and nobody has taken yet, without waiting."""
            with self.arrived:
                if self.failure is not None:
                    raise self.failure
                records, self.records = self.records, []
                self.arrived.notify_all()
                return records

        def assignment(self):
            assigned = self._call(self.consumer.assignment)
            return {tp.partition for tp in assigned if tp.topic == self.topic}

        def positions(self):
            """The next offset of every assigned partition: what a commit now would store."""

            def positions():
                return {
                    tp.partition: self.consumer.position(tp, timeout_ms=TIMEOUT_S * 1000)
                    for tp in self.consumer.assignment()
                }

            return self._call(positions)

        def commit(self, offsets):
            from kafka.structs import OffsetAndMetadata

            self._call(
                self.consumer.commit,
                {self.tp(p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()},
                timeout_ms=TIMEOUT_S * 1000,
            )

        def committed(self):
            def committed():
                partitions = self.consumer.partitions_for_topic(self.topic) or ()
                found = {
                    p: self.consumer.committed(self.tp(p), timeout_ms=TIMEOUT_S * 1000)
                    for p in partitions
                }
                return {p: o for p, o in found.items() if o is not None}

            return self._call(committed)

        def end_offsets(self):
            def end_offsets():
                partitions = sorted(self.consumer.partitions_for_topic(self.topic) or ())
                tps = [self.tp(p) for p in partitions]
                ends = self.consumer.end_offsets(tps, timeout_ms=TIMEOUT_S * 1000)
                return {tp.partition: offset for tp, offset in ends.items()}

            return self._call(end_offsets)

        def close(self):
            self.stopping = True
            self.poller.join(timeout=TIMEOUT_S)
            check(
                not self.poller.is_alive(), f"kafka-python {self.name}: the poll thread runs on"
            )
            # Without auto-commit there is nothing to commit; closing sends LeaveGroup.
            self.consumer.close(autocommit=False, timeout_ms=TIMEOUT_S * 1000)
            self.closed = True

    class Admin:
        def __init__(self, client):
            from kafka import KafkaAdminClient

            self.admin = KafkaAdminClient(client_id="runnel-groups-admin", **client.common)

        def list_groups(self):
            return {g["group_id"] for g in self.admin.list_groups()}

        def describe_group(self, group):
            described = self.admin.describe_groups([group])
            check(group in described, f"kafka-python describe_groups: {described}")
            desc = described[group]
            check(desc.get("error") is None, f"kafka-python describe_groups {group}: {desc}")
            return desc["group_state"], len(desc["members"])

        def committed(self, group):
            offsets = self.admin.list_group_offsets(group)
            check(group in offsets, f"kafka-python list_group_offsets: {offsets}")
            return {tp.partition: meta.offset for tp, meta in offsets[group].items()}

        def delete_group(self, group):
            result = self.admin.delete_groups([group])
            check(result == {group: "OK"}, f"kafka-python delete_groups: {result}")

        def close(self):
            self.admin.close()


# --- confluent-kafka --------------------------------------------------------------------------


class Confluent:
    NAME = "confluent-kafka"

    class Client:
        def __init__(self, bootstrap, topic, group):
            self.topic, self.group = topic, group
            self.common = {"bootstrap.servers": bootstrap, "broker.address.family": "v4"}

        def create_topic(self, partitions):
            from confluent_kafka.admin import NewTopic

            admin = self.admin()
            futures = admin.admin.create_topics(
                [NewTopic(self.topic, num_partitions=partitions, replication_factor=1)],
                operation_timeout=TIMEOUT_S,
                request_timeout=TIMEOUT_S,
            )
            futures[self.topic].result(timeout=TIMEOUT_S)

        def producer(self):
            return Confluent.Producer(self)

        def consumer(self, name):
            return Confluent.Consumer(self, name)

        def admin(self):
            return Confluent.Admin(self)

    class Producer:
        def __init__(self, client):
            from confluent_kafka import Producer

            self.topic = client.topic
            # With enable.idempotence librdkafka fails (fatally) rather than produce without a
            # producer id from InitProducerId.
            self.producer = Producer(
                dict(
                    client.common,
                    **{
                        "client.id": "runnel-groups-producer",
                        "enable.idempotence": True,
                        "acks": "all",
                        "linger.ms": 5,
                        "message.timeout.ms": TIMEOUT_S * 2000,
                    },
                )
            )

        def send_all(self, records):
            delivered, failures = [], []

            def on_delivery(err, msg):
                if err is not None:
                    failures.append(f"{msg.key()}: {err}")
                else:
                    delivered.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

            for key, value in records:
                self.producer.produce(self.topic, key=key, value=value, on_delivery=on_delivery)
                self.producer.poll(0)
            left = self.producer.flush(TIMEOUT_S * 2)
            check(left == 0, f"confluent-kafka: {left} records not delivered in time")
            check(not failures, f"confluent-kafka delivery failures: {failures[:5]}")
            check(
                len(delivered) == len(records),
                f"confluent-kafka: {len(delivered)} delivery reports for {len(records)} records",
            )
            return delivered

        def close(self):
            check(self.producer.flush(TIMEOUT_S) == 0, "confluent-kafka: records left at close")

    class Consumer:
        def __init__(self, client, name):
            from confluent_kafka import Consumer, TopicPartition

            self.name, self.topic, self.closed = name, client.topic, False
            self.tp = lambda p, o=-1001: TopicPartition(client.topic, p, o)
            self.consumer = Consumer(
                dict(
                    client.common,
                    **{
                        "client.id": f"runnel-groups-{name}",
                        "group.id": client.group,
                        "auto.offset.reset": "earliest",
                        "enable.auto.commit": False,
                        "session.timeout.ms": SESSION_TIMEOUT_MS,
                        "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
                        "fetch.wait.max.ms": 100,
                    },
                )
            )
            self.consumer.subscribe([client.topic])

        def __str__(self):
            return self.name

        def poll(self):
            messages = self.consumer.consume(num_messages=MAX_POLL_RECORDS, timeout=POLL_TIMEOUT_S)
            for m in messages:
                check(m.error() is None, f"confluent-kafka {self.name}: consume error {m.error()}")
            return [(m.partition(), m.offset(), m.key(), m.value()) for m in messages]

        def drain(self):
            """Nothing: consume() hands over every record it has read."""
            return []

        def assignment(self):
            return {tp.partition for tp in self.consumer.assignment() if tp.topic == self.topic}

        def positions(self):
            """The next offset of every assigned partition that has one (librdkafka knows a
            position only once it has fetched from the partition)."""
            tps = [self.tp(p) for p in sorted(self.assignment())]
            return {tp.partition: tp.offset for tp in self.consumer.position(tps) if tp.offset >= 0}

        def commit(self, offsets):
            tps = [self.tp(p, o) for p, o in sorted(offsets.items())]
            result = self.consumer.commit(offsets=tps, asynchronous=False)
            errors = [(tp.partition, tp.error) for tp in result or () if tp.error is not None]
            check(not errors, f"confluent-kafka {self.name} commit errors: {errors}")

        def committed(self):
            partitions = self.consumer.list_topics(self.topic, timeout=TIMEOUT_S).topics[self.topic]
            tps = [self.tp(p) for p in sorted(partitions.partitions)]
            found = self.consumer.committed(tps, timeout=TIMEOUT_S)
            return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

        def end_offsets(self):
            partitions = self.consumer.list_topics(self.topic, timeout=TIMEOUT_S).topics[self.topic]
            return {
                p: self.consumer.get_watermark_offsets(self.tp(p), timeout=TIMEOUT_S)[1]
                for p in sorted(partitions.partitions)
            }

        def close(self):
            # Without auto-commit there is nothing to commit; closing sends LeaveGroup.
            self.consumer.close()
            self.closed = True

    class Admin:
        def __init__(self, client):
            from confluent_kafka.admin import AdminClient

            self.admin = AdminClient(dict(client.common, **{"client.id": "runnel-groups-admin"}))
            self.opts = {"request_timeout": TIMEOUT_S}

        def list_groups(self):
            listed = self.admin.list_consumer_groups(**self.opts).result(timeout=TIMEOUT_S)
            check(not listed.errors, f"confluent-kafka list_consumer_groups: {listed.errors}")
            return {g.group_id for g in listed.valid}

        def describe_group(self, group):
            futures = self.admin.describe_consumer_groups([group], **self.opts)
            desc = futures[group].result(timeout=TIMEOUT_S)
            # ConsumerGroupState.STABLE -> "Stable", as Kafka spells the state.
            return desc.state.name.capitalize(), len(desc.members)

        def committed(self, group):
            from confluent_kafka import ConsumerGroupTopicPartitions

            request = [ConsumerGroupTopicPartitions(group)]
            futures = self.admin.list_consumer_group_offsets(request, **self.opts)
            listed = futures[group].result(timeout=TIMEOUT_S)
            errors = [(tp.partition, tp.error) for tp in listed.topic_partitions if tp.error]
            check(not errors, f"confluent-kafka list_consumer_group_offsets errors: {errors}")
            return {tp.partition: tp.offset for tp in listed.topic_partitions}

        def delete_group(self, group):
            futures = self.admin.delete_consumer_groups([group], **self.opts)
            futures[group].result(timeout=TIMEOUT_S)

        def close(self):
            pass


CLIENTS = (KafkaPython, Confluent)
