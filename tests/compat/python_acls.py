#!/usr/bin/env python3
"""Runnel's CreateAcls, DescribeAcls and DeleteAcls through the admin clients of kafka-python
and confluent-kafka.

Usage: python_acls.py BOOTSTRAP   (a fresh broker on which the client's principal,
                                   User:ANONYMOUS on PLAINTEXT, is a super user)

Driven by tests/tests/acls.rs with the interpreter of the virtualenv that
scripts/test-all.sh creates at target/pyclients (pins in requirements.txt beside this file).
Exits 0 when every check holds; otherwise prints what differed and exits 1 (2 when a client
library is missing). Every client call has a timeout, and an alarm ends a run that hangs anyway.
"""

import signal
import sys

REQUIREMENTS = "tests/compat/requirements.txt"
SETUP_HINT = "bash scripts/test-all.sh (it creates target/pyclients), or set RUNNEL_PYTHON"

TIMEOUT_S = 15
OVERALL_TIMEOUT_S = 90


class Mismatch(Exception):
    """A check that did not hold; the message says what differed."""


def check(condition, message):
    if not condition:
        raise Mismatch(message)


def step(client, what):
    print(f"{client}: {what}: ok", flush=True)


# --- kafka-python -----------------------------------------------------------------------------


def kafka_python(bootstrap):
    import kafka.errors as Errors
    from kafka import KafkaAdminClient
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )

    admin = KafkaAdminClient(
        client_id="runnel-compat-acls",
        bootstrap_servers=bootstrap,
        request_timeout_ms=TIMEOUT_S * 1000,
        bootstrap_timeout_ms=TIMEOUT_S * 1000,
    )
    try:
        read_gps = ACL(
            principal="User:alice",
            host="*",
            operation=ACLOperation.READ,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(ResourceType.TOPIC, "gps"),
        )
        write_sensors = ACL(
            principal="User:alice",
            host="*",
            operation=ACLOperation.WRITE,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                ResourceType.TOPIC, "sensors.", ACLResourcePatternType.PREFIXED
            ),
        )
        no_type = ACL(
            principal="alice",
            host="*",
            operation=ACLOperation.READ,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(ResourceType.TOPIC, "gps"),
        )
        created = admin.create_acls([read_gps, write_sensors, no_type])
        check(
            created["succeeded"] == [read_gps, write_sensors],
            f"create_acls succeeded: {created['succeeded']}",
        )
        check(
            created["failed"] == [Errors.InvalidRequestError],
            f"a principal without a type must be refused: {created['failed']}",
        )
        step("kafka-python", "create_acls (and INVALID_REQUEST for principal 'alice')")

        everything = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(
                ResourceType.ANY, None, ACLResourcePatternType.ANY
            ),
        )
        listed, error = admin.describe_acls(everything)
        check(error is Errors.NoError, f"describe_acls error {error}")
        check(
            set(listed) == {read_gps, write_sensors},
            f"describe_acls listed {listed}",
        )
        applies = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(
                ResourceType.TOPIC, "sensors.gps", ACLResourcePatternType.MATCH
            ),
        )
        listed, _ = admin.describe_acls(applies)
        check(listed == [write_sensors], f"MATCH sensors.gps listed {listed}")
        step("kafka-python", "describe_acls (ANY and MATCH filters)")

        exact = ACLFilter(
            principal="User:alice",
            host="*",
            operation=ACLOperation.READ,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePatternFilter(
                ResourceType.TOPIC, "gps", ACLResourcePatternType.LITERAL
            ),
        )
        deleted = admin.delete_acls([exact])
        check(len(deleted) == 1, f"delete_acls answered {deleted}")
        _, matched, error = deleted[0]
        check(error is Errors.NoError, f"delete_acls error {error}")
        check(matched == [read_gps], f"delete_acls matched {matched}")
        listed, _ = admin.describe_acls(everything)
        check(listed == [write_sensors], f"after delete_acls: {listed}")
        step("kafka-python", "delete_acls returns what it deleted")
    finally:
        admin.close()


# --- confluent-kafka --------------------------------------------------------------------------


def confluent(bootstrap):
    from confluent_kafka.admin import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
    bob = AclBinding(
        ResourceType.GROUP,
        "bob-app",
        ResourcePatternType.LITERAL,
        "User:bob",
        "10.0.0.7",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    for future in admin.create_acls([bob], request_timeout=TIMEOUT_S).values():
        future.result(timeout=TIMEOUT_S)
    step("confluent-kafka", "create_acls")

    everything = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    listed = admin.describe_acls(everything, request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    names = sorted((b.name, b.principal, b.host) for b in listed)
    check(
        names == [("bob-app", "User:bob", "10.0.0.7"), ("sensors.", "User:alice", "*")]
        and bob in listed,
        f"describe_acls listed {listed}",
    )
    step("confluent-kafka", "describe_acls")

    futures = admin.delete_acls([everything], request_timeout=TIMEOUT_S)
    deleted = [b for f in futures.values() for b in f.result(timeout=TIMEOUT_S)]
    check(len(deleted) == 2 and bob in deleted, f"delete_acls deleted {deleted}")
    left = admin.describe_acls(everything, request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    check(left == [], f"after delete_acls: {left}")
    step("confluent-kafka", "delete_acls")


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
