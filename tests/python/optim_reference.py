"""torch.optim trajectories for HART's optimiser test.

Writes OUT/optim.safetensors with the initial parameter, the gradient used at
each step, and the parameter after each step for SGD, Adam and RMSprop.
"""
import sys

import torch
from safetensors.torch import save_file

out = sys.argv[1]
torch.manual_seed(0)
p0 = torch.randn(5, 3)
grads = [torch.randn(5, 3) for _ in range(4)]
tensors = {"p0": p0.contiguous()}
for i, g in enumerate(grads):
    tensors[f"grad{i}"] = g.contiguous()

configs = {
    "sgd": lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01),
    "sgd_plain": lambda p: torch.optim.SGD([p], lr=0.1),
    "adam": lambda p: torch.optim.Adam([p], lr=0.01, weight_decay=0.01),
    "rmsprop": lambda p: torch.optim.RMSprop([p], lr=0.01, momentum=0.5, weight_decay=0.01),
    "rmsprop_plain": lambda p: torch.optim.RMSprop([p], lr=0.01),
}
for name, make in configs.items():
    p = p0.clone().requires_grad_(True)
    opt = make(p)
    for i, g in enumerate(grads):
        opt.zero_grad()
        p.grad = g.clone()
        opt.step()
        tensors[f"{name}.step{i}"] = p.detach().clone().contiguous()
save_file(tensors, f"{out}/optim.safetensors")
