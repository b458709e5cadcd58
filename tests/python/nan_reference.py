"""PyTorch's counts for crates/hart-engine/tests/nan_policy.rs.

Usage: nan_reference.py DIR

Reads DIR/model.safetensors (an MLP: fc1, fc2, fc3 with ReLUs between),
DIR/data.safetensors (images `x`, labels `y`) and DIR/faults.csv
(param,index,bit) and writes DIR/counts.csv with, per flip, the correct
count under torch.argmax (`argmax`) and under HART's rule that a row with
any NaN logit is wrong (`wrong`), plus how many rows held NaN or ±Inf.
Also writes DIR/crafted.safetensors: hand-made logits (NaN, ±Inf, ties),
labels and both rules' per-row correctness.

Imports are unconditional: a missing package fails the calling test.
"""
import csv
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def hart_rule(logits, labels):
    return (logits.argmax(1) == labels) & ~logits.isnan().any(1)


def forward(w, x):
    h = x.flatten(1)
    h = torch.relu(torch.nn.functional.linear(h, w["fc1.weight"], w["fc1.bias"]))
    h = torch.relu(torch.nn.functional.linear(h, w["fc2.weight"], w["fc2.bias"]))
    return torch.nn.functional.linear(h, w["fc3.weight"], w["fc3.bias"])


def flipped(w, param, index, bit):
    out = dict(w)
    t = w[param].clone().flatten()
    bits = t.view(torch.int32)
    bits[index] ^= (1 << bit) if bit < 31 else -(1 << 31)  # int32's sign bit
    out[param] = t.view(w[param].shape)
    return out


def crafted():
    nan, inf = float("nan"), float("inf")
    rows = [
        [1.0, 2.0, 3.0, 0.0],
        [3.0, 3.0, 1.0, 0.0],  # tie: first index wins
        [nan, 1.0, 2.0, 0.0],
        [1.0, nan, 2.0, nan],  # first NaN is index 1
        [inf, 1.0, inf, 0.0],  # tie of +Inf
        [-inf, -inf, -inf, -inf],  # all equal: index 0
        [inf, nan, 0.0, 0.0],  # NaN beats +Inf under argmax
        [-inf, 0.0, -1.0, nan],
        [nan, nan, nan, nan],
        [0.0, -0.0, 0.0, 0.0],  # signed zeros compare equal
    ]
    logits = torch.tensor(rows, dtype=torch.float32)
    n = logits.shape[0]
    # Every label for every row: 4 copies of the rows.
    logits = logits.repeat(4, 1)
    labels = torch.arange(4).repeat_interleave(n)
    return {
        "logits": logits,
        "labels": labels,
        "argmax": (logits.argmax(1) == labels).to(torch.int64),
        "wrong": hart_rule(logits, labels).to(torch.int64),
    }


def main():
    d = Path(sys.argv[1])
    save_file(crafted(), str(d / "crafted.safetensors"))
    w = load_file(str(d / "model.safetensors"))
    data = load_file(str(d / "data.safetensors"))
    x, y = data["x"], data["y"]
    with open(d / "faults.csv") as f, open(d / "counts.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["param", "index", "bit", "argmax", "wrong", "nan_rows", "inf_rows"])
        for r in csv.DictReader(f):
            p, i, b = r["param"], int(r["index"]), int(r["bit"])
            with torch.no_grad():
                logits = forward(flipped(w, p, i, b), x)
            writer.writerow([
                p, i, b,
                int((logits.argmax(1) == y).sum()),
                int(hart_rule(logits, y).sum()),
                int(logits.isnan().any(1).sum()),
                int(logits.isinf().any(1).sum()),
            ])


main()
