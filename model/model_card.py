#!/usr/bin/env python3
"""Renders model/MODEL.md from the metrics that model/train.py writes for each model (metrics.json for
fmnist-cnn, NAME.metrics.json for another) and, when there, the accuracy under faults that
model/fault_accuracy.py measures (fault-accuracy.json), so the card always states what was measured.

    /usr/bin/python3 model/model_card.py [--dir model/]
"""
import argparse
import glob
import json
import os

DEFAULT_NAME = "fmnist-cnn"
FAULT_ACCURACY = "fault-accuracy.json"


def files(name):
    """The files of the model called `name`, relative to the model directory. The first model's
    predictions and metrics keep the names they were committed under."""
    first = name == DEFAULT_NAME
    return {
        "onnx": f"{name}.onnx",
        "pt": f"{name}.pt",
        "calibration": f"{name}.int8.json",
        "predictions": "test-predictions.u8" if first else f"{name}.test-predictions.u8",
        "metrics": "metrics.json" if first else f"{name}.metrics.json",
    }


def load_dir(path):
    """The metrics of every model in `path`: fmnist-cnn's first, then the others by name."""
    models = []
    for metrics_path in [os.path.join(path, "metrics.json")] + sorted(glob.glob(os.path.join(path, "*.metrics.json"))):
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                models.append(json.load(f))
            models[-1].setdefault("name", DEFAULT_NAME)
    return models


def model_id(m):
    return f"{m['name']}-{m['onnx_sha256'][:8]}"


def describe_augmentation(m):
    """How --augment replaced training images, in words, or "" for a model trained without it."""
    a = m.get("augment")
    if not a:
        return ""
    made = ""
    if "ranges" in a:
        ranges = ", ".join(f"{kind} {low:g}-{high:g}" for kind, (low, high) in a["ranges"].items())
        made = (f" (`iotinfer augment`, seed {a['seed']}: each copy through one fault of a kind drawn uniformly, "
                f"at a strength drawn uniformly from its range: {ranges}; "
                f"{100 * a['second_fault_probability']:g}% of them through a second fault of another kind too)")
    return (f"; and each epoch, with probability {a['probability']:g}, each training image replaced by one of its "
            f"{a['copies']} faulty copies{made}, before the flip and shift")


def reproduce(m):
    t = m["train"]
    a = m.get("augment")
    lines = []
    if a:
        seed = f" --seed {a['seed']}" if "seed" in a else ""
        lines.append(f"build/iotinfer augment --split train --copies {a['copies']}{seed} --out /tmp/aug")
    train = (f"/usr/bin/python3 model/train.py --arch {m['arch']} --epochs {t['epochs']} --seed {t['seed']} "
             f"--threads {t['threads']}")
    if a:
        train += f" --augment /tmp/aug --augment-prob {a['probability']:g}"
    if m["name"] != DEFAULT_NAME:
        train += f" --name {m['name']}"
    lines.append(train)
    if m["name"] != DEFAULT_NAME:
        lines.append(f"build/iotinfer calibrate --model model/{files(m['name'])['onnx']}")
    return lines


def render_model(m, h, first=None):
    """The card of one model; `h` is the heading prefix of its sections. A model after the `first`
    refers to the first's card for what they share."""
    names = m["class_names"]
    conf = m["confusion"]
    t = m["train"]
    f = files(m["name"])
    stages = []
    for item in m["arch"].split(","):
        width, rest = item.split("k")
        kernel, stride = rest.rstrip("p").split("s")
        pool = " + 2x2 max pool" if item.endswith("p") else ""
        stages.append(f"conv {kernel}x{kernel} stride {stride} -> {width} channels, BN, ReLU{pool}")
    layers = [
        *[f"{i + 1}. {s}" for i, s in enumerate(stages)],
        f"{len(stages) + 1}. flatten, linear -> 10 logits",
    ]
    if first and first["arch"] == m["arch"]:
        design = [f"{h} Architecture and preprocessing", f"As {first['name']}'s: the same layers and input.", ""]
    elif first:
        design = [f"{h} Architecture and preprocessing", f"Input and preprocessing as {first['name']}'s; wider:", "",
                  *layers, ""]
    else:
        design = [
            f"{h} Architecture",
            "Input: float32 `[N, 1, 28, 28]`, raw pixel values 0..255 (white garment on black, as in the dataset). "
            "Output: `[N, 10]` logits.",
            "",
            *layers,
            "",
            "Strided convolutions instead of pooling: on two cores they gave the best throughput for the accuracy "
            "(max pooling cost OpenCV about a fifth of its time in a pooled variant; see docs/bench-log.md).",
            "",
            f"{h} Preprocessing",
            "None outside the model: the model divides by 255 itself (folded into the first convolution at export, "
            "which is exact because zero padding commutes with scaling). Images of another size or with colour are "
            "converted by the classifier to 28x28 grey (area interpolation when shrinking).",
            "",
        ]
    lines = [
        f"{h} Numbers",
        f"- Test accuracy on the full 10,000-image Fashion-MNIST test set: **{100 * m['test_accuracy']:.2f}%**",
        f"- Parameters: {m['parameters']:,}",
        f"- Multiply-adds per image: {m['macs_per_image']:,} ({2 * m['macs_per_image'] / 1e6:.2f} MFLOPs)",
        f"- ONNX file: `{f['onnx']}`, sha256 `{m['onnx_sha256']}` (model id `{model_id(m)}`)",
        f"- The exported graph (BN and the 1/255 scale folded) agrees with the trained module on "
        f"{100 * m['deployable_agrees_with_trained']:.2f}% of test images; `{f['predictions']}` holds its "
        "predictions, which the C++ classifier must match on at least 99.9% of images (tests/model/classifier_test.cc).",
        "",
        *design,
        f"{h} Training",
        f"SGD with Nesterov momentum 0.9, weight decay 5e-4, one-cycle learning rate peaking at {10 * t['lr']}, "
        f"batch {t['batch']}, {t['epochs']} epochs, label smoothing 0.1, augmentation by horizontal flip and "
        f"shifts of up to 2 pixels{describe_augmentation(m)}; seed {t['seed']}, {t['threads']} threads, "
        f"PyTorch {m['torch']} (Debian). Took {m['train_seconds']:.0f} s on the machine in BENCHMARKS.md.",
        "",
        "Reproduce (the ONNX file, weights, predictions, metrics and this card"
        + (", then the int8 calibration" if m["name"] != DEFAULT_NAME else "") + "):",
        "```",
        *reproduce(m),
        "```",
        "",
        f"{h} Confusion matrix (rows: true class, columns: predicted)",
        "",
        "| true \\ predicted | " + " | ".join(names) + " | recall |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for i, row in enumerate(conf):
        lines.append(f"| {names[i]} | " + " | ".join(str(v) for v in row) + f" | {100 * row[i] / sum(row):.1f}% |")
    return lines


def render_fault_accuracy(table, models):
    """The side-by-side table of fault_accuracy.py's measurements, each later model's gain over the first."""
    names = table["models"]
    current = {m["name"]: model_id(m) for m in models}
    lines = [
        "## Accuracy under faults, the models side by side",
        "",
        f"Each row applies one fault profile (src/dataset/faults.h) to all 10,000 test images, spread over "
        f"{table['producers']} simulated devices with that same profile (so dead pixels fall in "
        f"{table['producers']} patterns), and classifies them in float32 (`--engine onednn`): "
        f"`{table['command']}`. The demo's rows are the profiles of its devices (src/demo/demo.h "
        "`kDefaultFaults`); the stronger ones go to the edge of the augmentation's ranges and past them. "
        "Measured by `model/fault_accuracy.py` (rerun it after retraining: "
        "`/usr/bin/python3 model/fault_accuracy.py`, after `./dev build`), which also regenerates this card.",
        "",
    ]
    stale = [n for n in names if current.get(n) != table["model_ids"].get(n)]
    if stale:
        lines += [f"**Stale**: measured for {', '.join(table['model_ids'][n] for n in stale)}, "
                  "not the models here now; rerun model/fault_accuracy.py.", ""]
    gains = [f"{n} gain (points)" for n in names[1:]]
    lines += ["| faults | where | " + " | ".join(names + gains) + " |",
              "|---|---|" + "---:|" * (len(names) + len(gains))]

    def row_text(faults, where, acc):
        cells = [f"{100 * a:.2f}%" for a in acc] + [f"{100 * (a - acc[0]):+.2f}" for a in acc[1:]]
        return f"| {faults} | {where} | " + " | ".join(cells) + " |"

    demo = [row for row in table["rows"] if row["where"].startswith("demo device")]
    for row in table["rows"]:
        lines.append(row_text(row["faults"] or "none", row["where"], [row["accuracy"][n] for n in names]))
        if demo and row is demo[-1]:
            mean = [sum(r["accuracy"][n] for r in demo) / len(demo) for n in names]
            lines.append(row_text("the demo's faulty devices", "their mean", mean))
    return lines


def render(models, fault_table=None):
    """MODEL.md up to its hand-written part: the first model's card, a section for each other
    model, and the table of accuracy under faults when it was measured."""
    first, others = models[0], models[1:]
    lines = [
        f"# {first['name']}: the Fashion-MNIST classifier",
        "",
        f"Generated by `model/model_card.py` from `{files(first['name'])['metrics']}`"
        + "".join(f" and `{files(m['name'])['metrics']}`" for m in others)
        + ", which `model/train.py` writes"
        + (f", and `{FAULT_ACCURACY}`, which `model/fault_accuracy.py` writes" if fault_table else "")
        + ". Do not edit by hand, except below the line that says so: that part is kept when the card is "
        "generated again.",
        "",
        *render_model(first, "##"),
    ]
    for m in others:
        title = "trained on faulty images too" if m.get("augment") else "another model"
        lines += ["", f"## {m['name']}: {title}", "", *render_model(m, "###", first)]
    if fault_table:
        lines += ["", *render_fault_accuracy(fault_table, models)]
    return "\n".join(lines) + "\n"


# MODEL.md from this mark to its end is written by hand (how the int8 engine uses the model,
# measured by `iotinfer calibrate` and the benchmarks rather than by training), so
# regenerating the card keeps it.
HAND_WRITTEN_MARK = "<!-- Written by hand below this line; model_card.py keeps it. -->"


def write_dir(path):
    """Writes MODEL.md in `path` for the models there, keeping the card's hand-written part."""
    table = None
    if os.path.exists(os.path.join(path, FAULT_ACCURACY)):
        with open(os.path.join(path, FAULT_ACCURACY)) as f:
            table = json.load(f)
    write(os.path.join(path, "MODEL.md"), render(load_dir(path), table))


def write(path, text):
    """Writes the card `text` to `path`, keeping the hand-written part of the card there."""
    kept = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        at = old.find(HAND_WRITTEN_MARK)
        if at >= 0:
            kept = "\n" + old[at:]
    with open(path, "w") as f:
        f.write(text + kept)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    write_dir(args.dir)


if __name__ == "__main__":
    main()
