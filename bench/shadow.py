#!/usr/bin/env python3
"""`./dev bench shadow`: what a shadow model costs the active one. `iotinfer infer` on the real
broker without a shadow, then with `--shadow-model` on every image and on a tenth of them:
images/s through a backlog (first produced -> last inferred, as `./dev bench pipeline` measures
it) and latency (produced_at -> inferred_at) with the devices held to --rate images/s. The
active model's records are read back, so the latency is what users of `inferences` see. Writes
the table into BENCHMARKS.md.
"""
import datetime
import json
import os
import shutil
import statistics
import tempfile

from benchmarks import machine_line, write_section
from pipeline import arguments, latencies, run, throughput

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = arguments(__doc__)
    ap.add_argument("--warmup-images", type=int, default=100000,
                    help="images sent through first and not measured, while the broker's JIT warms up")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shadow-model", default=os.path.join(ROOT, "model", "fmnist-cnn-aug.onnx"),
                    help="the candidate (default: the augmented model)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        shadow = args.shadow_model
        if not os.path.exists(shadow):
            # Any other version will do for the cost: the committed model under another name.
            shadow = shutil.copy(os.path.join(ROOT, "model", "fmnist-cnn.onnx"),
                                 os.path.join(scratch, "candidate.onnx"))
        configs = {"no shadow": [], "shadow on every image": ["--shadow-model", shadow],
                   "shadow on 10% of the images": ["--shadow-model", shadow, "--shadow-sample", "0.1"]}
        if args.warmup_images:
            run(args, "iotinfer", args.warmup_images)
        results = {name: {"rounds": []} for name in configs}
        for round_number in range(args.rounds):
            for name, extra in configs.items():
                results[name]["rounds"].append(throughput(run(args, "iotinfer", args.images, infer_args=extra)))
                print(json.dumps({"round": round_number + 1, name: results[name]["rounds"][-1]}), flush=True)
        paced = int(args.rate * args.rate_seconds)
        for name, extra in configs.items():
            results[name]["throughput"] = statistics.median(results[name]["rounds"])
            results[name]["latency"] = latencies(run(args, "iotinfer", paced, rate=args.rate, infer_args=extra))
            print(json.dumps({name: results[name]}), flush=True)

    base = results["no shadow"]
    rate = args.rate
    lines = [
        f"### Shadow model: what it costs the active one ({datetime.date.today()})",
        "",
        f"{machine_line()} Apache Kafka on 127.0.0.1, topics of {args.partitions} partitions, 8 devices; "
        f"`iotinfer infer` with its defaults, the shadow `{os.path.basename(shadow)}` on the same engine. "
        f"Throughput: {args.images:,} images as fast as the devices send them, median of {args.rounds} rounds. "
        f"Latency: {paced:,} images paced at {rate:,.0f} images/s, the active model's records. "
        f"{args.warmup_images:,} images went through first, unmeasured.",
        "",
        f"| infer | images/s, median | rounds | vs no shadow | p50 at {rate:,.0f} img/s | p99 | max |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lat = r["latency"]
        each = ", ".join(f"{t:,.0f}" for t in r["rounds"])
        lines.append(f"| {name} | {r['throughput']:,.0f} | {each} | {r['throughput'] / base['throughput']:.2f}x | "
                     f"{lat['p50']:,.1f} ms | {lat['p99']:,.1f} ms | {lat['max']:,.1f} ms |")
    print(write_section(args.report, "shadow", lines))


if __name__ == "__main__":
    main()
