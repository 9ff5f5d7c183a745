#!/usr/bin/env python3
"""`./dev bench infer`: images/s of iotinfer's classifier against PyTorch running the same
model, same images, same machine, same run; writes the table into BENCHMARKS.md.

PyTorch runs the trained nn.Module in eval mode under inference_mode, as a PyTorch service
would (and as the original system did). Its own default thread count and the machine's full
core count are both measured; the headline ratio uses the same thread count as iotinfer.
TorchScript (traced, frozen, optimize_for_inference) is shown too, as the best PyTorch does.

`--isa avx2` runs everything as on a CPU without AVX-512: oneDNN, iotinfer's and the one inside
PyTorch alike, capped with ONEDNN_MAX_CPU_ISA=AVX2, and PyTorch's own kernels with
ATEN_CPU_CAPABILITY=avx2; it writes the block `infer-avx2`. `--isa native,avx2` runs both.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time

from benchmarks import cpu_facts, cpu_flags, load_trained_model, machine_line, write_section

# The foundation issue's targets: iotinfer's images/s over PyTorch eager's at the same thread
# count, by batch size. Issue 26 holds the batch-64 one on CPUs without AVX-512 too.
TARGETS = {1: 9.0, 64: 3.5}

# What each --isa sets for every process it runs: oneDNN reads ONEDNN_MAX_CPU_ISA (and its old
# name) when it first needs its ISA, PyTorch its ATEN_CPU_CAPABILITY when it loads; "native"
# clears them, so that nothing inherited caps the run.
ISA_ENV = {
    "native": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}
ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
BLOCKS = {"native": "infer", "avx2": "infer-avx2"}


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


def torch_isa():
    """(the ISA PyTorch's oneDNN runs on, PyTorch's own CPU capability), each as PyTorch
    reports it in a process with this one's environment."""
    probe = ("import torch\n"
             "print(next(l for l in torch.__config__.show().splitlines() if 'CPU capability' in l))\n"
             "with torch.inference_mode(): torch.nn.Conv2d(8, 8, 3)(torch.zeros(64, 8, 16, 16))\n")
    out = subprocess.run([sys.executable, "-c", probe], env=dict(os.environ, ONEDNN_VERBOSE="1"),
                         capture_output=True, text=True).stdout
    onednn = re.search(r"(?:onednn|dnnl)_verbose,info,cpu,isa:(.*)", out)
    aten = re.search(r"CPU capability usage:\s*(\S+)", out)
    return (onednn.group(1).strip() if onednn else "unknown", aten.group(1) if aten else "unknown")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--batches", default="1,8,64,256")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3,
                    help="each cell measured this many times, the engines taking turns; the table gives medians")
    ap.add_argument("--isa", default="native",
                    help="native (the CPU's best), avx2 (as without AVX-512), or both: native,avx2")
    args = ap.parse_args()
    isas = args.isa.split(",")
    for isa in isas:
        if isa not in ISA_ENV:
            ap.error(f"--isa {isa}: one of {', '.join(ISA_ENV)}")
    if len(isas) > 1:
        # One process per ISA: PyTorch reads its ISA once, when it loads.
        common = ["--binary", args.binary, "--report", args.report, "--batches", args.batches,
                  "--seconds", str(args.seconds), "--rounds", str(args.rounds)]
        for isa in isas:
            subprocess.run([sys.executable, os.path.abspath(__file__), *common, "--isa", isa], check=True)
        return 0
    return measure(args, isas[0])


def measure(args, isa):
    for name in ISA_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(ISA_ENV[isa])
    import torch  # only now: PyTorch reads ATEN_CPU_CAPABILITY when it loads

    batches = [int(b) for b in args.batches.split(",")]
    cores = os.cpu_count()

    def run_binary(engine, batch, peak=False):
        out = subprocess.run([args.binary, "--batches", str(batch), "--seconds", str(args.seconds),
                              "--threads", str(cores), "--engine", engine, "--peak-windows", "8" if peak else "0"],
                             check=True, capture_output=True, text=True).stdout
        return [json.loads(line) for line in out.splitlines()]

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

    # Round by round, and within a round batch by batch, each engine in turn: a slow spell of
    # the machine then falls on all of them, and the ratios are taken within a round.
    per_round, isa_record, peaks, first = [], None, [], None
    for round_index in range(args.rounds):
        rows = []
        for batch in batches:
            # The headline pair first and back to back; the FMA peak once a round.
            records = run_binary("auto", batch, peak=batch == batches[0])
            torch.set_num_threads(cores)
            eager_cores = time_torch(eager, batch, x_u8, args.seconds)
            isa_record = next(r for r in records if r["engine"] == "isa")
            peaks += [r for r in records if r["engine"] == "fma-peak"]
            ours = next(r for r in records if r["engine"] == "iotinfer")
            first = first or ours
            fp32 = next(r for r in run_binary("onednn", batch) if r["engine"] == "iotinfer")
            opencv = next(r for r in run_binary("opencv", batch) if r["engine"] == "iotinfer")
            row = {"batch": batch, "iotinfer": ours["images_per_second"], "rechecked": ours["rechecked"],
                   "fp32": fp32["images_per_second"], "opencv": opencv["images_per_second"], "eager": eager_cores}
            row["script"] = time_torch(script, batch, x_u8, args.seconds)
            torch.set_num_threads(default_threads)
            row["eager_default"] = time_torch(eager, batch, x_u8, args.seconds)
            rows.append(row)
            print(json.dumps({"isa": isa, "round": round_index + 1, **row}), flush=True)
        per_round.append(rows)

    # The peak is the machine's: the best of the runs' measurements.
    peak = max(peaks, key=lambda p: p["fma_per_second"])
    torch_onednn_isa, torch_aten = torch_isa()
    _, mhz, fma_per_cycle = cpu_facts(avx512=peak["isa"] == "avx512")
    flags = cpu_flags()
    facts = {"machine": machine_line(), "arch": metrics["arch"], "macs": metrics["macs_per_image"],
             "replicas": first["threads"], "engine": first["inference_engine"], "opencv": first["opencv"],
             "torch": torch.__version__, "default_threads": default_threads, "seconds": args.seconds,
             "cores": cores, "peak": peak["fma_per_second"] / 1e9, "peak_isa": peak["isa"], "mhz": mhz,
             "fma_per_cycle": fma_per_cycle, "isa": isa, "onednn_isa": isa_record["onednn_isa"],
             "torch_onednn_isa": torch_onednn_isa, "torch_aten": torch_aten, "rounds": args.rounds,
             "flags": {f: f in flags for f in ("avx2", "fma", "avx512f", "avx512_vnni")}}
    print(f"ran on: {isa_line(facts)}", flush=True)
    print(write_section(args.report, BLOCKS[isa], report_lines(per_round, facts)))


def isa_line(facts):
    flags = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in facts["flags"].items())
    capped = ("capped with ONEDNN_MAX_CPU_ISA=AVX2 and ATEN_CPU_CAPABILITY=avx2, as on a CPU without AVX-512"
              if facts["isa"] == "avx2" else "nothing capped")
    return (f"Instruction sets ({capped}): iotinfer's oneDNN `{facts['onednn_isa']}`; PyTorch's oneDNN "
            f"`{facts['torch_onednn_isa']}`, its own kernels `{facts['torch_aten']}`. CPU flags: {flags}.")


def median_rows(per_round):
    """One row per batch: each figure the median of its rounds, each ratio the median of the
    rounds' ratios, with the rounds' iotinfer / eager ratios kept for the verdict."""
    rows = []
    for i, first in enumerate(per_round[0]):
        rounds = [rows_of_round[i] for rows_of_round in per_round]
        row = {"batch": first["batch"]}
        for key in first:
            if key != "batch":
                row[key] = statistics.median(r[key] for r in rounds)
        for name, (a, b) in {"ours_eager": ("iotinfer", "eager"), "fp32_eager": ("fp32", "eager"),
                             "ours_default": ("iotinfer", "eager_default"),
                             "ours_script": ("iotinfer", "script")}.items():
            row[name] = statistics.median(r[a] / r[b] for r in rounds)
        row["ours_eager_rounds"] = [r["iotinfer"] / r["eager"] for r in rounds]
        rows.append(row)
    return rows


def report_lines(per_round, facts):
    """The section's lines: `per_round` as measure() takes them (per round, one row per batch
    size), `facts` the run's facts."""
    rows = median_rows(per_round)
    cores, macs, peak = facts["cores"], facts["macs"], facts["peak"]
    nominal_peak = cores * facts["mhz"] / 1000 * facts["fma_per_cycle"]
    avx2 = facts["isa"] == "avx2"
    title = ("Inference without AVX-512 (AVX2 only, emulated): iotinfer vs PyTorch, same model" if avx2
             else "Inference: iotinfer vs PyTorch, same model")
    rounds = facts["rounds"]
    lines = [
        f"### {title} ({datetime.date.today()})",
        "",
        f"{facts['machine']} {isa_line(facts)} "
        f"Model `{facts['arch']}` ({macs / 1e6:.2f} M multiply-adds per image), all 10,000 "
        f"Fashion-MNIST test images cycled, uint8 pixels in, class out. iotinfer, each engine as "
        f"{facts['replicas']} single-threaded replicas: its default, `{facts['engine']}` "
        f"(oneDNN, Debian's libdnnl 2.6: every layer but the first convolution in int8, and the close calls "
        f"classified again in FP32, so that its predictions are FP32's; model/MODEL.md, int8); its `--engine onednn`, "
        f"all FP32; and its `--engine opencv` (OpenCV {facts['opencv']} DNN). "
        f"PyTorch {facts['torch']} (Debian build, oneDNN), eval mode, inference_mode; its default "
        f"on this machine is {facts['default_threads']} thread(s). {facts['seconds']:g} s per cell"
        + (f", {rounds} rounds, the engines taking turns in each: figures are the rounds' medians, ratios the "
           f"medians of the rounds' ratios." if rounds > 1 else "."),
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
                     f"{r['ours_eager']:.1f}x | {r['fp32_eager']:.1f}x | "
                     f"{r['ours_default']:.1f}x | {r['ours_script']:.1f}x | "
                     f"{share(r['fp32'])} | {share(r['script'])} |")
    chains = ("the better of AVX2 and AVX-512 FMA chains (oneDNN may use either here)" if facts["peak_isa"] == "avx512"
              else "AVX2 FMA chains, the widest this run allows" if avx2 else "AVX2 FMA chains")
    lines += [
        "",
        f"FMA peak: {peak:.0f} G FP32 multiply-adds/s, measured in the same run by 12 independent chains per core "
        f"on all {cores} cores, {chains}, the best of several windows (the nominal {facts['mhz'] / 1000:.2f} GHz x "
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
        ratio = r["ours_eager"]
        each = (f" (rounds: {', '.join(f'{x:.1f}x' for x in r['ours_eager_rounds'])})"
                if len(r["ours_eager_rounds"]) > 1 else "")
        verdicts.append(f"batch {batch}, >= {target:g}x: {ratio:.1f}x{each}, {'met' if ratio >= target else 'not met'}")
        if r["fp32_eager"] < target:
            needed = target * r["eager"]
            fp32_short.append(f"FP32 alone would need {needed:,.0f} img/s at batch {batch} for {target:g}x, "
                              f"{share(needed)} of the FMA peak as counted here (it ran at {share(r['fp32'])})")
    if verdicts:
        lines += ["", f"Against the targets (iotinfer / PyTorch eager, {cores} threads each): "
                  + "; ".join(verdicts) + "." + "".join(f" {s}." for s in fp32_short)]
    return lines


if __name__ == "__main__":
    sys.exit(main())
