#!/usr/bin/env python3
"""`./dev bench pipeline`: images/s from device to inference record on the real broker, for
iotinfer (`produce` + `infer`: batches, transactions, exactly-once) and for a seed-style
Python pipeline (bench/seed_pipeline.py: confluent-kafka + PyTorch, one image at a time, as
the original system did), on the same broker, images and model, in the same run. Then the
latency of each at a fixed moderate rate. Writes the table into BENCHMARKS.md.

Throughput: the consumer side runs first; `iotinfer produce` then sends N images as fast as
it can; images/s = N / (last inferred_at - first produced_at), so it covers the whole path
(encode, Kafka, decode, classify, publish and commit) with both sides sharing the cores.
Latency: the same, with the devices held to --rate images/s for --rate-seconds; percentiles
of inferred_at - produced_at (nearest rank), read back with read_committed.
"""
import datetime
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks import delete_topics, driver_arguments, machine_line, write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The Kafka issue's target: iotinfer's throughput over the seed-style pipeline's.
TARGET = 20.0


def create_topics(brokers, names, partitions):
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result(30)


def read_records(brokers, topic, expected, timeout_s):
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"bench-reader-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    records, deadline = [], time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            records.append(json.loads(message.value()))
    consumer.close()
    if len(records) < expected:
        raise SystemExit(f"bench: only {len(records)} of {expected} records arrived on {topic} in {timeout_s:.0f} s")
    return records


def percentile(sorted_values, p):
    return sorted_values[max(1, math.ceil(p * len(sorted_values))) - 1]


def run(args, engine, images, rate=0.0, png_compression=0, infer_args=()):
    """Starts `engine`'s consumer side, sends `images`, returns the records it wrote. `infer_args`
    go to `iotinfer infer` as they are."""
    tag = f"{engine}-{uuid.uuid4().hex[:8]}"
    source, sink, dlq = f"bench-images-{tag}", f"bench-inferences-{tag}", f"bench-dlq-{tag}"
    create_topics(args.brokers, [source, sink, dlq], args.partitions)
    if engine.startswith("iotinfer"):
        command = [args.iotinfer, "infer", "--brokers", args.brokers, "--group", tag, "--input-topic", source,
                   "--output-topic", sink, "--dlq-topic", dlq, "--log-every-ms", "0"]
        if engine == "iotinfer-fp32":
            command += ["--engine", "onednn"]
        command += list(infer_args)
    else:
        command = [sys.executable, os.path.join(ROOT, "bench", "seed_pipeline.py"), "--brokers", args.brokers,
                   "--group", tag, "--input", source, "--output", sink]
    service = subprocess.Popen(command)
    try:
        # Both join their group at once (the local broker has no initial rebalance delay);
        # this wait keeps the join out of the measured window.
        time.sleep(3)
        subprocess.run([args.iotinfer, "produce", "--brokers", args.brokers, "--topic", source, "--images",
                        str(images), "--producers", "8", "--rate", str(rate), "--seed", "7",
                        "--png-compression", str(png_compression)],
                       check=True, stdout=subprocess.DEVNULL)
        return read_records(args.brokers, sink, images, timeout_s=600)
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(60)
        delete_topics(args.brokers, [source, sink, dlq])


def throughput(records):
    span_us = max(r["inferred_at"] for r in records) - min(r["produced_at"] for r in records)
    return len(records) / (span_us / 1e6)


def latencies(records):
    ms = sorted((r["inferred_at"] - r["produced_at"]) / 1000 for r in records)
    return {"p50": percentile(ms, 0.50), "p99": percentile(ms, 0.99), "max": ms[-1]}


def arguments(description):
    """The flags of every benchmark that runs `run`."""
    ap = driver_arguments(description)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--images", type=int, default=30000, help="images for iotinfer's throughput run")
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--rate-seconds", type=float, default=15)
    return ap


def main():
    ap = arguments(__doc__)
    ap.add_argument("--baseline-images", type=int, default=3000, help="images for the baseline's throughput run")
    ap.add_argument("--warmup-images", type=int, default=150000,
                    help="images sent through iotinfer first and not measured: a broker just started "
                         "(as ./dev bench starts one) spends about twice the CPU per message until its JIT "
                         "has warmed up, over roughly 200,000 messages")
    ap.add_argument("--rounds", type=int, default=3,
                    help="throughput rounds, each running every pipeline in turn; the table shows medians, "
                         "as both sides move by a third from run to run on this machine")
    args = ap.parse_args()

    if args.warmup_images:
        run(args, "iotinfer", args.warmup_images)

    # name: (consumer side, images, the devices' PNG level)
    runs = {"iotinfer": ("iotinfer", args.images, 0), "iotinfer-fp32": ("iotinfer-fp32", args.images, 0),
            "iotinfer-png1": ("iotinfer", args.images, 1), "baseline": ("baseline", args.baseline_images, 0)}
    results = {name: {"images": images, "rounds": []} for name, (_, images, _) in runs.items()}
    for round_number in range(args.rounds):
        for name, (engine, images, png) in runs.items():
            results[name]["rounds"].append(throughput(run(args, engine, images, png_compression=png)))
            print(json.dumps({"round": round_number + 1, name: results[name]["rounds"][-1]}), flush=True)
    for r in results.values():
        r["throughput"] = statistics.median(r["rounds"])
    paced = int(args.rate * args.rate_seconds)
    for name, (engine, _, png) in runs.items():
        results[name]["latency"] = latencies(run(args, engine, paced, rate=args.rate, png_compression=png))
        print(json.dumps({name: results[name]}), flush=True)

    facts = {"machine": machine_line(), "partitions": args.partitions, "warmup_images": args.warmup_images,
             "rounds": args.rounds, "rate": args.rate, "paced": paced}
    print(write_section(args.report, "pipeline", report_lines(results, facts)))


def report_lines(results, facts):
    """The section's lines: `results` as main measures them (by pipeline name), `facts` the run's facts."""
    ours, base = results["iotinfer"], results["baseline"]
    rate = facts["rate"]
    sustained = lambda r: "yes" if r["latency"]["p99"] < 1000 else "no: a backlog builds up"
    lines = [
        f"### Pipeline: produce -> Kafka -> infer -> inferences, iotinfer vs a seed-style Python pipeline "
        f"({datetime.date.today()})",
        "",
        f"{facts['machine']} Apache Kafka 3.9.1 on 127.0.0.1 (`./dev services up kafka`), topics of "
        f"{facts['partitions']} partitions, 8 devices sending Fashion-MNIST test images as PNG (`iotinfer produce`, "
        "stored PNGs by default, `--png-compression 0`). "
        "iotinfer: `iotinfer infer` with its defaults (int8 with its close calls classified again in FP32, so "
        "FP32's predictions; dynamic batches of up to 2048, one Kafka transaction per batch, exactly-once); also "
        "with `--engine onednn` (all FP32), and with devices compressing their PNGs at zlib level 1, an encoding "
        "that here runs on the pipeline's shared cores. "
        "Baseline: `bench/seed_pipeline.py`, confluent-kafka + PyTorch eager on the same "
        "trained model, one image at a time, auto-commit (at-least-once), as the original system did. "
        "Everything shares the machine's cores with the broker and the producer. "
        f"{facts['warmup_images']:,} images go through the broker first, unmeasured: a freshly started broker "
        "spends more CPU per message until its JIT has warmed up.",
        "",
        f"| pipeline | images | images/s (first produced -> last inferred), median of {facts['rounds']} | rounds | "
        f"p50 at {rate:,.0f} img/s | p99 at {rate:,.0f} img/s | max at {rate:,.0f} img/s | "
        "keeps up |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for name, r in (("iotinfer", ours), ("iotinfer `--engine onednn` (FP32)", results["iotinfer-fp32"]),
                    ("iotinfer, devices at `--png-compression 1`", results["iotinfer-png1"]),
                    ("seed-style Python", base)):
        lat = r["latency"]
        each = ", ".join(f"{t:,.0f}" for t in r["rounds"])
        lines.append(f"| {name} | {r['images']:,} | {r['throughput']:,.0f} | {each} | {lat['p50']:,.1f} ms | "
                     f"{lat['p99']:,.1f} ms | {lat['max']:,.1f} ms | {sustained(r)} |")
    ratio = ours["throughput"] / base["throughput"]
    round_ratios = [o / b for o, b in zip(ours["rounds"], base["rounds"])]
    by_round = ", ".join(f"{x:.1f}x" for x in round_ratios)
    lines += ["", f"iotinfer / baseline throughput, medians: **{ratio:.1f}x** "
              f"(round by round: {by_round}) "
              f"(FP32: {results['iotinfer-fp32']['throughput'] / base['throughput']:.1f}x; devices at level 1: "
              f"{results['iotinfer-png1']['throughput'] / base['throughput']:.1f}x). "
              f"Latency runs: {facts['paced']:,} images paced at {rate:,.0f} images/s over all devices.",
              "",
              f"Against the target (iotinfer >= {TARGET:g}x the baseline, medians): {ratio:.1f}x, "
              f"{'met' if ratio >= TARGET else 'not met'}; the lowest round {min(round_ratios):.1f}x, "
              f"{sum(x < TARGET for x in round_ratios)} of {len(round_ratios)} rounds under {TARGET:g}x."]
    return lines


if __name__ == "__main__":
    main()
