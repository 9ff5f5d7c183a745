#!/usr/bin/env python3
"""`./dev bench spark`: the Spark engine against the native and push-down engines. Two parts,
each rewriting its own section of the report (`--parts stream,batch`, both by default):

1. Stream freshness (section spark-stream) at the same --rate, on fresh topics: `iotinfer
   stream` (native: at its default 500 ms updates, and back to back) and `iotinfer stream
   --engine spark` (Structured Streaming, complete mode, micro-batches back to back). The k-th
   record's freshness is the time from its delivery to Kafka until the stored total, polled
   every 10 ms, first reaches k. --rounds rounds (default 3), the engines taking turns in each;
   the medians of the rounds are compared, since one run's p99 moves a lot on two shared cores.
2. Batch (section spark): for each --docs size (default 1,000,000 and 10,000,000), loads that
   many inference documents (as `./dev bench analytics` does: the sink's schema, 8 producers,
   10% incorrect, 2% unlabelled) into a private MongoDB-protocol server started for this run,
   then times `iotinfer batch --engine native`, `--engine spark` (Spark Connect; Spark reads
   through the MongoDB connector) and `--engine mongo`, the whole command each, and checks
   every engine's counts against the loader's. Peak memory of the client and of the store
   server are shown, and Spark's own (the Connect server's JVM).
"""
import os
import statistics
import tempfile
import threading
import time

import pymongo

import analytics as a
from benchmarks import driver_arguments, machine_line, server_name, write_section

# The Spark issue's targets: native batch >= 10x Spark's speed; native stream freshness p99 at
# most 1/20 of Spark's.
TARGET_BATCH = 10.0
TARGET_FRESHNESS = 20.0


def spark_settings(pid):
    """The Spark Connect server's command line settings that matter for the numbers."""
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            argv = f.read().split("\0")
    except OSError:
        return "unknown"
    keep = [arg for arg in argv if arg.startswith(("local[", "-Xmx", "spark.sql.shuffle"))]
    return ", ".join(keep)


def watch_rss(pid, peak, stop):
    while not stop.is_set():
        peak[0] = max(peak[0], a.rss_gib(pid))
        time.sleep(0.5)


FRESHNESS_RUNS = (
    # (key, label, engine arguments, warm-up s); each engine also at its most eager setting:
    # updates, and micro-batches, back to back.
    ("native", "`iotinfer stream` (default: 500 ms updates)", [], 5),
    ("eager", "`iotinfer stream --update-ms 0` (updates back to back)", ["--update-ms", "0"], 5),
    ("spark", "`iotinfer stream --engine spark --trigger 0` (micro-batches back to back, complete mode)",
     ["--engine", "spark", "--trigger", "0"], 15),
)


def freshness_rounds(args, client, tmp):
    """{key: [(p50, p99, records) per round]}: the engines take turns, so that a slow spell of
    the machine does not fall on one engine only."""
    runs = {key: [] for key, *_ in FRESHNESS_RUNS}
    for round_no in range(args.rounds):
        for key, _, extra, warmup in FRESHNESS_RUNS:
            db = f"bench_fresh_{key}"
            if key == "spark":
                extra = extra + ["--spark", args.spark, "--checkpoint", os.path.join(tmp, f"checkpoint-{round_no}")]
            print(f"bench: stream freshness, {key}, round {round_no + 1}/{args.rounds}", flush=True)
            runs[key].append(a.freshness(args, args.mongo, db, extra, warmup=warmup))
            print(f"bench: {key} p50/p99 {runs[key][-1][0]:.0f}/{runs[key][-1][1]:.0f} ms", flush=True)
            client.drop_database(db)
    return runs


def batch_runs(args, client, tmp, limit_gib):
    rows, loads = [], []
    for docs in sorted(args.docs):
        db = f"bench_spark_{docs}"
        client.drop_database(db)
        print(f"bench: loading {docs:,} documents", flush=True)
        load_seconds, _ = a.load(args.mongo, db, docs, 2)
        loads.append((docs, load_seconds))
        truth = a.tally(a.document(i, None) for i in range(docs))
        # Push-down last: FerretDB keeps the memory its $group took, and may be stopped.
        for engine in ("native", "spark", "mongo"):
            print(f"bench: iotinfer batch --engine {engine} over {docs:,} documents", flush=True)
            spark_peak, stop = [0.0], threading.Event()
            watcher = threading.Thread(target=watch_rss, args=(args.spark_pid, spark_peak, stop))
            watcher.start()
            run = a.run_measured([args.iotinfer, "batch", "--store", args.mongo, "--db", db, "--engine", engine,
                                  "--spark", args.spark, "--out", os.path.join(tmp, engine)],
                                 args.server_pid, limit_gib)
            stop.set()
            watcher.join()
            run["spark"] = spark_peak[0] if engine == "spark" else None
            if not run["killed"] and a.stored_counts(args.mongo, db) != truth:
                raise SystemExit(f"bench: the {engine} engine's counts are wrong")
            rows.append((engine, docs, run))
            print(f"bench: {engine}: {run}", flush=True)
            if run["killed"]:
                break
        if rows[-1][2]["killed"]:
            break
        client.drop_database(db)
    return rows, loads


def spark_line(args):
    return f"Spark {args.spark_version} Connect server on the same machine ({spark_settings(args.spark_pid)}"


def batch_section(args, server, limit_gib, rows, loads):
    lines = [
        f"### Spark engine against native and push-down ({time.strftime('%Y-%m-%d')})",
        "",
        f"{machine_line()} {spark_line(args)}; MongoDB Spark connector 10.5.0 reading in one pass, "
        f"`--spark-partitions 1`). Store: {server}, a private instance on 127.0.0.1. "
        + "; ".join(f"{d:,} documents loaded in {s:.0f} s" for d, s in loads)
        + ". Every engine's counts checked against the loader's. Times are whole commands (connect, read, "
        "aggregate, results write, CSV and charts).",
        "",
        "| engine | documents | seconds | documents/s | native speed-up | client peak RSS | store peak RSS | Spark peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    native_seconds = {docs: run["seconds"] for engine, docs, run in rows if engine == "native"}
    for engine, docs, run in rows:
        name = f"`iotinfer batch --engine {engine}`"
        if run["killed"]:
            lines.append(f"| {name} | {docs:,} | did not finish: the store was stopped after {run['seconds']:.0f} s "
                         f"when its memory passed {limit_gib:.1f} GiB | - | - | - | {run['server']:.1f} GiB | - |")
            continue
        speed = f"{run['seconds'] / native_seconds[docs]:.1f}x" if engine != "native" else "-"
        spark_rss = f"{run['spark']:.1f} GiB" if run["spark"] else "-"
        lines.append(f"| {name} | {docs:,} | {run['seconds']:.1f} | {docs / run['seconds']:,.0f} | {speed} | "
                     f"{run['rss']:.0f} MiB | {run['server']:.1f} GiB | {spark_rss} |")
    speedups = [(docs, run["seconds"] / native_seconds[docs]) for engine, docs, run in rows
                if engine == "spark" and not run["killed"] and docs in native_seconds]
    if speedups:
        lines += ["", f"Against the target (native >= {TARGET_BATCH:g}x Spark, whole commands): "
                  + ", ".join(f"{x:.1f}x over {docs:,} documents" for docs, x in speedups) + "; "
                  + ("met" if all(x >= TARGET_BATCH for _, x in speedups) else "not met") + "."]
    return lines


def stream_section(args, server, runs):
    p99 = {key: statistics.median(r[1] for r in rounds) for key, rounds in runs.items()}
    lines = [
        f"### Stream freshness: Spark against native ({time.strftime('%Y-%m-%d')})",
        "",
        f"{machine_line()} {spark_line(args)}). Apache Kafka on 127.0.0.1, fresh topics of 6 partitions; "
        f"store: {server}, a private instance on 127.0.0.1. {args.rate:,} records/s for {args.seconds} s per "
        f"run; {args.rounds} rounds, the engines taking turns in each. A record's freshness: from its delivery "
        "to Kafka until the stored total, polled every 10 ms, counts it.",
        "",
        "| engine | p50 ms (median of rounds) | p99 ms, each round | p99 ms (median of rounds) |",
        "|---|---:|---:|---:|",
    ]
    for key, label, *_ in FRESHNESS_RUNS:
        rounds = runs[key]
        each = ", ".join(f"{r[1]:.0f}" for r in rounds)
        lines.append(f"| {label} | {statistics.median(r[0] for r in rounds):.0f} | {each} | {p99[key]:.0f} |")
    back_to_back = p99["spark"] / p99["eager"]
    by_round = ", ".join(f"1/{spark[1] / eager[1]:.1f}" for spark, eager in zip(runs["spark"], runs["eager"]))
    lines += [
        "",
        f"Native p99 is 1/{p99['spark'] / p99['native']:.1f} of Spark's at the default settings, "
        f"1/{back_to_back:.1f} with both back to back (medians of the rounds; round by round, back to back: "
        f"{by_round}).",
        "",
        f"Against the target (native p99 <= 1/{TARGET_FRESHNESS:g} of Spark's, both back to back, medians of the "
        f"rounds): 1/{back_to_back:.1f}, {'met' if back_to_back >= TARGET_FRESHNESS else 'not met'}.",
    ]
    return lines


def main():
    ap = driver_arguments(__doc__)
    ap.add_argument("--mongo", required=True, help="the private server ./dev started for this run")
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--spark", default="sc://127.0.0.1:15002")
    ap.add_argument("--spark-pid", type=int, required=True, help="the Spark Connect server's pid, for its memory")
    ap.add_argument("--spark-version", required=True)
    ap.add_argument("--parts", default="stream,batch", help="which of stream and batch to run (and rewrite)")
    ap.add_argument("--docs", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--rate", type=int, default=2000, help="records/s for the freshness runs")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="freshness runs per engine")
    ap.add_argument("--server-memory-fraction", type=float, default=0.4)
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if not parts or parts - {"stream", "batch"}:
        raise SystemExit("bench: --parts takes stream, batch or both")

    server = server_name(args.mongo)
    client = pymongo.MongoClient(args.mongo)
    limit_gib = args.server_memory_fraction * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    with tempfile.TemporaryDirectory() as tmp:
        if "stream" in parts:
            print(write_section(args.report, "spark-stream", stream_section(args, server,
                                                                             freshness_rounds(args, client, tmp))))
        if "batch" in parts:
            rows, loads = batch_runs(args, client, tmp, limit_gib)
            print(write_section(args.report, "spark", batch_section(args, server, limit_gib, rows, loads)))


if __name__ == "__main__":
    main()
