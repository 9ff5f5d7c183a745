#!/usr/bin/env python3
"""`./dev bench analytics`: per-producer counts over a large `images` collection, and the
live count's freshness.

1. Loads --docs inference documents (default 10,000,000; the schema `iotinfer sink` writes,
   8 producers, 10% incorrect, 2% unlabelled) into a private MongoDB-protocol server that
   ./dev starts for this run (FerretDB on SQLite, its own data directory, removed after),
   with pymongo `insert_many` (unordered, batches of 10,000) from two processes; then the
   unique index on `id`, as the sink has it.
2. Times `iotinfer batch --engine native` (the documents stream through C++) and
   `--engine mongo` (the server runs a $group pipeline), wall clock of the whole command,
   with each one's peak resident memory, and a plain pymongo client-side count of the first
   --reference-docs documents as the reference rate. Every engine must give the counts the
   loader knows.
3. Stream freshness: `iotinfer stream` (default 500 ms updates) on a fresh topic fed at a
   steady --rate for --seconds; the k-th record's freshness is the time from its delivery
   to Kafka until the stored total first reaches k (polled every 10 ms), p50 and p99.
"""
import collections
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pymongo
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks import driver_arguments, machine_line, server_name, write_section

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
BATCH = 10000


def document(i, now):
    producer = i % 8
    actual = CLASSES[i % 10]
    # Deterministic: 10% incorrect, 2% unlabelled; the truth is computable without the server.
    predicted = CLASSES[(i + 1) % 10] if (i // 8) % 10 == 0 else actual
    return {"id": f"bench-{i}", "image_prediction": predicted, "actual_value": None if i % 50 == 7 else actual,
            "producer_id": producer, "confidence": 0.9, "model": "fmnist-cnn-bench",
            "produced_at": now, "inferred_at": now, "stored_at": now}


def tally(docs):
    """{producer_id: (incorrect, total, unlabelled)} of `docs`, counted here in Python."""
    counts = collections.defaultdict(lambda: [0, 0, 0])
    for d in docs:
        c = counts[d["producer_id"]]
        c[1] += 1
        if d["actual_value"] is None:
            c[2] += 1
        elif d["actual_value"] != d["image_prediction"]:
            c[0] += 1
    return {p: tuple(c) for p, c in counts.items()}


def load_part(args):
    mongo, db, begin, end = args
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    images = pymongo.MongoClient(mongo)[db]["images"]
    for start in range(begin, end, BATCH):
        images.insert_many([document(i, now) for i in range(start, min(end, start + BATCH))], ordered=False)


def load(mongo, db, docs, workers):
    bounds = [docs * w // workers for w in range(workers + 1)]
    started = time.perf_counter()
    with multiprocessing.Pool(workers) as pool:
        for done, _ in enumerate(pool.imap_unordered(load_part, [(mongo, db, bounds[w], bounds[w + 1])
                                                                  for w in range(workers)]), 1):
            print(f"bench: loader {done}/{workers} done after {time.perf_counter() - started:.0f} s", flush=True)
    seconds = time.perf_counter() - started
    index_started = time.perf_counter()
    pymongo.MongoClient(mongo)[db]["images"].create_index("id", unique=True, name="id_1")
    return seconds, time.perf_counter() - index_started


def rss_gib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def run_measured(command, server_pid, server_limit_gib):
    """Runs `command`, watching the server's resident memory. Returns a dict: seconds, the
    command's peak RSS (MiB), the server's peak RSS (GiB), and `killed` (the server was
    killed for passing `server_limit_gib`, so as not to take the machine down)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout))
    reader.start()
    peak, killed = 0.0, False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, rss_gib(server_pid))
        if peak > server_limit_gib and not killed:
            os.kill(server_pid, signal.SIGKILL)
            killed = True
        time.sleep(0.5)
    reader.join()
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0 and not killed:
        raise SystemExit(f"bench: {' '.join(command)} failed:\n{''.join(output)}")
    return {"seconds": seconds, "rss": usage.ru_maxrss / 1024, "server": peak, "killed": killed}


def stored_counts(mongo, db):
    return {d["producer_id"]: (d["incorrect_count"], d["total"], d["unlabelled"])
            for d in pymongo.MongoClient(mongo)[db]["incorrect_inference_results"].find({})}


def pymongo_count(mongo, db, limit):
    """Seconds for a Python client to count the first `limit` documents (the server's read
    rate is the same for all of them, so this is a rate, not a total)."""
    started = time.perf_counter()
    counts = tally(pymongo.MongoClient(mongo)[db]["images"].find(
        {}, {"_id": 0, "producer_id": 1, "image_prediction": 1, "actual_value": 1}, batch_size=10000).limit(limit))
    seconds = time.perf_counter() - started
    if sum(c[1] for c in counts.values()) != limit:
        raise SystemExit("bench: the pymongo count read the wrong number of documents")
    return seconds


def freshness(args, mongo, db, engine_args=(), warmup=5):
    """p50 and p99 freshness (ms) of `iotinfer stream` with `engine_args`, and the records sent.
    `warmup`: seconds between the start of the stream command and the first record."""
    topic = f"bench-stream-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": args.brokers})
    for future in admin.create_topics([NewTopic(topic, 6, 1)]).values():
        future.result(30)
    results = pymongo.MongoClient(mongo)[db]["incorrect_inference_results"]
    stream = subprocess.Popen([args.iotinfer, "stream", "--brokers", args.brokers, "--store", mongo, "--db", db,
                               "--topic", topic, "--group", f"bench-{topic}", "--log-every-ms", "0",
                               *engine_args])
    total = args.rate * args.seconds
    delivered = [0.0] * total
    seen = []  # (time, stored total)
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            t = sum(d["total"] for d in results.find({}, {"total": 1}))
            seen.append((time.perf_counter(), t))
            time.sleep(0.01)

    try:
        time.sleep(warmup)  # group join, or the streaming query's start
        poller = threading.Thread(target=poll)
        poller.start()
        producer = Producer({"bootstrap.servers": args.brokers, "linger.ms": 0})
        acked = [0]

        def on_delivery(err, _msg):
            if err is None:
                delivered[acked[0]] = time.perf_counter()
                acked[0] += 1

        start = time.perf_counter()
        for i in range(total):
            while time.perf_counter() < start + i / args.rate:
                producer.poll(0.001)
            d = document(i, None)
            d["produced_at"] = d["inferred_at"] = int(time.time() * 1e6)
            del d["stored_at"]
            producer.produce(topic, key=str(d["producer_id"]), value=json.dumps(d), on_delivery=on_delivery)
            producer.poll(0)
        producer.flush(30)
        deadline = time.perf_counter() + 30
        while (not seen or seen[-1][1] < total) and time.perf_counter() < deadline:
            time.sleep(0.05)
        stop.set()
        poller.join()
    finally:
        stream.terminate()
        stream.wait(60)
    if acked[0] != total or seen[-1][1] != total:
        raise SystemExit(f"bench: stream freshness run lost records ({acked[0]} acked, {seen[-1][1]} counted)")
    lags, j = [], 0
    for k in range(1, total + 1):
        while seen[j][1] < k:
            j += 1
        lags.append((seen[j][0] - delivered[k - 1]) * 1000)
    lags.sort()
    return lags[len(lags) // 2], lags[int(len(lags) * 0.99)], total


def main():
    ap = driver_arguments(__doc__)
    ap.add_argument("--mongo", required=True, help="the private server ./dev started for this run")
    ap.add_argument("--docs", type=int, default=10_000_000)
    ap.add_argument("--rate", type=int, default=2000, help="records/s for the freshness run")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--reference-docs", type=int, default=1_000_000,
                    help="documents for the pymongo reference and the smaller engine runs")
    ap.add_argument("--server-pid", type=int, required=True, help="the private server's pid, to watch its memory")
    ap.add_argument("--server-memory-fraction", type=float, default=0.4,
                    help="stop the server when its RSS passes this share of the machine's memory")
    args = ap.parse_args()

    db = "bench_analytics"
    server = server_name(args.mongo)  # asked now: the last run may stop the server
    client = pymongo.MongoClient(args.mongo)
    client.drop_database(db)
    print(f"bench: loading {args.docs:,} documents", flush=True)
    load_seconds, index_seconds = load(args.mongo, db, args.docs, 2)
    limit_gib = args.server_memory_fraction * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    rows = []
    reference = min(args.reference_docs, args.docs)
    print(f"bench: pymongo client-side count of {reference:,} documents", flush=True)
    rows.append((f"pymongo client-side count (reference)", reference,
                 {"seconds": pymongo_count(args.mongo, db, reference), "rss": None, "server": None, "killed": False,
                  "engine": "reference"}))
    print("bench: stream freshness", flush=True)
    p50, p99, streamed = freshness(args, args.mongo, "bench_stream")
    client.drop_database("bench_stream")

    def batch(engine, database, docs, out):
        if rows[-1][2]["killed"]:
            return  # no server left to run on
        print(f"bench: iotinfer batch --engine {engine} over {docs:,} documents", flush=True)
        run = run_measured([args.iotinfer, "batch", "--store", args.mongo, "--db", database, "--engine", engine,
                            "--out", out], args.server_pid, limit_gib)
        if not run["killed"] and stored_counts(args.mongo, database) != tally(document(i, None) for i in range(docs)):
            raise SystemExit(f"bench: the {engine} engine's counts are wrong")
        run["engine"] = engine
        rows.append((f"`iotinfer batch --engine {engine}`", docs, run))
        print(f"bench: {engine}: {run}", flush=True)

    with tempfile.TemporaryDirectory() as out:
        # The push-down engine at a size the server can hold, and both at the full size. Native
        # runs first: FerretDB keeps the memory a $group took, which would show in the native
        # runs' server column. The run that may exhaust the server's memory goes last.
        small = "bench_analytics_small"
        client.drop_database(small)
        load(args.mongo, small, reference, 2)
        batch("native", small, reference, out)
        batch("native", db, args.docs, out)
        batch("mongo", small, reference, out)
        if not rows[-1][2]["killed"]:
            client.drop_database(small)
        batch("mongo", db, args.docs, out)

    facts = {"docs": args.docs, "machine": machine_line(), "server": server, "load_seconds": load_seconds,
             "index_seconds": index_seconds, "limit_gib": limit_gib, "rate": args.rate, "seconds": args.seconds,
             "streamed": streamed, "p50": p50, "p99": p99}
    print(write_section(args.report, "analytics", report_lines(rows, facts)))


def report_lines(rows, facts):
    """The section's lines: `rows` (label, documents, run) as main measures them, the pymongo
    reference first; `facts` the run's facts."""
    limit_gib = facts["limit_gib"]
    lines = [
        f"### Analytics over {facts['docs']:,} documents ({time.strftime('%Y-%m-%d')})",
        "",
        f"{facts['machine']} Store: {facts['server']}, a private instance on 127.0.0.1 started for the run. "
        f"Loaded with pymongo `insert_many` from 2 processes in {facts['load_seconds']:.0f} s "
        f"({facts['docs'] / facts['load_seconds']:,.0f} documents/s), unique index on `id` built in "
        f"{facts['index_seconds']:.0f} s. "
        "Every engine's counts checked against the loader's. Times are whole commands (start, scan or "
        "aggregation, results write, CSV and charts). The pymongo reference counts the first documents "
        "client-side in Python: the rate at which the server hands documents to any reader.",
        "",
        "| engine | documents | seconds | documents/s | client peak RSS | server peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, docs, run in rows:
        if run["killed"]:
            lines.append(f"| {name} | {docs:,} | did not finish: the server was stopped after {run['seconds']:.0f} s "
                         f"when its memory passed {limit_gib:.1f} GiB | - | - | {run['server']:.1f} GiB |")
            continue
        client_rss = f"{run['rss']:.0f} MiB" if run["rss"] else "-"
        server_rss = f"{run['server']:.1f} GiB" if run["server"] else "-"
        lines.append(f"| {name} | {docs:,} | {run['seconds']:.1f} | {docs / run['seconds']:,.0f} | {client_rss} | "
                     f"{server_rss} |")
    finished = [(docs, run) for _, docs, run in rows if not run["killed"]]
    reference = next((docs / run["seconds"] for docs, run in finished if run.get("engine") == "reference"), None)
    native = [f"{docs / run['seconds'] / reference:.2f}x over {docs:,} documents"
              for docs, run in finished if reference and run.get("engine") == "native"]
    pushdown = [f"{run['server'] * 2**20 / docs:.1f} KiB per document over {docs:,} documents"
                for docs, run in finished if run.get("engine") == "mongo" and run["server"]]
    summary = []
    if native:
        summary.append("The native engine's documents/s against the reference's: " + ", ".join(native) + ".")
    if pushdown:
        summary.append("The push-down engine's server peak RSS: " + ", ".join(pushdown) + ".")
    if summary:
        lines += ["", " ".join(summary)]
    lines += [
        "",
        f"Stream freshness (record delivered to Kafka until the stored total counts it; `iotinfer stream` "
        f"with 500 ms updates, {facts['rate']:,} records/s for {facts['seconds']} s = {facts['streamed']:,} records, "
        f"6 partitions, same server): p50 {facts['p50']:.0f} ms, p99 {facts['p99']:.0f} ms.",
    ]
    return lines


if __name__ == "__main__":
    main()
