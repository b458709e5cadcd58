"""Exports an MLP with dropout (Flatten -> Linear -> ReLU -> Dropout(0.3) -> Linear) on 1×4×4 inputs for
HART's Dropout test, with PyTorch's outputs on a fixed batch.

Usage: dropout_export.py OUT_DIR SEED

torch.onnx.export keeps a Dropout node only when the module is exported in
training mode (an eval-mode export drops it), so the model is exported twice
from the same weights: train.onnx (with the Dropout node) and eval.onnx
(without). OUT_DIR/outputs.safetensors holds the batch `x`, the eval-mode
logits `eval` and the training-mode logits `train` drawn after
torch.manual_seed(SEED), which HART must reproduce after tch::manual_seed(SEED):
both run at::dropout on libtorch's CPU generator. bad_ratio.onnx is the train
export with its ratio set to 1.5.
"""

import sys
import warnings
from pathlib import Path

import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper
from safetensors.torch import save_file


class DropMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(16, 32)
        self.drop = nn.Dropout(0.3)
        self.l2 = nn.Linear(32, 5)

    def forward(self, x):
        return self.l2(self.drop(torch.relu(self.l1(torch.flatten(x, 1)))))


def export(model, x, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}},
            optimize=False,
            external_data=False,
            verbose=False,
        )


def main():
    out, seed = Path(sys.argv[1]), int(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = DropMlp()
    x = torch.rand(64, 1, 4, 4)
    model.train()
    export(model, x, out / "train.onnx")
    model.eval()
    export(model, x, out / "eval.onnx")
    kinds = [n.op_type for n in onnx.load(str(out / "train.onnx")).graph.node]
    assert "Dropout" in kinds, f"the training-mode export has no Dropout node: {kinds}"
    assert "Dropout" not in [n.op_type for n in onnx.load(str(out / "eval.onnx")).graph.node]

    with torch.no_grad():
        y_eval = model(x)
        model.train()
        torch.manual_seed(seed)
        y_train = model(x)
    save_file({"x": x, "eval": y_eval, "train": y_train.contiguous()}, str(out / "outputs.safetensors"))

    # The same graph with an impossible ratio, for the one-line refusal.
    m = onnx.load(str(out / "train.onnx"))
    drop = next(n for n in m.graph.node if n.op_type == "Dropout")
    ratio = drop.input[1]
    consts = {o: n for n in m.graph.node for o in n.output if n.op_type == "Constant"}
    inits = {i.name: i for i in m.graph.initializer}
    bad = numpy_helper.from_array(numpy_helper.to_array(inits[ratio] if ratio in inits else consts[ratio].attribute[0].t) * 0 + 1.5)
    if ratio in inits:
        bad.name = ratio
        inits[ratio].CopyFrom(bad)
    else:
        consts[ratio].attribute[0].t.CopyFrom(bad)
    onnx.save(m, str(out / "bad_ratio.onnx"))
    print(kinds)


if __name__ == "__main__":
    main()
