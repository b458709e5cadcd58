"""References for crates/hart-engine/tests/user_models.rs: a user's own CNN
(conv, BatchNorm, a residual add, pooling, linear) trained by PyTorch.

Usage:
  user_models_reference.py export OUT_DIR
      writes OUT_DIR/cnn.onnx (torch.onnx.export, optimize=False so the
      BatchNorm nodes and PyTorch's tensor names survive), OUT_DIR/cnn.pt
      (the same module, torch.jit.script), and OUT_DIR/steps.safetensors:
      the batches `x0..`, `y0..`, `x_test`, and `after.NAME` for every
      state-dict tensor after the SGD steps PyTorch takes on those batches in
      order (training mode, lr 0.05, no momentum).
  user_models_reference.py rmsprop OUT_DIR LR LAMBDA
      PyTorch's RMSProp steps (torch.optim.RMSprop, lr LR, its defaults
      otherwise) on the same batches from the same weights: plain
      cross-entropy when LAMBDA is 0, else Hessian-aware training, CE +
      LAMBDA·vᵀHv averaged over the probes HART drew, read from
      OUT_DIR/probes.safetensors (`p{step}.NAME`, shape [probes, *param]),
      H the Hessian of the training-mode CE w.r.t. every parameter, by
      torch.autograd.grad with create_graph. Writes OUT_DIR/rmsprop.safetensors:
      `after.NAME` as above and, for HAT, `trace{step}` (the vᵀHv mean).
  user_models_reference.py predict MODEL OUT_DIR
      MODEL.onnx: loads its initializers into the same module by name
      (strict: every tensor of the state dict, nothing else); MODEL.pt:
      torch.jit.load. Writes OUT_DIR/predict.safetensors with the eval-mode
      logits on `x_test` and, for .pt, `state.NAME` for every tensor of the
      loaded module's state dict (parameters and BatchNorm buffers).
"""

import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

STEPS = 3
BATCH = 8
LR = 0.05


class UserCnn(nn.Module):
    # No bias on a convolution before a training-mode BatchNorm: the batch
    # mean cancels it, its gradient is rounding noise (~1e-8), and RMSProp,
    # dividing by that gradient's own magnitude, turns the noise into steps
    # of ±lr that no two implementations share. conv3's bias is a real one.
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.conv3 = nn.Conv2d(6, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 6 * 6, 4)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.bn2(self.conv2(x)))
        x = F.relu(self.conv3(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def model():
    torch.manual_seed(0)
    m = UserCnn()
    with torch.no_grad():
        for bn in (m.bn1, m.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return m


def export(out):
    m = model()
    gen = torch.Generator().manual_seed(1)
    xs = [torch.rand((BATCH, 1, 12, 12), generator=gen) for _ in range(STEPS)]
    ys = [torch.randint(0, 4, (BATCH,), generator=gen) for _ in range(STEPS)]
    x_test = torch.rand((16, 1, 12, 12), generator=gen)
    m.eval()
    torch.onnx.export(
        m,
        (x_test,),
        str(out / "cnn.onnx"),
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}},
        input_names=["input"],
        output_names=["logits"],
        external_data=False,
        optimize=False,
        verbose=False,
    )
    torch.jit.save(torch.jit.script(m), str(out / "cnn.pt"))
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=LR)
    for x, y in zip(xs, ys):
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    tensors = {f"x{i}": x for i, x in enumerate(xs)}
    tensors.update({f"y{i}": y for i, y in enumerate(ys)})
    tensors["x_test"] = x_test
    tensors.update({f"after.{k}": v.detach().clone() for k, v in m.state_dict().items()})
    save_file(tensors, str(out / "steps.safetensors"))


def hat_objective(m, x, y, probes, lam):
    """CE + λ·mean over the probes of vᵀHv, and that mean (detached)."""
    names = [n for n, _ in m.named_parameters()]
    params = [p for _, p in m.named_parameters()]
    loss = F.cross_entropy(m(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    k = probes[names[0]].shape[0]
    total = 0.0
    for j in range(k):
        vs = [probes[n][j] for n in names]
        gv = sum((g * v).sum() for g, v in zip(grads, vs))
        hv = torch.autograd.grad(gv, params, create_graph=True)
        total = total + sum((h * v).sum() for h, v in zip(hv, vs))
    pen = total / k
    return loss + lam * pen, pen.detach()


def rmsprop(out, lr, lam):
    steps = load_file(str(out / "steps.safetensors"))
    probes = load_file(str(out / "probes.safetensors")) if lam > 0 else {}
    m = model()
    m.train()
    opt = torch.optim.RMSprop(m.parameters(), lr=lr)
    tensors = {}
    for i in range(STEPS):
        x, y = steps[f"x{i}"], steps[f"y{i}"]
        opt.zero_grad()
        if lam > 0:
            mine = {k[len(f"p{i}.") :]: v for k, v in probes.items() if k.startswith(f"p{i}.")}
            objective, trace = hat_objective(m, x, y, mine, lam)
            tensors[f"trace{i}"] = trace.reshape(1)
        else:
            objective = F.cross_entropy(m(x), y)
        objective.backward()
        opt.step()
    tensors.update({f"after.{k}": v.detach().clone() for k, v in m.state_dict().items()})
    save_file(tensors, str(out / "rmsprop.safetensors"))


def predict(path, out):
    x_test = load_file(str(out / "steps.safetensors"))["x_test"]
    if path.suffix == ".pt":
        m = torch.jit.load(str(path))
        m.eval()
        with torch.no_grad():
            tensors = {"logits": m(x_test)}
        tensors.update({f"state.{k}": v.detach().clone() for k, v in m.state_dict().items()})
        save_file(tensors, str(out / "predict.safetensors"))
        return

    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in proto.graph.initializer}
    m = model()
    state = {k: inits[k] for k in m.state_dict() if k in inits}
    # ONNX carries no num_batches_tracked; everything else must be there.
    missing = [k for k in m.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        sys.exit(f"initializers missing from {path}: {missing}")
    m.load_state_dict(state, strict=False)
    m.eval()
    with torch.no_grad():
        save_file({"logits": m(x_test)}, str(out / "predict.safetensors"))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "export":
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        export(out)
    elif len(sys.argv) == 5 and sys.argv[1] == "rmsprop":
        rmsprop(Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    elif len(sys.argv) == 4 and sys.argv[1] == "predict":
        predict(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
