#!/usr/bin/env python3
"""SASL against Runnel with the two main Python Kafka clients, over SASL_SSL.

Usage: python_sasl.py BOOTSTRAP CA_FILE USER PASSWORD

BOOTSTRAP is a SASL_SSL listener (host:port, the host matching the broker certificate), CA_FILE
the PEM that signs it, USER/PASSWORD a SCRAM user that exists (tests/tests/sasl.rs adds it with
`runnel user add`). Checks, in order:
- confluent-kafka and kafka-python produce and consume with SCRAM-SHA-512;
- kafka-python's admin client adds a user with AlterUserScramCredentials (SCRAM-SHA-256 and
  SCRAM-SHA-512) and DescribeUserScramCredentials lists it, and an unknown user is
  RESOURCE_NOT_FOUND; an upsertion with too few iterations is refused;
- the new user produces with confluent-kafka (SCRAM-SHA-256) at once, without a broker restart;
- a wrong password and an unknown user are refused by both clients with the same message.
Exits 0 when every check holds; otherwise prints what differed and exits 1.
"""

import signal
import sys
import time

TIMEOUT_S = 15
OVERALL_TIMEOUT_S = 150
TOPIC = "py-sasl"
NEW_USER = "py-carol"
NEW_PASSWORD = "carol-secret-41"
STARTED = time.monotonic()


class Mismatch(Exception):
    """A check that did not hold; the message says what differed."""


def check(condition, message):
    if not condition:
        raise Mismatch(message)


def step(what):
    print(f"{what}: ok ({time.monotonic() - STARTED:.1f} s)", flush=True)


def ck_config(bootstrap, ca, mechanism, user, password):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": ca,
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        "broker.address.family": "v4",
    }


def kp_config(bootstrap, ca, mechanism, user, password):
    return {
        "bootstrap_servers": bootstrap,
        "security_protocol": "SASL_SSL",
        "ssl_cafile": ca,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
        "request_timeout_ms": TIMEOUT_S * 1000,
    }


def ck_produce(config, values):
    from confluent_kafka import Producer

    errors = []
    producer = Producer(config)
    for v in values:
        producer.produce(TOPIC, v.encode(), on_delivery=lambda e, m: e and errors.append(e))
    left = producer.flush(TIMEOUT_S)
    check(left == 0 and not errors, f"confluent-kafka produce: {left} left, errors {errors}")


def ck_refused(config):
    """Produces one record that must not be delivered; returns the client's error text."""
    from confluent_kafka import Producer

    seen = []
    delivered = []
    config = dict(config, **{"error_cb": lambda e: seen.append(str(e)), "message.timeout.ms": 4000})
    producer = Producer(config)
    producer.produce(TOPIC, b"must not arrive", on_delivery=lambda e, m: delivered.append(e is None))
    producer.flush(8)
    check(delivered == [False], f"confluent-kafka with bad credentials: delivered {delivered}")
    auth = [s for s in seen if "Authentication failed" in s]
    check(auth, f"confluent-kafka saw no authentication error: {seen}")
    return auth[0]


def kp_refused(config):
    """Like ck_refused for kafka-python, whose exception only says it could not bootstrap: the
    broker's message is read from what kafka-python logs."""
    import logging

    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    collect = Collect()
    logger = logging.getLogger("kafka")
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    try:
        producer = KafkaProducer(**config, max_block_ms=5000, bootstrap_timeout_ms=5000)
        producer.send(TOPIC, b"must not arrive").get(timeout=8)
        raise Mismatch("kafka-python with bad credentials delivered a record")
    except KafkaError:
        pass
    finally:
        logger.removeHandler(collect)
    auth = [m for m in collect.messages if "Authentication failed" in m]
    check(auth, f"kafka-python logged no authentication error: {collect.messages}")
    start = auth[0].index("Authentication failed")
    # kafka-python logs the raw response: the message ends where its bytes stop being text.
    return auth[0][start:].split("\\")[0]


def consume_all(config, wanted):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(dict(config, **{"group.id": "py-sasl", "enable.auto.commit": False}))
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    values = []
    deadline = time.monotonic() + TIMEOUT_S * 2
    while len(values) < wanted and time.monotonic() < deadline:
        m = consumer.poll(1.0)
        if m is not None and m.error() is None:
            values.append(m.value().decode())
    consumer.close()
    return values


def main(bootstrap, ca, user, password):
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    ck = ck_config(bootstrap, ca, "SCRAM-SHA-512", user, password)
    ck_produce(ck, ["ck-1", "ck-2"])
    step("confluent-kafka SCRAM-SHA-512 over SASL_SSL produce")
    kp = kp_config(bootstrap, ca, "SCRAM-SHA-512", user, password)
    producer = KafkaProducer(**kp)
    producer.send(TOPIC, b"kp-1", partition=0).get(timeout=TIMEOUT_S)
    producer.close()
    step("kafka-python SCRAM-SHA-512 over SASL_SSL produce")
    values = consume_all(ck, 3)
    check(values == ["ck-1", "ck-2", "kp-1"], f"consumed {values}")
    step("confluent-kafka SCRAM-SHA-512 consume")

    admin = KafkaAdminClient(**kp)
    altered = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion(NEW_USER, ScramMechanism.SCRAM_SHA_256, NEW_PASSWORD, iterations=4096),
        UserScramCredentialUpsertion(NEW_USER, ScramMechanism.SCRAM_SHA_512, NEW_PASSWORD, iterations=8192),
    ])
    check(altered == {NEW_USER: None}, f"alter_user_scram_credentials: {altered}")
    weak = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("py-weak", ScramMechanism.SCRAM_SHA_256, "x", iterations=1000),
    ])
    check(weak.get("py-weak") and "4096" in weak["py-weak"], f"weak credential: {weak}")
    described = admin.describe_user_scram_credentials([NEW_USER, "py-nobody"])
    infos = sorted((int(i["mechanism"]), i["iterations"]) for i in described[NEW_USER]["credential_infos"])
    check(infos == [(1, 4096), (2, 8192)], f"described {described}")
    check("does not exist" in (described["py-nobody"]["error"] or ""), f"described {described}")
    everyone = admin.describe_user_scram_credentials()
    check(user in everyone and NEW_USER in everyone, f"all users: {sorted(everyone)}")
    admin.close()
    step("kafka-python AlterUserScramCredentials / DescribeUserScramCredentials")

    ck_produce(ck_config(bootstrap, ca, "SCRAM-SHA-256", NEW_USER, NEW_PASSWORD), ["carol"])
    step("the new user produces at once (confluent-kafka SCRAM-SHA-256)")

    wrong = ck_refused(ck_config(bootstrap, ca, "SCRAM-SHA-512", user, password + "x"))
    unknown = ck_refused(ck_config(bootstrap, ca, "SCRAM-SHA-512", "py-nobody", password))
    reason = "Authentication failed: invalid credentials with SASL mechanism SCRAM-SHA-512"
    check(reason in wrong and reason in unknown, f"confluent-kafka: {wrong!r} / {unknown!r}")
    step("confluent-kafka refused a wrong password and an unknown user alike")
    kp_wrong = kp_refused(kp_config(bootstrap, ca, "SCRAM-SHA-512", user, password + "x"))
    kp_unknown = kp_refused(kp_config(bootstrap, ca, "SCRAM-SHA-512", "py-nobody", password))
    check(kp_wrong == reason and kp_unknown == reason, f"kafka-python: {kp_wrong!r} / {kp_unknown!r}")
    step("wrong password and unknown user refused alike by both clients")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print(__doc__)
        sys.exit(2)
    signal.alarm(OVERALL_TIMEOUT_S)
    try:
        main(*sys.argv[1:])
    except Mismatch as e:
        print(f"MISMATCH: {e}", flush=True)
        sys.exit(1)
