#!/usr/bin/env python3
"""The original system's sink, as a baseline: a confluent-kafka consumer that parses each
inference record and stores it with pymongo's `insert_one`, one message at a time.

Prints one JSON line: {"count": N, "seconds": time from the first insert to the last}; with
--latencies also the percentiles of each record's produced_at to its insert's return, and the
records stored per second from the first produced_at to the last insert.
"""
import argparse
import json
import math
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
    ap.add_argument("--latencies", action="store_true")
    args = ap.parse_args()
    images = pymongo.MongoClient(args.mongo)[args.db]["images"]
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": f"seed-sink-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([args.topic])
    stored, first, latencies_ms, first_produced_us = 0, None, [], None
    while stored < args.count:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        record = json.loads(message.value())
        if first is None:
            first = time.perf_counter()
        produced_us = record.get("produced_at")
        images.insert_one(record)
        stored += 1
        if args.latencies and produced_us:
            now_us = time.time_ns() // 1000
            latencies_ms.append((now_us - produced_us) / 1000)
            first_produced_us = min(first_produced_us or produced_us, produced_us)
    seconds = time.perf_counter() - first
    consumer.close()
    result = {"count": stored, "seconds": seconds}
    if latencies_ms:
        latencies_ms.sort()
        rank = lambda p: latencies_ms[min(len(latencies_ms), max(1, math.ceil(p * len(latencies_ms)))) - 1]
        result.update(p50_ms=rank(0.5), p90_ms=rank(0.9), p99_ms=rank(0.99), max_ms=latencies_ms[-1],
                      per_s=stored / ((time.time_ns() // 1000 - first_produced_us) / 1e6))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
