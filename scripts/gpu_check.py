"""The steps of scripts/gpu-check.sh (run it through that script, which puts
this machine's libtorch on the library path first). See docs/gpu.md.

  gpu_check.py --stage [BUNDLE]     build and copy the binaries and data the check runs
  gpu_check.py [--dry-run] OUT_DIR  run the check; report in OUT_DIR/gpu-check.{md,json}

Every step runs `hart` (or a test binary) from the bundle, each command under
its own time limit and all of them under one budget, and ends in one verdict:
PASS, FAIL or SKIP with its figure. A CUDA result is compared with the same
command on the CPU; the dry run runs both sides on the CPU with tiny sizes, so
a machine without a GPU proves the script itself works. Exit status 1 when a
step fails. Standard library only: a GPU machine may have nothing but torch.
"""

import argparse
import csv
import datetime
import gzip
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "gpu-bundle"
# Tests that return early, saying so, where libtorch sees no CUDA device:
# (test binary, test name). `grep -rn "no CUDA device" crates/*/tests` lists them.
CUDA_TESTS = [("faults_exact", "fast_engine_matches_reference_on_cuda")]
SKIP_MARK = "libtorch sees no CUDA device"
# The whole run stays under this (an H200 is lent for 15 minutes, start-up included).
BUDGET_S = 420
# Below this much free GPU memory the GPU steps are skipped rather than risk
# asking for more than is there; the batch sizes below shrink towards it.
MIN_FREE_GIB = 2.0
FULL_BATCH_GIB = 8.0
# Fashion-MNIST training images the bundle carries (the bench trains on 10,000).
TRAIN_SUBSET = 10_000

# Sizes: a GPU run, and the dry run (two CPU cores, a couple of minutes).
SIZES = {
    "gpu": dict(
        train_limit=4096, eval_limit=10_000, hessian=["--limit", "512", "--rel-stderr", "0.1", "--max-probes", "100",
                                                     "--max-lanczos", "40"], campaign_limit=2000,
        campaign_trials=20, attack_limit=128, attack_eval=1000, attack_flips=30, attack_trials=3,
        bench=["--archs", "mlp,lenet5,resnet18-cifar,sequential,torchscript", "--runs", "3"],
        cifar_train=2000, cifar_epochs=2, sample_images=1000, sample_params=[], pilot_elements=32, sample_runs=4,
        sample_budget_s=48,
    ),
    "dry": dict(
        train_limit=512, eval_limit=500, hessian=["--limit", "32", "--rel-stderr", "0.5", "--max-probes", "20",
                                                  "--max-lanczos", "10"], campaign_limit=200,
        campaign_trials=4, attack_limit=32, attack_eval=100, attack_flips=3, attack_trials=2,
        # The sequential row sweeps every conv tensor of resnet18-cifar on one thread: minutes on
        # two cores whatever its sizes, and the same code path as the resnet18-cifar row.
        bench=["--archs", "mlp,resnet18-cifar,torchscript", "--runs", "1", "--images", "200",
               "--elements", "4", "--cnn-images", "8", "--cnn-elements", "1", "--reference-flips", "8",
               "--ts-images", "200", "--ts-elements", "2"],
        # Its last layer only: a flip in conv1 costs a whole forward, seconds on two cores.
        cifar_train=32, cifar_epochs=1, sample_images=64, sample_params=["--params", r"fc\..*"],
        pilot_elements=1, sample_runs=2, sample_budget_s=4,
    ),
}
# Per-step limits (seconds); the budget above cuts the last ones if need be. The dry run
# proves the script, not the timing: it allows DRY_SLACK times as much (a shared CI machine).
DRY_SLACK = 4
LIMITS = {"env": 60, "cuda-tests": 90, "eval": 30, "train": 90, "hessian": 90, "campaign": 40,
          "attack": 60, "bench-sweep": 150, "exponent-sample": 100}


class StepError(Exception):
    """A step's failure, in one line."""


class Check:
    """State shared by the steps: sizes, devices, paths, the time left."""

    def __init__(self, out, bundle, dry):
        self.out = out
        self.bundle = bundle
        self.dry = dry
        self.size = SIZES["dry" if dry else "gpu"]
        self.gpu = "cpu" if dry else "cuda"
        self.work = out / "work"
        self.logs = out / "logs"
        self.started = time.monotonic()
        self.step_deadline = None
        self.batch = 1000
        self.env = dict(os.environ, HART_DATA=str(bundle / "data"))
        self.env.pop("HART_LOG", None)
        self.gpu_ok = True
        self.gpu_why = ""
        self.runs = 0
        self.last_stderr = ""

    def hart(self):
        return self.bundle / "bin" / "hart"

    def left(self):
        budget = BUDGET_S * (DRY_SLACK if self.dry else 1) - (time.monotonic() - self.started)
        step = self.step_deadline - time.monotonic() if self.step_deadline else budget
        return min(budget, step)

    def run(self, cmd, name):
        """Runs `cmd` (its log in logs/), returns stdout; a non-zero exit or
        a timeout is a StepError naming the command and its last line."""
        limit = self.left()
        if limit < 1:
            raise StepError(f"no time left for {name}")
        self.runs += 1
        log = self.logs / f"{self.runs:02d}-{name}.log"
        started = time.monotonic()
        # Its own process group, so a timeout also ends what it started (bench's Python loop),
        # which would otherwise hold the output pipes open.
        p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=self.env, cwd=ROOT, start_new_session=True)
        try:
            stdout, stderr = p.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            stdout, _ = p.communicate()
            log.write_text(f"$ {' '.join(map(str, cmd))}\n{stdout}\n(timed out after {limit:.0f}s)\n")
            raise StepError(f"{name}: timed out after {limit:.0f}s (log {log.name})") from None
        log.write_text(f"$ {' '.join(map(str, cmd))}\n# {time.monotonic() - started:.1f}s, exit {p.returncode}\n"
                       f"{stdout}\n--- stderr\n{stderr}")
        self.last_stderr = stderr
        if p.returncode != 0:
            lines = [l for l in (stderr + stdout).splitlines() if l.strip()]
            raise StepError(f"{name}: exit {p.returncode}: {lines[-1] if lines else ''} (log {log.name})")
        return stdout

    def json_out(self, cmd, name):
        """The JSON document a command prints last (after any progress lines)."""
        text = self.run(cmd, name)
        for start in [m.start() for m in re.finditer(r"^[\[{]", text, re.M)]:
            try:
                return json.loads(text[start:])
            except json.JSONDecodeError:
                continue
        raise StepError(f"{name}: no JSON in its output")

    def both(self, build, name):
        """`build(device)` run on the GPU side and on the CPU: (gpu, cpu) results."""
        return build(self.gpu, f"{name}-{self.gpu}{'-a' if self.dry else ''}"), build("cpu", f"{name}-cpu")


# ---------------------------------------------------------------- comparisons

def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def t975(dof):
    """Two-sided 95% Student-t critical value."""
    table = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]
    return table[dof - 1] if 1 <= dof <= len(table) else 1.96 + 2.4 / dof


def mean_se(xs):
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, 0.0
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var / n)


def verdict(ok):
    return "PASS" if ok else "FAIL"


# ---------------------------------------------------------------- steps

def step_env(c):
    """Which torch and GPU, how much memory is free, and whether the carried
    binaries resolve libtorch from this machine's torch."""
    probe = ("import json, torch\n"
             "d = {'torch': torch.__version__, 'cuda': torch.cuda.is_available()}\n"
             "if d['cuda']:\n"
             "    free, total = torch.cuda.mem_get_info()\n"
             "    d.update(gpu=torch.cuda.get_device_name(0), free=free, total=total,\n"
             "             count=torch.cuda.device_count())\n"
             "print(json.dumps(d))\n")
    info = json.loads(c.run([sys.executable, "-c", probe], "torch-probe"))
    c.report_env = info
    lib = os.environ.get("HART_TORCH_LIB", "")
    missing = []
    for binary in [c.hart()] + [c.bundle / "bin" / t for t, _ in CUDA_TESTS]:
        if not binary.exists():
            raise StepError(f"{binary} is missing: run `bash scripts/gpu-check.sh --stage` on the build machine")
        if not os.access(binary, os.X_OK):
            binary.chmod(0o755)  # a copy that lost its mode bits
        ldd = c.run(["ldd", binary], f"ldd-{binary.name}")
        if "not found" in ldd:
            raise StepError(f"ldd {binary.name}: {[l.strip() for l in ldd.splitlines() if 'not found' in l][0]}")
        # libtorch_cuda is what makes --device cuda work; a CPU-only torch (a dry run's) has none.
        wanted = ["libtorch_cpu.so", "libc10.so"]
        if not c.dry or (Path(lib) / "libtorch_cuda.so").exists():
            wanted.append("libtorch_cuda.so")
        for so in wanted:
            line = next((l for l in ldd.splitlines() if l.strip().startswith(so)), "")
            if not line.split("=>")[-1].strip().startswith(lib):
                missing.append(f"{binary.name}: {so} {line.strip() or 'not linked'}")
    if missing:
        raise StepError(f"libtorch not resolved from {lib}: {missing[0]}")
    figure = f"torch {info['torch']}, libtorch from {lib}"
    if not c.dry:
        if not info["cuda"]:
            c.gpu_ok, c.gpu_why = False, "torch sees no CUDA device"
            return "FAIL", figure + "; torch sees no CUDA device", info
        free_gib = info["free"] / 2**30
        figure += f"; {info['gpu']}, {free_gib:.1f} of {info['total'] / 2**30:.1f} GiB free"
        if free_gib < MIN_FREE_GIB:
            c.gpu_ok, c.gpu_why = False, f"only {free_gib:.1f} GiB of GPU memory free"
            return "FAIL", figure, info
        c.batch = max(100, min(1000, int(1000 * free_gib / FULL_BATCH_GIB)))
        figure += f"; batches of {c.batch}"
    return "PASS", figure, info


def step_cuda_tests(c):
    """The tests that skip where there is no CUDA device, on this one."""
    figures, details = [], {}
    for binary, test in CUDA_TESTS:
        t = time.monotonic()
        out = c.run([c.bundle / "bin" / binary, test, "--exact", "--nocapture", "--test-threads=1"],
                    f"test-{test}") + c.last_stderr  # the harness's `--nocapture` output is on stderr
        seconds = time.monotonic() - t
        if "1 passed" not in out:
            raise StepError(f"{test}: did not run (no `1 passed` in its output)")
        skipped = SKIP_MARK in out
        details[test] = {"skipped": skipped, "seconds": round(seconds, 1)}
        figures.append(f"{test} {'skipped' if skipped else 'passed'} ({seconds:.0f}s)")
    skipped = any(d["skipped"] for d in details.values())
    if skipped and c.dry:
        return "SKIP", "; ".join(figures) + ": no CUDA device, as expected in a dry run", details
    return verdict(not skipped), "; ".join(figures), details


def train_cmd(c, device, out, extra):
    return [c.hart(), "train", "--arch", "lenet5", "--limit", c.size["train_limit"], "--epochs", "1",
            "--batch-size", "32", "--lr", "0.05", "--seed", "0", "--eval-limit", min(c.size["eval_limit"], 2000),
            "--device", device, "--out", out] + extra


VARIANTS = {
    "plain": [],
    "hat-gauss-newton": ["--regularizer", "hessian", "--hessian-lambda", "0.01", "--hessian-method", "gauss-newton"],
    "hat-hutchinson": ["--regularizer", "hessian", "--hessian-lambda", "0.01", "--hessian-method", "hutchinson"],
}


def step_train(c):
    """One epoch of LeNet-5 (batches of 32) from the same initialisation on both
    devices: plain, HAT (Gauss-Newton), HAT (Hutchinson). Rounding differs
    between the devices (and Hutchinson's probes are drawn where the model
    is), so the epoch loss must agree to 2% and test accuracy to 1.5 points
    (Hutchinson: 5% and 3 points)."""
    figures, details, ok = [], {}, True
    for name, extra in VARIANTS.items():
        def build(device, tag):
            path = c.work / f"{tag}.safetensors"
            if not path.exists():  # the plain CPU model may be trained already (model() below)
                c.run(train_cmd(c, device, path, extra), tag)
            return json.loads(path.with_suffix(".train.json").read_text())
        g, p = c.both(build, f"train-{name}")
        lg, lp = g["epochs"][-1]["loss"], p["epochs"][-1]["loss"]
        ag, ap = g["test"]["accuracy"], p["test"]["accuracy"]
        tol = (0.05, 0.03) if name == "hat-hutchinson" else (0.02, 0.015)
        good = rel(lg, lp) <= tol[0] and abs(ag - ap) <= tol[1]
        ok &= good
        details[name] = {"loss": [lg, lp], "test_accuracy": [ag, ap],
                         "trace_estimate": [g["epochs"][-1].get("trace_estimate"),
                                            p["epochs"][-1].get("trace_estimate")]}
        figures.append(f"{name} loss {lg:.4f}/{lp:.4f} acc {100 * ag:.2f}/{100 * ap:.2f}%")
    return verdict(ok), f"{c.gpu}/cpu: " + "; ".join(figures), details


def model(c):
    """The model the later steps load: the plain LeNet-5 trained on the CPU."""
    path = c.work / "train-plain-cpu.safetensors"
    if not path.exists():
        c.run(train_cmd(c, "cpu", path, []), "train-plain-cpu")
    return path


def step_eval(c):
    """The same weights evaluated on both devices: the same correct count
    (same predictions up to ties) and the loss to 1e-4."""
    m = model(c)
    g, p = c.both(lambda d, tag: c.json_out([c.hart(), "eval", "--model", m, "--limit", c.size["eval_limit"],
                                             "--batch-size", c.batch, "--device", d, "--json"], tag), "eval")
    ok = g["correct"] == p["correct"] and rel(g["loss"], p["loss"]) <= 1e-4
    fig = f"{c.gpu}/cpu: {g['correct']}/{p['correct']} of {p['total']} correct, loss {g['loss']:.6f}/{p['loss']:.6f}"
    return verdict(ok), fig, {"gpu": g, "cpu": p}


def step_hessian(c):
    """Hutchinson and Gauss-Newton traces within 3 combined standard errors
    of each other across devices, top eigenvalues (Lanczos) to 2%."""
    m = model(c)
    figures, details, ok = [], {}, True
    for method in ["hutchinson", "gauss-newton"]:
        cmd = lambda d, tag: c.json_out(
            [c.hart(), "hessian", "--model", m, "--method", method, "--top-k", "1", "--seed", "0", "--device", d,
             "--json"] + c.size["hessian"], tag)
        g, p = c.both(cmd, f"hessian-{method}")
        se = math.hypot(g["trace_stderr"], p["trace_stderr"])
        eig_g, eig_p = g["top_eigenvalues"][0], p["top_eigenvalues"][0]
        good = abs(g["trace"] - p["trace"]) <= 3 * se + 1e-9 * abs(p["trace"]) and rel(eig_g, eig_p) <= 0.02
        ok &= good
        details[method] = {"trace": [g["trace"], p["trace"]], "stderr": [g["trace_stderr"], p["trace_stderr"]],
                           "top_eigenvalue": [eig_g, eig_p], "seconds": [g["seconds"], p["seconds"]]}
        figures.append(f"{method} trace {g['trace']:.2f}±{g['trace_stderr']:.2f}/{p['trace']:.2f}±"
                       f"{p['trace_stderr']:.2f}, λmax {eig_g:.3f}/{eig_p:.3f}, {g['seconds']:.1f}/{p['seconds']:.1f}s")
    return verdict(ok), f"{c.gpu}/cpu: " + "; ".join(figures), details


def step_campaign(c):
    """The same seeded bit-error trials on both devices: the same faults
    drawn, each level's mean accuracy within 3 combined standard errors; how
    many trials counted the same is reported (rounding may move a tie)."""
    m = model(c)

    def build(device, tag):
        out = c.work / tag
        shutil.rmtree(out, ignore_errors=True)
        levels = c.json_out([c.hart(), "campaign", "--model", m, "--limit", c.size["campaign_limit"], "--fault",
                             "bitflip", "--levels", "1e-6,1e-5", "--trials", c.size["campaign_trials"], "--seed",
                             "0", "--batch-size", c.batch, "--format", "csv", "--device", device, "--out", out,
                             "--json"], tag)
        with open(out / "trials.csv") as f:
            trials = {(r["level"], r["trial"]): int(r["correct"]) for r in csv.DictReader(f)}
        return levels, trials

    (lg, tg), (lp, tp) = c.both(build, "campaign")
    same = sum(tg.get(k) == v for k, v in tp.items())
    figures, ok = [], len(lg) == len(lp)
    for a, b in zip(lg, lp):
        ok &= a["mean_faults"] == b["mean_faults"]
        n = a["trials"]
        se = math.hypot(a["sd_accuracy"] or 0, b["sd_accuracy"] or 0) / math.sqrt(n)
        ok &= abs(a["mean_accuracy"] - b["mean_accuracy"]) <= 3 * se + 1e-12
        figures.append(f"BER {a['level']:g}: {100 * a['mean_accuracy']:.2f}/{100 * b['mean_accuracy']:.2f}%")
    fig = f"{c.gpu}/cpu: " + "; ".join(figures) + f"; {same} of {len(tp)} trials counted the same"
    return verdict(ok), fig, {"gpu": lg, "cpu": lp, "same_trials": same, "trials": len(tp)}


def step_attack(c):
    """BFA on int8 codes on both devices: the clean accuracy within one
    image (a code at a rounding boundary may quantize differently), and mean
    flips to the target within a quarter (at least one flip) or twice the
    combined standard error: gradients round differently, which can reorder
    near-equal candidates."""
    m = model(c)

    def build(device, tag):
        out = c.work / tag
        shutil.rmtree(out, ignore_errors=True)
        return c.json_out([c.hart(), "attack", "--model", m, "--limit", c.size["attack_limit"], "--eval-limit",
                           c.size["attack_eval"], "--max-flips", c.size["attack_flips"], "--trials",
                           c.size["attack_trials"], "--seed", "0", "--batch-size", c.batch, "--device", device,
                           "--out", out, "--json"], tag)

    g, p = c.both(build, "attack")
    fg = [t["flips"] for t in g["trials"]]
    fp = [t["flips"] for t in p["trials"]]
    (mg, sg), (mp, sp) = mean_se(fg), mean_se(fp)
    tol = max(1.0, 0.25 * mp, 2 * math.hypot(sg, sp))
    ok = abs(g["clean_accuracy"] - p["clean_accuracy"]) * c.size["attack_eval"] <= 1 + 1e-9 and abs(mg - mp) <= tol
    fig = (f"{c.gpu}/cpu: clean {100 * g['clean_accuracy']:.2f}/{100 * p['clean_accuracy']:.2f}%, "
           f"flips per trial {fg}/{fp} (mean {mg:.1f}/{mp:.1f}, target {100 * p['target_accuracy']:.1f}%)")
    return verdict(ok), fig, {"gpu": g, "cpu": p}


def step_bench(c):
    """`hart bench sweep --device` rows: the engine's flips/s and its ratio
    to the brute-force loops timed in the same run on the same device (the
    in-process reference; the TorchScript row's plain PyTorch loop)."""
    rows = c.json_out([c.hart(), "bench", "sweep", "--device", c.gpu, "--json"] + c.size["bench"], "bench-sweep")
    figures = []
    for r in rows:
        rate = 1.0 / r["candidate"]["median_s"]
        figures.append(f"{r['what']}: {rate:,.0f} flips/s, {r['speedup']:.2f}× {r['baseline']['name']}")
    ok = bool(rows) and all(math.isfinite(r["speedup"]) and r["speedup"] > 0 for r in rows)
    return verdict(ok), f"on {c.gpu}: " + "; ".join(figures), {"rows": rows}


def write_cifar(root, train, test):
    """A CIFAR-10 binary folder of 32×32 images that a small CNN can learn
    (class template plus noise, seeded): the device has no CIFAR-10, and a
    sweep of a model with nothing to lose measures little. Written with torch
    (present wherever the check runs) for speed."""
    import torch
    g = torch.Generator().manual_seed(0)
    templates = torch.randint(0, 256, (10, 3072), generator=g, dtype=torch.int16)
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True, exist_ok=True)

    def batch(n):
        labels = torch.randint(0, 10, (n,), generator=g)
        noise = torch.randint(0, 256, (n, 3072), generator=g, dtype=torch.int16)
        images = ((templates[labels] + noise) // 2).to(torch.uint8)
        # tolist, not numpy: torch may come without numpy.
        return bytes(torch.cat([labels.to(torch.uint8)[:, None], images], 1).flatten().tolist())

    per = -(-train // 5)
    for i in range(1, 6):
        (d / f"data_batch_{i}.bin").write_bytes(batch(per))
    (d / "test_batch.bin").write_bytes(batch(test))
    return d


def step_exponent_sample(c):
    """A timed sample of resnet18-cifar's exponent bits (23-30) with
    sequential verdicts at 99.9% on the test images: a pilot sizes the
    runs, then independent samples (one seed each) give the seconds per
    flip, its 95% t-interval across runs, and the exhaustive exponent sweep
    that implies."""
    s = c.size
    data = write_cifar(c.work / "cifar", s["cifar_train"], s["sample_images"])
    net = c.work / "resnet18-cifar.safetensors"
    c.run([c.hart(), "train", "--arch", "resnet18-cifar", "--dataset", data, "--limit", s["cifar_train"],
           "--epochs", s["cifar_epochs"], "--batch-size", "64", "--lr", "0.05", "--seed", "0", "--eval-limit",
           s["sample_images"], "--device", c.gpu, "--out", net], "train-resnet18-cifar")
    accuracy = json.loads(net.with_suffix(".train.json").read_text())["test"]["accuracy"]

    def sample(elements, seed):
        out = c.work / f"sample-{seed}"
        shutil.rmtree(out, ignore_errors=True)
        text = c.run([c.hart(), "sweep", "--model", net, "--dataset", data, "--limit", s["sample_images"], "--bits",
                      "exponent", "--sample-params", elements, "--seed", seed, "--verdict", "sequential",
                      "--confidence", "0.999", "--batch-size", c.batch, "--format", "csv", "--device", c.gpu,
                      "--out", out] + s["sample_params"], f"sweep-sample-{seed}")
        m = re.search(r"^(\d+) flips in ([0-9.]+)s", text, re.M)
        if not m:
            raise StepError("sweep printed no `N flips in Ts` line")
        summary = json.loads((out / "summary.json").read_text())
        return int(m.group(1)), float(m.group(2)), summary

    n0, t0, _ = sample(s["pilot_elements"], 1000)
    per_run = s["sample_budget_s"] / s["sample_runs"]
    elements = int(min(4096, max(s["pilot_elements"], per_run / max(t0 / n0, 1e-9) / 8)))
    runs = [sample(elements, seed) for seed in range(1, s["sample_runs"] + 1)]
    per_flip = [t / n for n, t, _ in runs]
    mean, se = mean_se(per_flip)
    half = t975(len(runs) - 1) * se
    summary = runs[-1][2]
    population = summary["estimate"]["population_flips"]
    days = lambda sec: population * sec / 86400
    seq = [r[2]["sequential"] for r in runs]
    erratic = [r[2]["estimate"]["erratic_fraction"] for r in runs]
    details = {
        "clean_accuracy": accuracy, "elements_per_run": elements, "flips_per_run": [r[0] for r in runs],
        "seconds_per_run": [r[1] for r in runs], "seconds_per_flip": per_flip, "population_flips": population,
        "exhaustive_days": days(mean), "exhaustive_days_ci95": [days(max(mean - half, 0)), days(mean + half)],
        "mean_samples": [q["mean_samples"] for q in seq], "expected_wrong_at_most": [q["expected_wrong_at_most"]
                                                                                     for q in seq],
        "erratic_fraction": erratic, "images": s["sample_images"],
    }
    fig = (f"{len(runs)} samples of {elements} elements × 8 bits on {s['sample_images']} images "
           f"(clean {100 * accuracy:.1f}%): {1 / mean:,.{0 if mean < 0.01 else 2}f} flips/s; the exhaustive exponent sweep "
           f"({population:,} flips) would take {days(mean):.2f} days (95% CI {days(max(mean - half, 0)):.2f}-"
           f"{days(mean + half):.2f}) on {c.gpu}")
    if s["sample_params"]:
        fig += f" (tensors matching {s['sample_params'][1]} only)"
    ok = all(math.isfinite(x) and x > 0 for x in per_flip)
    return verdict(ok), fig, details


STEPS = [("env", step_env), ("cuda-tests", step_cuda_tests), ("eval", step_eval), ("train", step_train),
         ("hessian", step_hessian), ("campaign", step_campaign), ("attack", step_attack),
         ("bench-sweep", step_bench), ("exponent-sample", step_exponent_sample)]
# Steps that need nothing of the GPU (run whatever the memory check found).
HOST_STEPS = {"env"}


class MemoryWatch(threading.Thread):
    """The most GPU memory in use while the check runs (nvidia-smi, once a
    second): what the steps needed, beside what was in use before."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_mib = None
        self.start_mib = None
        self.stop = threading.Event()

    def used(self):
        try:
            p = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i",
                                "0"], capture_output=True, text=True, timeout=10)
            return float(p.stdout.split()[0]) if p.returncode == 0 else None
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return None

    def run(self):
        while not self.stop.wait(1.0):
            u = self.used()
            if u is not None:
                self.start_mib = u if self.start_mib is None else self.start_mib
                self.peak_mib = max(self.peak_mib or 0, u)


def check(args):
    out = Path(args.out).resolve()
    bundle = Path(args.bundle).resolve()
    out.mkdir(parents=True, exist_ok=True)
    c = Check(out, bundle, args.dry_run)
    for d in [c.work, c.logs]:
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    c.report_env = {}
    watch = MemoryWatch()
    if not c.dry:
        watch.start_mib = watch.used()
        watch.start()
    results = []
    for name, fn in STEPS:
        t = time.monotonic()
        c.step_deadline = t + LIMITS[name] * (DRY_SLACK if c.dry else 1)
        if not c.gpu_ok and name not in HOST_STEPS:
            res = ("SKIP", c.gpu_why, {})
        else:
            try:
                res = fn(c)
            except StepError as e:
                res = ("FAIL", str(e), {})
            except (KeyError, IndexError, TypeError, ValueError, OSError) as e:
                res = ("FAIL", f"{type(e).__name__}: {e}", {})
        seconds = time.monotonic() - t
        if name == "env" and res[0] == "FAIL" and c.gpu_ok:
            c.gpu_ok, c.gpu_why = False, "the env step failed"
        results.append({"step": name, "verdict": res[0], "figure": res[1], "seconds": round(seconds, 1),
                        "details": res[2]})
        print(f"{res[0]:<4} {name:<16} {seconds:6.1f}s  {res[1]}", flush=True)
    watch.stop.set()
    total = time.monotonic() - c.started
    failed = [r["step"] for r in results if r["verdict"] == "FAIL"]
    report = {
        "mode": "dry-run (cpu)" if c.dry else "gpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": os.uname().nodename, "environment": c.report_env, "total_seconds": round(total, 1),
        "gpu_memory_mib": {"before": watch.start_mib, "peak": watch.peak_mib},
        "failed": failed, "steps": results,
    }
    (out / "gpu-check.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# GPU check ({report['mode']}), {report['date']}", "",
             f"{c.report_env.get('gpu', 'no GPU')}; torch {c.report_env.get('torch', '?')}; "
             f"{total:.0f} s in all" + (f"; GPU memory in use {watch.start_mib:.0f} MiB before, "
                                        f"{watch.peak_mib:.0f} MiB at the peak" if watch.peak_mib and watch.start_mib is not None else "") + ".",
             "", "| step | verdict | seconds | figure |", "|---|---|---|---|"]
    lines += [f"| {r['step']} | {r['verdict']} | {r['seconds']} | {r['figure'].replace('|', '/')} |"
              for r in results]
    (out / "gpu-check.md").write_text("\n".join(lines) + "\n")
    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all steps passed or skipped'}; {total:.0f}s; "
          f"report in {out}/gpu-check.md and gpu-check.json")
    return 1 if failed else 0


# ---------------------------------------------------------------- staging

def cargo_env():
    """scripts/env.sh's settings, unless a caller already made them (test.sh
    sources it; changing VIRTUAL_ENV would rebuild libtorch's bindings)."""
    env = dict(os.environ)
    if "VIRTUAL_ENV" not in env:
        env["VIRTUAL_ENV"] = str(ROOT / ".venv")
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env.setdefault("LIBTORCH_USE_PYTORCH", "1")
    return env


def test_executables(env):
    """The test binaries of CUDA_TESTS, built with the whole workspace's
    feature set as scripts/test.sh builds them, so nothing rebuilds there."""
    names = [a for name, _ in CUDA_TESTS for a in ("--test", name)]
    p = subprocess.run(["cargo", "test", "--release", "--locked", "--workspace", "--no-run",
                        "--message-format=json"] + names, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"error: building the test binaries failed:\n{p.stderr[-2000:]}")
    found = {}
    for line in p.stdout.splitlines():
        msg = json.loads(line)
        target = msg.get("target", {})
        if msg.get("executable") and "test" in target.get("kind", []):
            found[target["name"]] = Path(msg["executable"])
    return found


def copy_idx_subset(src, dst, count):
    """The first `count` records of a gzipped IDX file, with its header's
    count set to match (a smaller, valid file)."""
    with gzip.open(src, "rb") as f:
        magic = f.read(4)
        dims = magic[3]
        shape = [int.from_bytes(f.read(4), "big") for _ in range(dims)]
        n = min(count, shape[0])
        per = math.prod(shape[1:])
        body = f.read(n * per)
    with gzip.open(dst, "wb", compresslevel=9) as f:
        f.write(magic + n.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape[1:]) + body)


def stage(args):
    bundle = Path(args.stage).resolve()
    env = cargo_env()
    if subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT, env=env).returncode != 0:
        sys.exit("error: cargo build --release failed")
    tests = test_executables(env)
    tmp = bundle.with_name(bundle.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    binaries = [(ROOT / "target/release/hart", "hart")]
    for name, _ in CUDA_TESTS:
        if name not in tests:
            sys.exit(f"error: no test binary {name} among {sorted(tests)}")
        binaries.append((tests[name], name))
    for src, name in binaries:
        shutil.copy2(src, tmp / "bin" / name)
        # Symbols only: the 64 MiB a device run carries holds no debug tables.
        subprocess.run(["strip", tmp / "bin" / name], check=True)
    source = Path(os.environ.get("HART_DATA", "")) / "fashion-mnist"
    if not source.is_dir():
        source = Path("/usr/share/datasets/fashion-mnist")
    fm = tmp / "data" / "fashion-mnist"
    fm.mkdir(parents=True)
    for kind in ["images-idx3-ubyte", "labels-idx1-ubyte"]:
        shutil.copy2(source / f"t10k-{kind}.gz", fm / f"t10k-{kind}.gz")
        copy_idx_subset(source / f"train-{kind}.gz", fm / f"train-{kind}.gz", TRAIN_SUBSET)
    shutil.rmtree(bundle, ignore_errors=True)
    tmp.rename(bundle)
    sizes = {str(p.relative_to(bundle)): p.stat().st_size for p in sorted(bundle.rglob("*")) if p.is_file()}
    for path, size in sizes.items():
        print(f"{size / 2**20:8.1f} MiB  {path}")
    total = sum(sizes.values()) / 2**20
    print(f"{total:8.1f} MiB  in all ({bundle}); carry it with the device tool's carry: [\"{bundle.name}\"]")
    if total >= 64:
        sys.exit(f"error: the bundle is {total:.1f} MiB, over the 64 MiB a device run can carry")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", nargs="?", const=str(DEFAULT_BUNDLE), metavar="BUNDLE",
                    help="build and copy what the check runs into BUNDLE (default gpu-bundle/)")
    ap.add_argument("--dry-run", action="store_true", help="every step on the CPU with tiny sizes")
    ap.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="where the staged binaries are")
    ap.add_argument("out", nargs="?", help="output directory of the report")
    args = ap.parse_args()
    if args.stage:
        return stage(args)
    if not args.out:
        ap.error("OUT_DIR is required (or --stage)")
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
