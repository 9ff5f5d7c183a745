#!/usr/bin/env python3
"""The original system's sink, as a baseline: a confluent-kafka consumer that parses each
inference record and stores it with pymongo's `insert_one`, one message at a time.

Prints one JSON line: {"count": N, "seconds": time from the first insert to the last}.
"""
import argparse
import json
import time
import uuid

import pymongo
from confluent_kafka import Consumer


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--mongo", default="mongodb://127.0.0.1:27017")
    ap.add_argument("--db", required=True)
    ap.add_argument("--count", type=int, required=True)
    args = ap.parse_args()
    images = pymongo.MongoClient(args.mongo)[args.db]["images"]
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": f"seed-sink-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([args.topic])
    stored, first = 0, None
    while stored < args.count:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        record = json.loads(message.value())
        if first is None:
            first = time.perf_counter()
        images.insert_one(record)
        stored += 1
    seconds = time.perf_counter() - first
    consumer.close()
    print(json.dumps({"count": stored, "seconds": seconds}))


if __name__ == "__main__":
    main()
