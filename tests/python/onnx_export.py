"""Exports small PyTorch models to ONNX for HART's importer tests.

Usage: onnx_export.py OUT_DIR

For every variant NAME it writes NAME.onnx (and NAME.onnx.data where the
exporter puts weights outside), NAME.safetensors (the input batch `x` and
PyTorch's eval-mode logits `y`) and an entry in manifest.json (whether the
batch dimension is dynamic, the state_dict names). It also writes
unsupported.onnx, a graph with an operator HART does not implement.
Weights and inputs come from fixed seeds, so reruns produce the same files.
"""

import json
import sys
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file


class ResidualCnn(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(8)
        # Strided, asymmetric-kernel conv with groups to cover Conv attributes.
        self.down = nn.Conv2d(8, 16, (3, 1), stride=2, padding=(1, 0), groups=2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        y = F.relu(self.bn2(self.conv2(x)))
        y = self.bn3(self.conv3(y))
        x = F.relu(x + y)
        x = F.relu(self.down(x))
        return self.fc(torch.flatten(self.gap(x), 1))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, dim * 2)
        self.fc2 = nn.Linear(dim * 2, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyVit(nn.Module):
    def __init__(self, dim=16, heads=2, num_classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.block = Block(dim, heads)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.norm(self.block(x))
        return self.head(F.gelu(x[:, 0], approximate="tanh") + x[:, 1:].mean(dim=1))


class Mlp(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.fc1 = nn.Linear(3 * 9 * 9, 32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32, num_classes)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        x = torch.flatten(self.pool(x), 1)
        x = torch.sigmoid(self.fc1(x))
        x = self.dropout(torch.tanh(self.fc2(x)))
        # ReLU6 exports as Clip (MobileNets); scaled so the bounds actually bind.
        return self.fc3(nn.functional.relu6(8 * x - 2))


def randomize_norms(model):
    """Non-trivial norm parameters and statistics: a BatchNorm mapped wrongly
    shows up in the logits, and the dynamo exporter, which merges initializers
    with equal values, keeps every LayerNorm's own weights."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


def export_dynamo(model, x, path, dynamic=True, **kwargs):
    """torch 2.11's default (torch.export-based) exporter."""
    if dynamic:
        kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
        kwargs.update(input_names=["input"], output_names=["logits"])
    torch.onnx.export(model, (x,), str(path), verbose=False, **kwargs)


def export_legacy(model, x, path, dynamic=True, **kwargs):
    """The TorchScript-based exporter (dynamo=False), still widely used."""
    if dynamic:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}}
    torch.onnx.export(
        model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"], **kwargs
    )


# name, model class, exporter, exporter options, whether the batch is dynamic
VARIANTS = [
    # Defaults: BatchNorm folded into the convolutions.
    ("cnn", ResidualCnn, export_dynamo, {"external_data": False}, True),
    # Unoptimised: BatchNorm nodes and PyTorch's tensor names survive.
    ("cnn_raw", ResidualCnn, export_dynamo, {"external_data": False, "optimize": False}, True),
    ("vit", TinyVit, export_dynamo, {"external_data": False}, True),
    # Every default: static batch, weights in mlp.onnx.data.
    ("mlp", Mlp, export_dynamo, {}, False),
    ("cnn_legacy", ResidualCnn, export_legacy, {"training": torch.onnx.TrainingMode.PRESERVE}, True),
    # Opset 11: LayerNorm and GELU decomposed, attribute-style axes.
    ("vit_legacy", TinyVit, export_legacy, {"opset_version": 11}, False),
]


def write_unsupported(path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Hardmax", ["x"], ["y"], name="/head/Hardmax", axis=-1)
    graph = helper.make_graph(
        [node],
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for name, cls, exporter, kwargs, dynamic in VARIANTS:
        # Same seed per class, so e.g. cnn and cnn_raw hold the same weights.
        torch.manual_seed(0)
        model = cls()
        with torch.no_grad():
            randomize_norms(model)
        model.eval()
        x = torch.rand(4, 3, 16, 16)
        with torch.no_grad():
            y = model(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exporter(model, x, out / f"{name}.onnx", dynamic=dynamic, **kwargs)
        save_file({"x": x.contiguous(), "y": y.contiguous()}, str(out / f"{name}.safetensors"))
        manifest.append({"name": name, "dynamic_batch": dynamic, "state_dict": list(model.state_dict())})
    write_unsupported(out / "unsupported.onnx")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
