#!/usr/bin/env python3
"""`./dev bench sink`: documents/s from the `inferences` topic into the MongoDB-protocol
server of `./dev services up mongo` (FerretDB on SQLite, or mongod), for `iotinfer sink`
(bulk upserts, offsets in Kafka transactions) and for the original system's sink
(bench/seed_sink.py: pymongo `insert_one` per message), same run, same records, same server.

Rates are steady-state and exclude start-up (group join): the baseline times itself from its
first insert to its last; for iotinfer the documents' `stored_at` (taken when each batch's
write starts) gives rate = documents written between the first and the last batch's start /
that interval. Writes the table into BENCHMARKS.md.
"""
import json
import os
import subprocess
import sys
import time
import uuid

import pymongo
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks import delete_topics, driver_arguments, machine_line, server_name, write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The store issue's target: iotinfer's documents/s over the seed-style sink's.
TARGET = 20.0
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def fill(brokers, topic, count, partitions):
    """`count` records shaped like infer's output, into a new topic."""
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 20, "enable.idempotence": True})
    now_us = int(time.time() * 1e6)
    for i in range(count):
        producer_id = i % 8
        record = {"id": f"bench-{producer_id}-{i}", "image_prediction": CLASSES[i % 10],
                  "actual_value": CLASSES[(i * 7) % 10], "producer_id": producer_id, "confidence": 0.87,
                  "model": "fmnist-cnn-bench", "produced_at": now_us + i, "inferred_at": now_us + i + 20000}
        producer.produce(topic, key=str(producer_id), value=json.dumps(record))
        if i % 10000 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise SystemExit("bench: could not fill the topic")


def run_iotinfer(args, topic, db, count, batch_max):
    images = pymongo.MongoClient(args.mongo)[db]["images"]
    started = time.perf_counter()
    sink = subprocess.Popen([args.iotinfer, "sink", "--brokers", args.brokers, "--store", args.mongo, "--db", db,
                             "--input-topic", topic, "--dlq-topic", f"{topic}.dlq", "--group", f"bench-{db}",
                             "--batch-max", str(batch_max), "--log-every-ms", "0"])
    try:
        while images.estimated_document_count() < count:
            if time.perf_counter() - started > 600:
                raise SystemExit("bench: iotinfer sink did not store every record in 600 s")
            time.sleep(0.5)
        wall = time.perf_counter() - started
    finally:
        sink.terminate()
        sink.wait(60)
    stamps = sorted(d["stored_at"] for d in images.find({}, {"stored_at": 1, "_id": 0}))
    last_batch = sum(1 for s in stamps if s == stamps[-1])
    span = (stamps[-1] - stamps[0]).total_seconds()
    return {"count": len(stamps), "rate": (len(stamps) - last_batch) / span, "wall": wall}


def run_baseline(args, topic, db, count):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "seed_sink.py"), "--brokers", args.brokers,
                          "--topic", topic, "--mongo", args.mongo, "--db", db, "--count", str(count)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    stored = pymongo.MongoClient(args.mongo)[db]["images"].count_documents({})
    return {"count": stored, "rate": (result["count"] - 1) / result["seconds"]}


def main():
    ap = driver_arguments(__doc__)
    ap.add_argument("--mongo", default="mongodb://127.0.0.1:27017")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--records", type=int, default=100000, help="records for iotinfer's run")
    ap.add_argument("--baseline-records", type=int, default=10000, help="records for the baseline's run")
    ap.add_argument("--batch-max", type=int, default=5000)
    args = ap.parse_args()

    run_id = uuid.uuid4().hex[:8]
    topic = f"bench-sink-{run_id}"
    fill(args.brokers, topic, max(args.records, args.baseline_records), args.partitions)
    client = pymongo.MongoClient(args.mongo)
    baseline = run_baseline(args, topic, f"bench_seed_{run_id}", args.baseline_records)
    ours = run_iotinfer(args, topic, f"bench_sink_{run_id}", args.records, args.batch_max)
    for db in (f"bench_seed_{run_id}", f"bench_sink_{run_id}"):
        client.drop_database(db)
    delete_topics(args.brokers, [topic, f"{topic}.dlq"])
    if ours["count"] != args.records or baseline["count"] != args.baseline_records:
        raise SystemExit(f"bench: wrong document counts: {ours['count']}, {baseline['count']}")

    facts = {"machine": machine_line(), "server": server_name(args.mongo), "partitions": args.partitions,
             "baseline_records": args.baseline_records, "records": args.records, "batch_max": args.batch_max}
    print(write_section(args.report, "sink", report_lines(baseline, ours, facts)))


def report_lines(baseline, ours, facts):
    """The section's lines: `baseline` and `ours` as run_baseline and run_iotinfer return them,
    `facts` the run's facts."""
    ratio = ours["rate"] / baseline["rate"]
    return [
        f"### Sink: iotinfer vs the original's insert_one consumer ({time.strftime('%Y-%m-%d')})",
        "",
        f"{facts['machine']} Store: {facts['server']} on 127.0.0.1 (`./dev services up mongo`); "
        f"Apache Kafka 3.9.1, a topic of {facts['partitions']} partitions holding JSON inference records as "
        f"`infer` writes them. Steady-state documents/s (start-up excluded, see bench/sink.py).",
        "",
        "| sink | records | documents/s | vs baseline |",
        "|---|---:|---:|---:|",
        f"| seed-style Python (confluent-kafka, pymongo `insert_one` per message) | {facts['baseline_records']:,} "
        f"| {baseline['rate']:,.0f} | 1.0x |",
        f"| `iotinfer sink` (bulk upserts of <= {facts['batch_max']:,}, offsets in Kafka transactions) | "
        f"{facts['records']:,} | {ours['rate']:,.0f} | {ratio:.1f}x |",
        "",
        f"iotinfer's whole run, start-up and group join included: {facts['records']:,} documents in "
        f"{ours['wall']:.1f} s.",
        "",
        f"Against the target (iotinfer >= {TARGET:g}x the baseline): {ratio:.1f}x, "
        f"{'met' if ratio >= TARGET else 'not met'}; {TARGET:g}x the baseline is "
        f"{TARGET * baseline['rate']:,.0f} documents/s.",
    ]


if __name__ == "__main__":
    main()
