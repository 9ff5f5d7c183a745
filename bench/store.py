#!/usr/bin/env python3
"""`./dev bench store`: FerretDB on SQLite against FerretDB on PostgreSQL 15, in one run, on
what decides which backend the tests and benchmarks use (issue 26):

1. Sink throughput: one topic of --records inference records (as infer writes them), stored by
   `iotinfer sink` into each store in turn, --rounds rounds with the order alternated;
   steady-state documents/s as bench/sink.py counts it, and the store's CPU per document
   (every process of the store: FerretDB, and PostgreSQL's server with its backends).
2. Device to stored at --latency-rate images/s: bench/latency.py's paced run (16 devices,
   infer, sink), --latency-seconds long, --rounds runs into each store with the order
   alternated, after one discarded run.
3. `iotinfer batch` over --docs documents loaded into each store (pymongo `insert_many`, as
   bench/analytics.py loads them): `--engine native` (the documents stream through C++) and
   `--engine mongo` (the store runs the $group), whole commands, counts checked against the
   loader's.

The stores are private servers ./dev starts for the run; the broker is ./dev services'.
"""
import argparse
import os
import statistics
import tempfile
import time
import uuid

import pymongo

import analytics
import latency
import sink
from benchmarks import delete_topics, driver_arguments, machine_line, server_name, write_section

BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL 15"}


def tree_cpu_seconds(pid):
    """CPU seconds of `pid` and every process under it, the exited ones its descendants waited
    for included: PostgreSQL does its work in a backend process per connection."""
    stats = {}  # pid: (parent, utime + stime + cutime + cstime in ticks)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            stats[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    tree, grew = {pid}, True
    while grew:
        more = {p for p, (parent, _) in stats.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


def store_cpu(store):
    return sum(tree_cpu_seconds(pid) for pid in store["pids"].values())


def sink_rounds(args, stores):
    """{store name: [run, ...]}: each store's sink runs over the same topic."""
    topic = f"bench-store-{uuid.uuid4().hex[:8]}"
    sink.fill(args.brokers, topic, args.records, args.partitions)
    runs = {s["name"]: [] for s in stores}
    for r in range(args.rounds):
        for store in stores if r % 2 == 0 else stores[::-1]:
            db = f"bench_store_{store['name']}_{r}"
            before = store_cpu(store)
            run = sink.run_iotinfer(argparse.Namespace(**{**vars(args), "mongo": store["uri"]}), topic, db,
                                    args.records, args.batch_max)
            run["store_cpu_ms"] = 1000 * (store_cpu(store) - before) / args.records
            pymongo.MongoClient(store["uri"]).drop_database(db)
            if run["count"] != args.records:
                raise SystemExit(f"bench store: {store['name']} holds {run['count']} of {args.records} documents")
            print(f"bench store: sink into {store['name']}: {run['rate']:,.0f} documents/s, "
                  f"store CPU {run['store_cpu_ms']:.3f} ms a document", flush=True)
            runs[store["name"]].append(run)
    delete_topics(args.brokers, [topic, f"{topic}.dlq"])
    return runs


def batch_runs(args, store, truth, out):
    """(load seconds, index seconds, {engine: run}) over args.docs documents in `store`."""
    db = "bench_store_batch"
    client = pymongo.MongoClient(store["uri"])
    client.drop_database(db)
    print(f"bench store: loading {args.docs:,} documents into {store['name']}", flush=True)
    load_seconds, index_seconds = analytics.load(store["uri"], db, args.docs, 2)
    server_pid = next(iter(store["pids"].values()))
    limit_gib = 0.4 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    runs = {}
    for engine in ("native", "mongo"):
        run = analytics.run_measured([args.iotinfer, "batch", "--store", store["uri"], "--db", db, "--engine", engine,
                                      "--out", out], server_pid, limit_gib)
        if run["killed"]:
            raise SystemExit(f"bench store: {store['name']}'s server passed {limit_gib:.1f} GiB under {engine}")
        if analytics.stored_counts(store["uri"], db) != truth:
            raise SystemExit(f"bench store: the {engine} engine's counts on {store['name']} are wrong")
        print(f"bench store: batch --engine {engine} on {store['name']}: {run['seconds']:.1f} s", flush=True)
        runs[engine] = run
    client.drop_database(db)
    return load_seconds, index_seconds, runs


def report_lines(args, stores, sinks, latencies, batches, facts):
    names = [s["name"] for s in stores]
    lines = [
        f"### Store backends: FerretDB on SQLite against PostgreSQL, one run ({time.strftime('%Y-%m-%d')})",
        "",
        f"{facts['machine']} Stores: {facts['stores']}; private servers on 127.0.0.1 started for the run, "
        "everything on the same cores. Apache Kafka 3.9.1 (`./dev services`), topics of "
        f"{args.partitions} partitions.",
        "",
        "| measure | " + " | ".join(names) + " | faster |",
        "|---|" + "---:|" * len(names) + "---|",
    ]

    def faster(values, higher_is_better):
        order = sorted(range(len(values)), key=lambda i: values[i], reverse=higher_is_better)
        if abs(values[order[0]] - values[order[1]]) <= 0.03 * max(abs(values[order[0]]), abs(values[order[1]])):
            return "neither (within 3%)"
        return names[order[0]]

    def row(label, values, fmt, higher_is_better):
        lines.append(f"| {label} | " + " | ".join(fmt(v) for v in values) + f" | {faster(values, higher_is_better)} |")

    def each_round(label, rounds, fmt, higher_is_better):
        """A row of every round's value for each store, judged on their medians."""
        lines.append(f"| {label} | " + " | ".join(", ".join(fmt(v) for v in values) for values in rounds)
                     + f" | {faster([statistics.median(values) for values in rounds], higher_is_better)} |")

    each_round(f"`iotinfer sink`, documents/s ({args.records:,} records, each round)",
               [[run["rate"] for run in sinks[n]] for n in names], lambda v: f"{v:,.0f}", True)
    row("store CPU a stored document (median round)",
        [statistics.median([r["store_cpu_ms"] for r in sinks[n]]) for n in names], lambda v: f"{v:.3f} ms", False)
    if latencies:
        for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
            each_round(f"device to stored at {args.latency_rate:,}/s, {label} (each round)",
                       [[run["report"]["end_to_end"][key] for run in latencies[n]] for n in names],
                       lambda v: f"{v:.1f} ms", False)
    row(f"`insert_many` load of {args.docs:,} documents, documents/s", [args.docs / batches[n][0] for n in names],
        lambda v: f"{v:,.0f}", True)
    for engine, label in (("native", "`iotinfer batch --engine native`"),
                          ("mongo", "`iotinfer batch --engine mongo` (push-down)")):
        row(f"{label}, seconds", [batches[n][2][engine]["seconds"] for n in names], lambda v: f"{v:.1f}", False)
    lines += ["", "Sink documents/s: steady state, start-up excluded (bench/sink.py); store CPU: every process of "
              "the store, over the whole sink run. Device to stored: bench/latency.py's paced run "
              f"({args.devices} devices, `infer` and `sink` with their defaults), {args.latency_seconds:g} s "
              f"measured after 10 s of warm-up, {args.rounds} runs a store in alternated order after one discarded run "
              "(`./dev bench latency` has the stages). `batch` times "
              "are whole commands; every engine's counts were checked against the loader's."]
    return lines


def main():
    ap = driver_arguments(__doc__)
    ap.add_argument("--broker-pid", type=int, required=True)
    ap.add_argument("--mongo", action="append", required=True, help="NAME=URI,PID[,PID...]: a store and its processes")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--records", type=int, default=100000, help="records for each sink run")
    ap.add_argument("--rounds", type=int, default=3, help="sink and paced runs a store, the order alternated")
    ap.add_argument("--batch-max", type=int, default=5000)
    ap.add_argument("--docs", type=int, default=1_000_000, help="documents for the batch runs")
    ap.add_argument("--latency-rate", type=int, default=1000)
    ap.add_argument("--latency-seconds", type=float, default=30, help="0: no latency runs")
    ap.add_argument("--latency-warmup-seconds", type=float, default=30, help="a discarded paced run first (0: none)")
    ap.add_argument("--devices", type=int, default=16)
    args = ap.parse_args()
    stores = latency.args_stores(args)

    sinks = sink_rounds(args, stores)
    latencies = {}
    if args.latency_seconds > 0:
        paced = argparse.Namespace(**{**vars(args), "seconds": args.latency_seconds, "warmup_seconds": 10,
                                      "infer_args": [], "sink_args": [], "produce_args": [],
                                      "charts": os.path.join(tempfile.gettempdir(), "iotinfer-bench-store")})
        logs = tempfile.mkdtemp(prefix="iotinfer-bench-store-")
        if args.latency_warmup_seconds > 0:
            # Not reported: the first paced run after the broker's start or a burst of other
            # work is slower than the next ones (docs/bench-log.md).
            warm = argparse.Namespace(**{**vars(paced), "seconds": args.latency_warmup_seconds})
            latency.run_iotinfer(warm, stores[0], args.latency_rate, logs)
        for r in range(args.rounds):
            for store in stores if r % 2 == 0 else stores[::-1]:
                run = latency.run_iotinfer(paced, store, args.latency_rate, logs)
                latencies.setdefault(store["name"], []).append(run)
                e2e = run["report"]["end_to_end"]
                print(f"bench store: {store['name']} at {args.latency_rate}/s: p50 {e2e['p50_ms']:.1f}, "
                      f"p99 {e2e['p99_ms']:.1f} ms", flush=True)
    truth = analytics.tally(analytics.document(i, None) for i in range(args.docs))
    batches = {}
    with tempfile.TemporaryDirectory() as out:
        for store in stores:
            batches[store["name"]] = batch_runs(args, store, truth, out)

    facts = {"machine": machine_line(),
             "stores": ", ".join(f"{s['name']}: {server_name(s['uri'], BACKENDS.get(s['name'], s['name']))}"
                                 for s in stores)}
    print(write_section(args.report, "store", report_lines(args, stores, sinks, latencies, batches, facts)))


if __name__ == "__main__":
    main()
