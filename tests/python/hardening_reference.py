"""Plain PyTorch trajectories for crates/hart-engine/tests/hardening_train.rs.

Reads IN/init.safetensors (fc1/fc2 weights and biases of a 6-5-3 ReLU MLP)
and IN/batches.safetensors (x{e}, y{e}: epoch e's one full batch, in the
order HART visits it), trains with SGD (lr from argv) and writes
OUT/trajectories.safetensors with the final weights of each recipe:

  plain        cross-entropy at the float weights
  clip         plain, every weight matrix clamped to [-0.5*max|W0|, 0.5*max|W0|]
               before training and after each update
  quant_clip   int8 weights in the forward pass (symmetric per tensor, round
               half to even), gradient of the quantised weights applied to the
               float ones; clamp to [-0.1, 0.1] before training and after updates
  flip1_int8   mean of the quantised loss and the loss with every bit of every
               int8 code flipped (code c becomes -c-1), straight-through
  flip1_int4   the same in int4

Biases stay float and unperturbed. Usage: hardening_reference.py IN OUT LR EPOCHS
"""

import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

src, out, lr, epochs = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
init = load_file(f"{src}/init.safetensors")
batches = load_file(f"{src}/batches.safetensors")
WEIGHTS = ["fc1.weight", "fc2.weight"]


def forward(p, x):
    h = F.relu(F.linear(x.reshape(x.shape[0], -1), p["fc1.weight"], p["fc1.bias"]))
    return F.linear(h, p["fc2.weight"], p["fc2.bias"])


def codes(w, bits):
    n = 2 ** (bits - 1) - 1
    scale = w.abs().max() / n
    return torch.round(w / scale).clamp(-n, n), scale


def run(quant_bits=None, flip_all=False, clip=None, clip_relative=None):
    p = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    bound = {}
    for k in WEIGHTS:
        if clip is not None:
            bound[k] = clip
        elif clip_relative is not None:
            bound[k] = clip_relative * p[k].detach().abs().max().item()

    def project():
        with torch.no_grad():
            for k, b in bound.items():
                p[k].clamp_(-b, b)

    project()
    opt = torch.optim.SGD(list(p.values()), lr=lr)
    for e in range(1, epochs + 1):
        x, y = batches[f"x{e}"], batches[f"y{e}"]
        opt.zero_grad()
        if quant_bits is None:
            F.cross_entropy(forward(p, x), y).backward()
        else:
            passes = [False, True] if flip_all else [False]
            for flipped in passes:
                fwd = dict(p)
                leaves = {}
                for k in WEIGHTS:
                    c, s = codes(p[k].detach(), quant_bits)
                    if flipped:
                        c = -c - 1  # every bit of the two's complement code inverted
                    leaves[k] = (c * s).requires_grad_(True)
                    fwd[k] = leaves[k]
                loss = F.cross_entropy(forward(fwd, x), y) / len(passes)
                loss.backward()
                for k in WEIGHTS:
                    g = leaves[k].grad
                    p[k].grad = g.clone() if p[k].grad is None else p[k].grad + g
        opt.step()
        project()
    return {k: v.detach().contiguous() for k, v in p.items()}


results = {
    "plain": run(),
    "clip": run(clip_relative=0.5),
    "quant_clip": run(quant_bits=8, clip=0.1),
    "flip1_int8": run(quant_bits=8, flip_all=True),
    "flip1_int4": run(quant_bits=4, flip_all=True),
}
save_file(
    {f"{name}.{k}": v for name, params in results.items() for k, v in params.items()},
    f"{out}/trajectories.safetensors",
)
