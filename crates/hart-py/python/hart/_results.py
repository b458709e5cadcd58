"""Results as pandas DataFrames and dicts, read from the files the engine
wrote (the same files the CLI writes)."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd


class SweepResult:
    """What ``hart.sweep`` measured.

    ``flips``: one row per flip with the columns of ``flips.parquet``
    (``param, index, bit, old, new, correct, total, rad, exact, samples, bound, sure``);
    for a grouped fault list, ``groups`` holds ``groups.csv`` instead and ``flips`` is None.
    ``summary``: ``summary.json`` as a dict. ``per_layer`` and ``per_bit``:
    its per-layer (graph node) and per-bit counts as DataFrames; ``per_tensor``
    the same counts per tensor, by state-dict name. ``out``: the directory the
    engine wrote (None when the sweep ran in a temporary one).
    """

    def __init__(self, directory, kind, out):
        with open(os.path.join(directory, "summary.json")) as f:
            self.summary = json.load(f)
        self.out = out
        if kind == "groups":
            self.flips = None
            self.groups = pd.read_csv(os.path.join(directory, "groups.csv"))
        else:
            path = os.path.join(directory, "flips.parquet")
            self.flips = pd.read_parquet(path) if os.path.exists(path) else pd.read_csv(
                os.path.join(directory, "flips.csv")
            )
            self.groups = None
        self.per_layer = pd.DataFrame(self.summary.get("per_layer", []), columns=["layer", "flips", "erratic_bits", "params", "erratic_params"])
        self.per_bit = pd.DataFrame(self.summary.get("per_bit", []), columns=["bit", "field", "flips", "erratic_bits"])

    @property
    def per_tensor(self):
        """Flips and erratic bits per tensor (state-dict names), from ``flips``."""
        if self.flips is None:
            return None
        erratic = self.flips["rad"] > self.summary["threshold"]
        table = self.flips.assign(erratic=erratic).groupby("param", sort=False)
        return table.agg(flips=("bit", "size"), erratic_bits=("erratic", "sum")).reset_index()

    @property
    def clean_accuracy(self):
        return self.summary["clean_accuracy"]

    @property
    def erratic(self):
        """The flips whose RAD exceeds the threshold (the erratic bits)."""
        if self.flips is None:
            return None
        return self.flips[self.flips["rad"] > self.summary["threshold"]]

    def to_parquet(self, directory):
        """Writes ``flips.parquet`` (or ``groups.parquet``), ``per_layer.parquet``,
        ``per_bit.parquet`` and ``summary.json`` into ``directory``."""
        os.makedirs(directory, exist_ok=True)
        table = self.flips if self.flips is not None else self.groups
        table.to_parquet(os.path.join(directory, "flips.parquet" if self.flips is not None else "groups.parquet"))
        self.per_layer.to_parquet(os.path.join(directory, "per_layer.parquet"))
        self.per_bit.to_parquet(os.path.join(directory, "per_bit.parquet"))
        with open(os.path.join(directory, "summary.json"), "w") as f:
            json.dump(self.summary, f, indent=2)

    def __repr__(self):
        c = self.summary
        return (
            f"hart.SweepResult(clean accuracy {100 * self.summary['clean_accuracy']:.2f}%, "
            f"{c.get('flips', 0)} flips, {c.get('erratic_bits', 0)} erratic bits, "
            f"{c.get('erratic_params', 0)} of {c.get('params', 0)} parameters erratic)"
        )


class CampaignResult:
    """What ``hart.campaign`` measured, every storage format together.

    ``trials``: one row per trial, the columns of ``trials.parquet`` plus
    ``storage``; ``levels``: the per-level statistics of ``summary.json``
    (mean accuracy, its interval, erratic share, ...) plus ``storage``;
    ``summaries``: each format's ``summary.json`` as a dict, by format.
    """

    def __init__(self, dirs, out):
        self.out = out
        self.summaries, trials, levels = {}, [], []
        for storage, directory in dirs.items():
            with open(os.path.join(directory, "summary.json")) as f:
                summary = json.load(f)
            self.summaries[storage] = summary
            path = os.path.join(directory, "trials.parquet")
            table = pd.read_parquet(path) if os.path.exists(path) else pd.read_csv(os.path.join(directory, "trials.csv"))
            trials.append(table.assign(storage=storage))
            levels.append(pd.DataFrame(summary["levels"]).assign(storage=storage))
        self.trials = pd.concat(trials, ignore_index=True)
        self.levels = pd.concat(levels, ignore_index=True)

    def __repr__(self):
        return f"hart.CampaignResult({len(self.trials)} trials, storage {', '.join(self.summaries)})"


class AttackResult:
    """What ``hart.attack`` measured.

    ``flips``: every committed flip, the columns of ``flips.csv`` (``group,
    trial, method, iteration, param, index, bit, old, new, attack_loss,
    accuracy``; a grouped fault list ``hart.sweep(faults=...)`` replays).
    ``summary``: ``summary.json`` as a dict. ``trials``: one row per trial
    (``method, trial, flips, final_accuracy, reached, detected_flips,
    zeroed_weights, zeroed_groups``; the random baseline's rows too).
    ``curves``: accuracy after 0, 1, … flips per trial (``method, trial,
    flips, accuracy``). ``mean_flips`` and ``ci95``: flips to the target.
    """

    def __init__(self, directory, out):
        with open(os.path.join(directory, "summary.json")) as f:
            self.summary = json.load(f)
        self.out = out
        self.flips = pd.read_csv(os.path.join(directory, "flips.csv"))
        s = self.summary
        rows = [(s["method"], t) for t in s["trials"]] + [("random", t) for t in s.get("random_baseline", [])]
        self.trials = pd.DataFrame(
            [{"method": m, **{k: v for k, v in t.items() if k != "curve"}} for m, t in rows],
            columns=["method", "trial", "flips", "final_accuracy", "reached", "detected_flips", "zeroed_weights",
                     "zeroed_groups"],
        )
        self.curves = pd.DataFrame(
            [(m, t["trial"], n, a) for m, t in rows for n, a in enumerate(t["curve"])],
            columns=["method", "trial", "flips", "accuracy"],
        )
        self.mean_flips = s["mean_flips"]
        self.ci95 = s["ci95"]
        self.clean_accuracy = s["clean_accuracy"]

    def __repr__(self):
        s = self.summary
        ci = "" if self.ci95 is None else f" (95% CI {self.ci95[0]:.1f}–{self.ci95[1]:.1f})"
        return (
            f"hart.AttackResult({s['method']} on {s['storage']}, defense {s['defense']}: clean accuracy "
            f"{100 * s['clean_accuracy']:.2f}%, target {100 * s['target_accuracy']:.2f}%, "
            f"{self.mean_flips:.1f} flips to it{ci} over {len(s['trials'])} trials)"
        )


class HessianResult:
    """What ``hart.hessian`` measured: ``hart hessian --json``'s report.

    ``trace``, ``trace_stderr``, ``top_eigenvalues``; ``per_layer`` a DataFrame
    (``tensor, trace, stderr``); ``density`` (when asked for) a dict; ``report``
    the whole JSON object.
    """

    def __init__(self, report):
        self.report = report
        self.trace = report["trace"]
        self.trace_stderr = report["trace_stderr"]
        self.top_eigenvalues = report["top_eigenvalues"]
        self.density = report.get("density")
        stderr = report.get("per_layer_stderr", {})
        self.per_layer = pd.DataFrame(
            [(k, v, stderr.get(k)) for k, v in report["per_layer"].items()], columns=["tensor", "trace", "stderr"]
        )

    def __repr__(self):
        top = ", ".join(f"{v:.4g}" for v in self.top_eigenvalues)
        return (
            f"hart.HessianResult(trace {self.trace:.4g} ± {self.trace_stderr:.2g} over {self.report['probes']} probes, "
            f"top eigenvalues [{top}])"
        )


def remove(directory):
    shutil.rmtree(directory, ignore_errors=True)
