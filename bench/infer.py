#!/usr/bin/env python3
"""`./dev bench infer`: images/s of iotinfer's classifier against PyTorch running the same
model, same images, same machine, same run; writes the table into BENCHMARKS.md.

PyTorch runs the trained nn.Module in eval mode under inference_mode, as a PyTorch service
would (and as the original system did). Its own default thread count and the machine's full
core count are both measured; the headline ratio uses the same thread count as iotinfer.
TorchScript (traced, frozen, optimize_for_inference) is shown too, as the best PyTorch does.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import torch

from benchmarks import cpu_facts, load_trained_model, machine_line, write_section

# The foundation issue's targets: iotinfer's images/s over PyTorch eager's at the same thread
# count, by batch size.
TARGETS = {1: 9.0, 64: 3.5}


def time_torch(fn, batch, x_all, seconds):
    n = len(x_all)
    for i in range(5):
        fn(x_all[(i * batch) % (n - batch):][:batch])
    calls, start = 0, time.perf_counter()
    while True:
        off = (calls * batch) % (n - batch)
        fn(x_all[off:off + batch])
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * batch / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--batches", default="1,8,64,256")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    cores = os.cpu_count()

    def run_binary(engine):
        out = subprocess.run([args.binary, "--batches", args.batches, "--seconds", str(args.seconds),
                              "--threads", str(cores), "--engine", engine],
                             check=True, capture_output=True, text=True).stdout
        return [json.loads(line) for line in out.splitlines()]

    records = run_binary("auto")
    ours = {r["batch"]: r for r in records if r["engine"] == "iotinfer"}
    on_fp32 = {r["batch"]: r for r in run_binary("onednn") if r["engine"] == "iotinfer"}
    on_opencv = {r["batch"]: r for r in run_binary("opencv") if r["engine"] == "iotinfer"}
    measured_peak = next(r for r in records if r["engine"] == "fma-peak")["fma_per_second"] / 1e9

    train, metrics, model = load_trained_model()
    x_u8, _ = train.load_split(train.DEFAULT_DATA, "test")
    default_threads = torch.get_num_threads()

    def eager(xb):
        with torch.inference_mode():
            return model(xb.float()).argmax(1)

    with torch.inference_mode():
        scripted = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x_u8[:8].float())))

    def script(xb):
        with torch.inference_mode():
            return scripted(xb.float()).argmax(1)

    rows = []
    for batch in batches:
        row = {"batch": batch, "iotinfer": ours[batch]["images_per_second"], "rechecked": ours[batch]["rechecked"],
               "fp32": on_fp32[batch]["images_per_second"], "opencv": on_opencv[batch]["images_per_second"]}
        torch.set_num_threads(default_threads)
        row["eager_default"] = time_torch(eager, batch, x_u8, args.seconds)
        torch.set_num_threads(cores)
        row["eager"] = time_torch(eager, batch, x_u8, args.seconds)
        row["script"] = time_torch(script, batch, x_u8, args.seconds)
        rows.append(row)
        print(json.dumps(row), flush=True)

    _, mhz, fma_per_cycle = cpu_facts()
    first = ours[batches[0]]
    facts = {"machine": machine_line(), "arch": metrics["arch"], "macs": metrics["macs_per_image"],
             "replicas": first["threads"], "engine": first["inference_engine"], "opencv": first["opencv"],
             "torch": torch.__version__, "default_threads": default_threads, "seconds": args.seconds,
             "cores": cores, "peak": measured_peak, "mhz": mhz, "fma_per_cycle": fma_per_cycle}
    print(write_section(args.report, "infer", report_lines(rows, facts)))


def report_lines(rows, facts):
    """The section's lines: `rows` as main measures them (one per batch size), `facts` the run's facts."""
    cores, macs, peak = facts["cores"], facts["macs"], facts["peak"]
    nominal_peak = cores * facts["mhz"] / 1000 * facts["fma_per_cycle"]
    lines = [
        f"### Inference: iotinfer vs PyTorch, same model ({datetime.date.today()})",
        "",
        f"{facts['machine']} "
        f"Model `{facts['arch']}` ({macs / 1e6:.2f} M multiply-adds per image), all 10,000 "
        f"Fashion-MNIST test images cycled, uint8 pixels in, class out. iotinfer, each engine as "
        f"{facts['replicas']} single-threaded replicas: its default, `{facts['engine']}` "
        f"(oneDNN, Debian's libdnnl 2.6: every layer but the first convolution in int8, and the close calls "
        f"classified again in FP32, so that its predictions are FP32's; model/MODEL.md, int8); its `--engine onednn`, "
        f"all FP32; and its `--engine opencv` (OpenCV {facts['opencv']} DNN). "
        f"PyTorch {facts['torch']} (Debian build, oneDNN), eval mode, inference_mode; its default "
        f"on this machine is {facts['default_threads']} thread(s). {facts['seconds']:.0f} s per cell.",
        "",
        f"| batch | iotinfer img/s | of which rechecked in FP32 | iotinfer `--engine onednn` (FP32) img/s "
        f"| iotinfer `--engine opencv` img/s | PyTorch eager, {cores} threads "
        f"| PyTorch eager, default ({facts['default_threads']}) | PyTorch TorchScript frozen, {cores} threads "
        f"| iotinfer / eager {cores}t | FP32 / eager {cores}t | iotinfer / eager default | iotinfer / TorchScript "
        f"| FP32 % of FMA peak | TorchScript % of FMA peak |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    def share(images_per_second):
        return f"{100 * images_per_second * macs / 1e9 / peak:.0f}%"

    for r in rows:
        lines.append(f"| {r['batch']} | {r['iotinfer']:,.0f} | {100 * r['rechecked']:.1f}% | {r['fp32']:,.0f} | "
                     f"{r['opencv']:,.0f} | {r['eager']:,.0f} | {r['eager_default']:,.0f} | {r['script']:,.0f} | "
                     f"{r['iotinfer'] / r['eager']:.1f}x | {r['fp32'] / r['eager']:.1f}x | "
                     f"{r['iotinfer'] / r['eager_default']:.1f}x | {r['iotinfer'] / r['script']:.1f}x | "
                     f"{share(r['fp32'])} | {share(r['script'])} |")
    lines += [
        "",
        f"FMA peak: {peak:.0f} G FP32 multiply-adds/s, measured in the same run by 12 independent "
        f"AVX2 FMA chains per core on all {cores} cores (the nominal {facts['mhz'] / 1000:.2f} GHz x "
        f"{facts['fma_per_cycle']} FMA/cycle x {cores} cores would say {nominal_peak:.0f} G; the difference is turbo). "
        "Share of peak = images/s x multiply-adds per image / peak (oneDNN skips the taps in the zero "
        "padding, about a fifth of them, so its real share is lower). int8 is not counted against an FP32 peak.",
    ]
    by_batch = {r["batch"]: r for r in rows}
    verdicts, fp32_short = [], []
    for batch, target in TARGETS.items():
        r = by_batch.get(batch)
        if r is None:
            continue
        ratio = r["iotinfer"] / r["eager"]
        verdicts.append(f"batch {batch}, >= {target:g}x: {ratio:.1f}x, {'met' if ratio >= target else 'not met'}")
        if r["fp32"] / r["eager"] < target:
            needed = target * r["eager"]
            fp32_short.append(f"FP32 alone would need {needed:,.0f} img/s at batch {batch} for {target:g}x, "
                              f"{share(needed)} of the FMA peak as counted here (it ran at {share(r['fp32'])})")
    if verdicts:
        lines += ["", f"Against the targets (iotinfer / PyTorch eager, {cores} threads each): "
                  + "; ".join(verdicts) + "." + "".join(f" {s}." for s in fp32_short)]
    return lines


if __name__ == "__main__":
    sys.exit(main())
