# %% [markdown]
# # HART from Python
#
# The README's "From Python", notebook style: define a PyTorch CNN and train it briefly in plain
# PyTorch, sweep its exponent MSBs, plot the erratic bits per layer from the DataFrame, fine-tune
# it plainly, with HAT (the Hessian-aware regulariser) and with noise training, and compare the
# four models under the same sweep and a Gaussian weight-noise campaign.
#
# Run as a script: `.venv/bin/python examples/from_python.py [--out DIR] [--tiny]`, or open
# `examples/from_python.ipynb` (this file's cells, executed by `scripts/notebook.py`). `--tiny`
# (or `HART_EXAMPLE_TINY=1`) runs every step on a few hundred images, as
# `tests/python/test_examples.py` does so the example cannot rot.

# %%
import argparse
import gzip
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

import hart

FULL = dict(train=5000, steps=300, test=500, tune=5000, epochs=1, trials=20)
TINY = dict(train=500, steps=20, test=60, tune=300, epochs=1, trials=2)
p = argparse.ArgumentParser(description="HART from Python, notebook style")
p.add_argument("--out", default="hart-from-python", help="folder for the plot")
p.add_argument("--tiny", action="store_true", help="a few hundred images per step (the test's run)")
args, _ = p.parse_known_args()  # known only: a notebook kernel passes its own
size = TINY if args.tiny or os.environ.get("HART_EXAMPLE_TINY") else FULL
os.makedirs(args.out, exist_ok=True)
started = time.time()


def fashion(split, n):
    """The first n Fashion-MNIST images of a split, as PyTorch would feed them."""
    prefix = "train" if split == "train" else "t10k"
    read = lambda f: gzip.open(f"/usr/share/datasets/fashion-mnist/{prefix}-{f}.gz").read()  # noqa: E731
    x = np.frombuffer(read("images-idx3-ubyte"), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    y = np.frombuffer(read("labels-idx1-ubyte"), np.uint8, offset=8)[:n].astype(np.int64)
    return torch.from_numpy(x.copy()).float() / 255, torch.from_numpy(y)


# %% [markdown]
# ## 1. A model of your own, trained in plain PyTorch

# %%
class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 14 * 14, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        h = nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(h, 1))))


torch.manual_seed(0)
model = Cnn()
x, y = fashion("train", size["train"])
opt = torch.optim.Adam(model.parameters(), lr=2e-3)
for _ in range(size["steps"]):
    b = torch.randint(0, len(x), (64,))
    opt.zero_grad()
    nn.functional.cross_entropy(model(x[b]), y[b]).backward()
    opt.step()
model.eval()

# %% [markdown]
# ## 2. Its exponent MSBs (bit 30) swept: every parameter flipped in turn

# %%
trained = hart.load(model)  # exported once (ONNX), reused by every call below
sweep = dict(limit=size["test"], bits="exponent-msb", progress=False)
base = hart.sweep(trained, "fashion-mnist", **sweep)
print(trained)
print(base)

# %% [markdown]
# ## 3. Erratic bits per layer, from the per-tensor DataFrame

# %%
def per_layer(res):
    t = res.per_tensor.assign(layer=lambda d: d["param"].str.rsplit(".", n=1).str[0])
    return t.groupby("layer", sort=False)[["flips", "erratic_bits"]].sum()


print(per_layer(base).to_string())

# %% [markdown]
# ## 4. Fine-tuned three ways from the same weights, with the same schedule

# %%
tune = dict(limit=size["tune"], eval_limit=size["test"], epochs=size["epochs"], optimizer="adam", lr=5e-4,
            progress=False)
models = {
    "trained": trained,
    "plain": hart.fine_tune(trained, "fashion-mnist", **tune),
    "hat": hart.fine_tune(trained, "fashion-mnist", regularizer="hessian", hessian_lambda=0.001, **tune),
    "noise": hart.fine_tune(trained, "fashion-mnist", regularizer="noise", noise_std=0.1, **tune),
}
for name, m in models.items():
    if name != "trained":
        print(f"{name:6s}", m.hart_log)

# %% [markdown]
# ## 5. Compared
# Clean accuracy, erratic exponent-MSB bits, and accuracy under Gaussian noise of σ = 0.1·max|W| in
# every parameter tensor (`scope="params"`: not BatchNorm's running statistics). One seed: a
# direction to test over seeds with `hart.experiment`, not a result.

# %%
rows, layers = [], {}
for name, m in models.items():
    m = hart.load(m)
    res = base if m is trained else hart.sweep(m, "fashion-mnist", **sweep)
    noise = hart.campaign(m, "fashion-mnist", fault="gaussian", levels=[0.1], scope="params",
                          limit=size["test"], trials=size["trials"], progress=False).levels
    layers[name] = per_layer(res)["erratic_bits"]
    rows.append(dict(model=name, clean_accuracy=res.clean_accuracy, erratic_bits=res.summary["erratic_bits"],
                     erratic_share=res.summary["erratic_bits"] / res.summary["flips"],
                     noise_accuracy=noise["mean_accuracy"].iloc[0]))
table = pd.DataFrame(rows)
print(table.to_string(index=False, float_format="%.4f"))

# %%
ax = pd.DataFrame(layers).plot.bar(logy=True, rot=0, figsize=(7, 4))
ax.set(xlabel="layer", ylabel="erratic exponent-MSB bits (RAD > 0.1)",
       title=f"Erratic bits per layer ({size['test']} Fashion-MNIST test images)")
plt.tight_layout()
png = os.path.join(args.out, "erratic_per_layer.png")
plt.savefig(png, dpi=120)
print(f"plot: {png}; {time.time() - started:.0f} s")
