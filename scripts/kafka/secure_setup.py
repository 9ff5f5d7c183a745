"""The accounts, topics and ACLs of the secured local broker (scripts/secure.sh), made through its
admin listener. Idempotent: every `./dev services up kafka --secure` runs it.

Each service's account may use only what that service uses, with the pipeline's default names
(src/core/topics.h, the services' --group defaults, and their transactional ids
"<group>-<instance>"): so a service given another account, topic, group or transactional id
is refused by the broker.

  secure_setup.py --bootstrap HOST:PORT --admin-config FILE --passwords DIR [--reset] USER...

--reset first deletes the pipeline's topics and the services' consumer groups, so that a test
starts from an empty pipeline.
"""

import argparse
import pathlib
import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   NewTopic, ResourcePatternType, ResourceType, ScramCredentialInfo,
                                   ScramMechanism, UserScramCredentialUpsertion)

READ, WRITE, DESCRIBE = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE
# Services read the max.message.bytes of the topics they write, to size their records.
CONFIGS = AclOperation.DESCRIBE_CONFIGS
TOPIC, GROUP, TXN = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED

# (resource type, name, pattern, operations) per account.
RIGHTS = {
    "produce": [(TOPIC, "images", LITERAL, [WRITE, DESCRIBE, CONFIGS])],
    "infer": [
        (TOPIC, "images", LITERAL, [READ, DESCRIBE]),
        (GROUP, "iotinfer-infer", LITERAL, [READ]),
        (TOPIC, "inferences", LITERAL, [WRITE, DESCRIBE, CONFIGS]),
        (TOPIC, "images.dlq", LITERAL, [WRITE, DESCRIBE, CONFIGS]),
        (TOPIC, "inferences.shadow", LITERAL, [WRITE, DESCRIBE, CONFIGS]),
        (TOPIC, "model-control", LITERAL, [READ, DESCRIBE]),
        (TXN, "iotinfer-infer-", PREFIXED, [WRITE, DESCRIBE]),
    ],
    "sink": [
        (TOPIC, "inferences", LITERAL, [READ, DESCRIBE]),
        (GROUP, "iotinfer-sink", LITERAL, [READ]),
        (TOPIC, "inferences.dlq", LITERAL, [WRITE, DESCRIBE, CONFIGS]),
        (TOPIC, "inferences.accepted", LITERAL, [WRITE, DESCRIBE, CONFIGS]),
        (TXN, "iotinfer-sink-", PREFIXED, [WRITE, DESCRIBE]),
    ],
    "stream": [
        (TOPIC, "inferences.accepted", LITERAL, [READ, DESCRIBE]),
        (GROUP, "iotinfer-stream", LITERAL, [READ]),
        (TOPIC, "producer-health", LITERAL, [WRITE, DESCRIBE, CONFIGS]),
        # The dashboard's dead-letter view, in a group of its own per process.
        (GROUP, "iotinfer-stream.dashboard.", PREFIXED, [READ]),
        (TOPIC, "images.dlq", LITERAL, [READ, DESCRIBE]),
        (TOPIC, "inferences.dlq", LITERAL, [READ, DESCRIBE]),
    ],
}

# Accounts that lack one right each, for the tests of what a service does when refused.
RIGHTS["infer-no-txn"] = [r for r in RIGHTS["infer"] if r[0] != TXN]
RIGHTS["infer-no-dlq"] = [r if r[1] != "images.dlq" else (TOPIC, "images.dlq", LITERAL, [DESCRIBE, CONFIGS])
                          for r in RIGHTS["infer"]]

# As the services would create them (EnsureTopics): accounts without the right to create topics
# find them made.
TOPICS = [NewTopic(name, 6) for name in ("images", "inferences", "images.dlq", "inferences.shadow",
                                         "inferences.dlq", "inferences.accepted")]
TOPICS += [NewTopic("producer-health", 6, config={"cleanup.policy": "compact"}),
           NewTopic("model-control", 1, config={"cleanup.policy": "compact"})]


def read_properties(path):
    config = {}
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            config[key.strip()] = value.strip()
    return config


class Retriable(Exception):
    """A request that may succeed when made again (a broker still starting)."""


def wait_all(futures, what, tolerated=()):
    for key, future in futures.items():
        try:
            future.result()
        except KafkaException as e:
            if e.args[0].retriable():
                raise Retriable(f"{what} {key}: {e.args[0].str()}") from e
            if e.args[0].name() not in tolerated:
                sys.exit(f"secure_setup: {what} {key}: {e.args[0].str()}")


def retrying(call):
    """call(), again while it fails as Retriable, for up to 60 s."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return call()
        except Retriable as e:
            if time.monotonic() > deadline:
                sys.exit(f"secure_setup: {e}")
            time.sleep(1)


WAIT_FOR_GROUP = ("NON_EMPTY_GROUP", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR")
GROUPS = ["iotinfer-infer", "iotinfer-sink", "iotinfer-stream"]


def reset(admin):
    # A member that left without saying so (a killed process) holds its group until its session
    # times out (10 s for iotinfer's services).
    deadline = time.monotonic() + 60
    groups = GROUPS
    while groups:
        busy = []
        for group, future in admin.delete_consumer_groups(groups, request_timeout=30).items():
            try:
                future.result()
            except KafkaException as e:
                # Also a coordinator still loading on a broker that has just started (which the
                # client does not flag as retriable).
                waiting = e.args[0].name() in WAIT_FOR_GROUP or e.args[0].retriable()
                if waiting and time.monotonic() < deadline:
                    busy.append(group)
                elif e.args[0].name() != "GROUP_ID_NOT_FOUND":
                    sys.exit(f"secure_setup: deleting group {group}: {e.args[0].str()}")
        groups = busy
        if groups:
            time.sleep(1)
    retrying(lambda: wait_all(admin.delete_topics([t.topic for t in TOPICS], operation_timeout=30),
                              "deleting topic", tolerated=("UNKNOWN_TOPIC_OR_PART",)))
    # Deletion completes in the background: a topic of the same name can be made only after.
    deadline = time.monotonic() + 60
    while any(t.topic in admin.list_topics(timeout=10).topics for t in TOPICS):
        if time.monotonic() > deadline:
            sys.exit("secure_setup: the pipeline's topics were not deleted within 60 s")
        time.sleep(0.2)


def create_topics(admin):
    # Right after a deletion the broker may still refuse the names for a moment.
    deadline = time.monotonic() + 60
    while True:
        missing = [t for t in TOPICS if t.topic not in admin.list_topics(timeout=10).topics]
        if not missing:
            return
        futures = admin.create_topics(missing, request_timeout=30)
        errors = []
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as e:
                if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    errors.append(f"{name}: {e.args[0].str()}")
        if not errors:
            return
        if time.monotonic() > deadline:
            sys.exit(f"secure_setup: creating topics: {'; '.join(errors)}")
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--admin-config", required=True)
    parser.add_argument("--passwords", required=True, help="directory of kafka-USER password files")
    parser.add_argument("--reset", action="store_true", help="delete the topics and groups first")
    parser.add_argument("users", nargs="+")
    args = parser.parse_args()
    unknown = set(args.users) - RIGHTS.keys()
    if unknown:
        sys.exit(f"secure_setup: no rights defined for {sorted(unknown)}")

    admin = AdminClient({"bootstrap.servers": args.bootstrap, **read_properties(args.admin_config)})
    upserts = [
        UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                     (pathlib.Path(args.passwords) / f"kafka-{user}").read_bytes())
        for user in args.users
    ]
    retrying(lambda: wait_all(admin.alter_user_scram_credentials(upserts, request_timeout=30), "account"))
    if args.reset:
        reset(admin)
    create_topics(admin)
    bindings = [
        AclBinding(kind, name, pattern, f"User:{user}", "*", operation, AclPermissionType.ALLOW)
        for user in args.users for kind, name, pattern, operations in RIGHTS[user] for operation in operations
    ]
    retrying(lambda: wait_all(admin.create_acls(bindings, request_timeout=30), "ACL"))
    print(f"secure_setup: {len(args.users)} accounts, {len(TOPICS)} topics, {len(bindings)} ACLs")


if __name__ == "__main__":
    main()
