"""Exports a small ONNX network for 3x32x32 images: a model infer must refuse as incompatible."""
import sys
import torch
torch.manual_seed(1)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.Flatten(),
                          torch.nn.Linear(4 * 15 * 15, 10))
torch.onnx.export(net, torch.zeros(1, 3, 32, 32), sys.argv[1], input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, opset_version=11)
