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
import platform
import subprocess
import sys
import time

import torch

from benchmarks import cpu_facts, load_trained_model, write_section



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

    cpu, mhz, fma_per_cycle = cpu_facts()
    nominal_peak = cores * mhz / 1000 * fma_per_cycle
    macs = metrics["macs_per_image"]
    lines = [
        f"### Inference: iotinfer vs PyTorch, same model ({datetime.date.today()})",
        "",
        f"Machine: {cpu}, {cores} cores at {mhz:.0f} MHz, {platform.system()} {platform.release()}. "
        f"Model `{metrics['arch']}` ({macs / 1e6:.2f} M multiply-adds per image), all 10,000 "
        f"Fashion-MNIST test images cycled, uint8 pixels in, class out. iotinfer, each engine as "
        f"{ours[batches[0]]['threads']} single-threaded replicas: its default, `{ours[batches[0]]['inference_engine']}` "
        f"(oneDNN, Debian's libdnnl 2.6: every layer but the first convolution in int8, and the close calls "
        f"classified again in FP32, so that its predictions are FP32's; README, int8); its `--engine onednn`, "
        f"all FP32; and its `--engine opencv` (OpenCV {ours[batches[0]]['opencv']} DNN). "
        f"PyTorch {torch.__version__} (Debian build, oneDNN), eval mode, inference_mode; its default "
        f"on this machine is {default_threads} thread(s). {args.seconds:.0f} s per cell.",
        "",
        f"| batch | iotinfer img/s | of which rechecked in FP32 | iotinfer `--engine onednn` (FP32) img/s "
        f"| iotinfer `--engine opencv` img/s | PyTorch eager, {cores} threads "
        f"| PyTorch eager, default ({default_threads}) | PyTorch TorchScript frozen, {cores} threads "
        f"| iotinfer / eager {cores}t | FP32 / eager {cores}t | iotinfer / eager default | iotinfer / TorchScript "
        f"| FP32 % of FMA peak | TorchScript % of FMA peak |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    def share(images_per_second):
        return f"{100 * images_per_second * macs / 1e9 / measured_peak:.0f}%"

    for r in rows:
        lines.append(f"| {r['batch']} | {r['iotinfer']:,.0f} | {100 * r['rechecked']:.1f}% | {r['fp32']:,.0f} | "
                     f"{r['opencv']:,.0f} | {r['eager']:,.0f} | {r['eager_default']:,.0f} | {r['script']:,.0f} | "
                     f"{r['iotinfer'] / r['eager']:.1f}x | {r['fp32'] / r['eager']:.1f}x | "
                     f"{r['iotinfer'] / r['eager_default']:.1f}x | {r['iotinfer'] / r['script']:.1f}x | "
                     f"{share(r['fp32'])} | {share(r['script'])} |")
    lines += [
        "",
        f"FMA peak: {measured_peak:.0f} G FP32 multiply-adds/s, measured in the same run by 12 independent "
        f"AVX2 FMA chains per core on all {cores} cores (the nominal {mhz / 1000:.2f} GHz x {fma_per_cycle} "
        f"FMA/cycle x {cores} cores would say {nominal_peak:.0f} G; the difference is turbo). "
        "Share of peak = images/s x multiply-adds per image / peak (oneDNN skips the taps in the zero "
        "padding, about a fifth of them, so its real share is lower). int8 is not counted against an FP32 peak.",
    ]
    print(write_section(args.report, "infer", lines))


if __name__ == "__main__":
    sys.exit(main())
