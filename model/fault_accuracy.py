#!/usr/bin/env python3
"""Measures each model's accuracy under the fault profiles, side by side, with `iotinfer classify`,
writes fault-accuracy.json and regenerates MODEL.md (model_card.py renders the table).

    ./dev build && /usr/bin/python3 model/fault_accuracy.py [--iotinfer build/iotinfer] [--dir model/]

Every model with metrics in --dir is measured (fmnist-cnn first), on all 10,000 test images per profile.
"""
import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_card  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRODUCERS = 10
SEED = 1
# (faults as KIND=STRENGTH words, where they come from). The demo's devices are src/demo/demo.h's
# kDefaultFaults (device 3's corrupt=0.02 damages messages, not pixels); the stronger profiles reach the
# top of `iotinfer augment`'s ranges (src/dataset/augment.h) and go past them.
PROFILES = [
    ("", "clean test set"),
    ("noise=0.08", "demo device 1"),
    ("blur=1.0", "demo device 2"),
    ("rotate=20", "demo device 3"),
    ("occlude=0.2", "demo device 4"),
    ("dead=0.1", "demo device 5"),
    ("noise=0.15 blur=1.4", "demo device 6"),
    ("noise=0.15", "device 6's noise alone"),
    ("blur=1.4", "device 6's blur alone"),
    ("noise=0.3", "stronger"),
    ("blur=2.0", "stronger"),
    ("rotate=40", "stronger"),
    ("occlude=0.35", "stronger"),
    ("dead=0.25", "stronger"),
    ("noise=0.45", "past the augmentation's range"),
    ("rotate=60", "past the augmentation's range"),
]


def classify_args(faults):
    spec = ",".join(f"*:{fault}" for fault in faults.split())
    return ["classify", "--engine", "onednn", "--producers", str(PRODUCERS), "--seed", str(SEED)] + (
        ["--faults", spec] if spec else [])


def accuracy(iotinfer, model, faults):
    """(accuracy, the model id classify names) of `model` under `faults`."""
    out = subprocess.run([iotinfer, *classify_args(faults), "--model", model], check=True, capture_output=True,
                         text=True).stdout
    m = re.search(r"images of \S+, model (\S+)\naccuracy [0-9.]+% \((\d+) of (\d+) right\)", out)
    if not m:
        sys.exit(f"no accuracy in the output of iotinfer classify for {model} under '{faults}':\n{out}")
    return int(m[2]) / int(m[3]), m[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iotinfer", default=os.path.join(ROOT, "build", "iotinfer"))
    ap.add_argument("--dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()

    models = model_card.load_dir(args.dir)
    names = [m["name"] for m in models]
    rows, ids = [], {}
    for faults, where in PROFILES:
        row = {"faults": faults, "where": where, "accuracy": {}}
        for name in names:
            onnx = os.path.join(args.dir, model_card.files(name)["onnx"])
            row["accuracy"][name], ids[name] = accuracy(args.iotinfer, onnx, faults)
        print(f"{faults or 'none':<22} " + "  ".join(f"{n} {100 * a:.2f}%" for n, a in row["accuracy"].items()),
              flush=True)
        rows.append(row)
    table = {
        "command": f"iotinfer classify --engine onednn --producers {PRODUCERS} --seed {SEED} "
                   "--faults '*:KIND=STRENGTH[,*:KIND=STRENGTH]' --model MODEL",
        "producers": PRODUCERS,
        "seed": SEED,
        "models": names,
        "model_ids": ids,
        "rows": rows,
    }
    with open(os.path.join(args.dir, model_card.FAULT_ACCURACY), "w") as f:
        json.dump(table, f, indent=1)
    model_card.write_dir(args.dir)


if __name__ == "__main__":
    main()
