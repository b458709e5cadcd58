"""Writes the fuzzer's model seeds (run once with the project's venv; the
outputs are committed): a small ONNX MLP with inline weights, the same with
its weights in an external-data file, and a TorchScript MLP.

Usage: .venv/bin/python fuzz/seeds/make_seeds.py fuzz/seeds
"""
import sys
from pathlib import Path

import onnx
import torch
from torch import nn

out = Path(sys.argv[1])
torch.manual_seed(0)
m = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 10)).eval()
x = torch.rand(1, 1, 4, 4)
torch.onnx.export(m, (x,), str(out / "mlp.onnx"), dynamo=False, input_names=["x"], output_names=["y"],
                  dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
model = onnx.load(str(out / "mlp.onnx"))
onnx.save_model(model, str(out / "mlp_external.onnx"), save_as_external_data=True,
                all_tensors_to_one_file=True, location="mlp_external.data", size_threshold=0)
torch.jit.script(m).save(str(out / "mlp.pt"))
