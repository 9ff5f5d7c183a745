#!/usr/bin/env python3
"""Trains iotinfer's Fashion-MNIST classifier and exports it as ONNX for OpenCV DNN.

Run with Debian's python3 (it sees python3-torch):
    /usr/bin/python3 model/train.py --out model/
Deterministic for a given seed, thread count and torch build.

With --augment DIR, each training image is replaced, with probability --augment-prob each epoch,
by one of its faulty copies that `iotinfer augment` wrote into DIR (the C++ fault profiles of
src/dataset, so the pixels are what devices send):
    build/iotinfer augment --split train --copies 4 --seed 7 --out /tmp/aug
    /usr/bin/python3 model/train.py --augment /tmp/aug --name fmnist-cnn-aug

Writes into --out, for the model called --name (NAME.* below; the default model fmnist-cnn keeps
the names its files were first committed under, shown in brackets):
  NAME.onnx                    the model; input float32 [N,1,28,28] raw pixels 0..255, output logits [N,10]
  NAME.pt                      the trained weights (state dict), for the PyTorch side of `./dev bench infer`
  NAME.test-predictions.u8     top-1 class index per Fashion-MNIST test image, as PyTorch computes it
                               [test-predictions.u8]
  NAME.metrics.json            accuracy, confusion matrix, parameters, MACs, training settings [metrics.json]
  MODEL.md                     the model card of every model in --out, rendered by model_card.py from their
                               metrics (its hand-written end kept)
"""
import argparse
import gzip
import hashlib
import json
import os
import re
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_card  # noqa: E402

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
DEFAULT_ARCH = "32k5s2,64k3s2,128k3s2"
DEFAULT_NAME = model_card.DEFAULT_NAME


def read_idx(path, expect_magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expect_magic:
        sys.exit(f"{path}: bad magic {magic}, expected {expect_magic}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        sys.exit(f"{path}: {arr.size} bytes of data, header says {dims}")
    return arr.reshape(dims)


def load_split(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"), 2051)
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"), 2049)
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def load_augmented(path, y_train):
    """The copies `iotinfer augment` made of the training set, as [copies, images, 1, 28, 28]
    (copy k of training image i at [k, i]), and what its augment.json says about how."""
    x, y = load_split(path, "train")
    n = len(y_train)
    if len(y) == 0 or len(y) % n or not torch.equal(y.view(-1, n), y_train.expand(len(y) // n, n)):
        sys.exit(f"{path}: {len(y)} images are not copies of the {n} training images "
                 "(made from another split, or with --limit?)")
    info = {}
    if os.path.exists(os.path.join(path, "augment.json")):
        with open(os.path.join(path, "augment.json")) as f:
            info = json.load(f)
    return x.view(len(y) // n, n, 1, 28, 28), info


def parse_arch(spec):
    """"32k5s2,64k3s2p" -> [(32, 5, 2, False), (64, 3, 2, True)]: width, kernel, stride, maxpool after."""
    layers = []
    for item in spec.split(","):
        m = re.fullmatch(r"(\d+)k(\d+)s(\d+)(p?)", item.strip())
        if not m:
            sys.exit(f"bad layer '{item}' in --arch (expected e.g. 32k3s1p)")
        layers.append((int(m[1]), int(m[2]), int(m[3]), m[4] == "p"))
    return layers


class FashionCNN(nn.Module):
    """Conv-BN-ReLU stages (optionally max-pooled) and a linear head.

    Takes raw pixel values (0..255); the 1/255 scale is part of the model so that every
    client feeds the same thing. Zero padding commutes with that scale, which is what lets
    deployable() fold it into the first convolution exactly.
    """

    def __init__(self, arch):
        super().__init__()
        self.arch = parse_arch(arch)
        stages, cin, side = [], 1, 28
        for width, k, stride, pool in self.arch:
            stage = [nn.Conv2d(cin, width, k, stride=stride, padding=k // 2, bias=False),
                     nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            side = (side + 2 * (k // 2) - k) // stride + 1
            if pool:
                stage.append(nn.MaxPool2d(2))
                side //= 2
            stages.append(nn.Sequential(*stage))
            cin = width
        self.features = nn.Sequential(*stages)
        self.head = nn.Linear(cin * side * side, 10)

    def forward(self, x):
        x = self.features(x * (1.0 / 255.0))
        return self.head(torch.flatten(x, 1))

    def macs_per_image(self):
        macs, cin, side = 0, 1, 28
        for width, k, stride, pool in self.arch:
            side = (side + 2 * (k // 2) - k) // stride + 1
            macs += side * side * width * cin * k * k
            side //= 2 if pool else 1
            cin = width
        return macs + self.head.in_features * self.head.out_features


def deployable(model):
    """The eval-mode model with BN folded into the convs and 1/255 folded into the first one.

    Same function as `model` up to float rounding; this is what is exported to ONNX.
    """
    seq, in_scale = [], 1.0 / 255.0
    for stage in model.features:
        conv, bn = stage[0], stage[1]
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                          padding=conv.padding, bias=True)
        fused.weight.data = conv.weight.data * s.view(-1, 1, 1, 1) * in_scale
        fused.bias.data = bn.bias.data - bn.running_mean * s
        seq += [fused, nn.ReLU()] + ([nn.MaxPool2d(2)] if len(stage) == 4 else [])
        in_scale = 1.0
    seq += [nn.Flatten(), model.head]
    return nn.Sequential(*seq).eval()


def augment(x, gen):
    """Random horizontal flip and a shift of up to 2 pixels, batch-wise on uint8 images."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (2, 2, 2, 2))
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()
    return padded[:, :, dy:dy + 28, dx:dx + 28]


def evaluate(model, x, batch=1000):
    preds = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            preds.append(model(x[i:i + batch].float()).argmax(1))
    return torch.cat(preds)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--arch", default=DEFAULT_ARCH, help="layers as WIDTHkKERNELsSTRIDE[p], p = 2x2 max pool")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only (smoke tests)")
    ap.add_argument("--name", default=DEFAULT_NAME, help="the model's name: its files are NAME.onnx and so on")
    ap.add_argument("--augment", metavar="DIR", help="faulty copies of the training set, from `iotinfer augment`")
    # 0.5 cost a point of clean accuracy for little more robustness than 0.3 (model/MODEL.md).
    ap.add_argument("--augment-prob", type=float, default=0.3,
                    help="with --augment: how often an image is replaced by one of its copies, each epoch")
    args = ap.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        sys.exit(f"--name '{args.name}': use letters, digits, '.', '_' and '-'")

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)

    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "test")
    x_aug, aug_info = load_augmented(args.augment, y_train) if args.augment else (None, {})
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
        x_aug = x_aug[:, :args.limit] if x_aug is not None else None

    model = FashionCNN(args.arch)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = args.epochs * ((len(x_train) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr * 10, total_steps=steps)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total_loss = 0.0
        for i in range(0, len(x_train), args.batch):
            idx = perm[i:i + args.batch]
            xb = x_train[idx]
            if x_aug is not None:
                # Only here does --augment draw from `gen`: without it, training is what it was.
                replace = torch.rand(len(idx), generator=gen) < args.augment_prob
                copy = torch.randint(0, len(x_aug), (len(idx),), generator=gen)
                xb = torch.where(replace.view(-1, 1, 1, 1), x_aug[copy, idx], xb)
            xb = augment(xb, gen).float()
            loss = F.cross_entropy(model(xb), y_train[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
        model.eval()
        acc = (evaluate(model, x_test) == y_test).float().mean().item()
        print(f"epoch {epoch + 1}/{args.epochs} loss {total_loss / len(x_train):.4f} "
              f"test acc {acc:.4f} ({time.time() - t0:.0f}s)", flush=True)

    model.eval()
    deploy = deployable(model)
    preds = evaluate(deploy, x_test)
    agree = (preds == evaluate(model, x_test)).float().mean().item()
    acc = (preds == y_test).float().mean().item()
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (y_test.numpy(), preds.numpy()), 1)

    os.makedirs(args.out, exist_ok=True)
    files = model_card.files(args.name)
    onnx_path = os.path.join(args.out, files["onnx"])
    torch.onnx.export(deploy, torch.zeros(1, 1, 28, 28), onnx_path, input_names=["pixels"],
                      output_names=["logits"], dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"}},
                      opset_version=11)
    torch.save(model.state_dict(), os.path.join(args.out, files["pt"]))
    preds.numpy().astype(np.uint8).tofile(os.path.join(args.out, files["predictions"]))
    with open(onnx_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    metrics = {
        "name": args.name,
        "test_accuracy": acc,
        "deployable_agrees_with_trained": agree,
        "confusion": confusion.tolist(),
        "class_names": CLASS_NAMES,
        "parameters": sum(p.numel() for p in model.parameters()),
        "macs_per_image": model.macs_per_image(),
        "arch": args.arch,
        "onnx_sha256": sha,
        "train": {k: getattr(args, k) for k in ("epochs", "batch", "lr", "seed", "threads", "limit")},
        **({"augment": {"probability": args.augment_prob, "copies": len(x_aug), **aug_info}} if args.augment else {}),
        "train_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
    }
    with open(os.path.join(args.out, files["metrics"]), "w") as f:
        json.dump(metrics, f, indent=1)
    model_card.write_dir(args.out)
    print(f"test accuracy {acc:.4f}; wrote {onnx_path} (sha256 {sha[:8]})")


if __name__ == "__main__":
    main()
