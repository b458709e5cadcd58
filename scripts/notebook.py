"""Builds an executed Jupyter notebook from a percent-format script
(`# %%` code cells, `# %% [markdown]` cells of `# ` comment lines), so an
example has one source: the script, which tests run, and the notebook, whose
code cells are the script's cells (tests/python/test_examples.py checks that).

Usage: .venv/bin/python scripts/notebook.py SCRIPT OUT.ipynb [ARGS...]
ARGS become the script's sys.argv[1:] (e.g. --tiny). The cells run in this
process, in order, in one namespace, as a kernel would run them: each cell's
printed output and the matplotlib figures it leaves open (as PNG) are kept as
its outputs. No Jupyter installation is needed to build or to test it.
"""

import base64
import contextlib
import io
import json
import sys
import traceback
from pathlib import Path


def cells(text):
    """[(kind, source)] of a percent-format script; kind is 'code' or 'markdown'."""
    out, kind, lines = [], None, []

    def close():
        body = "\n".join(lines).strip("\n")
        if kind is not None and body:
            out.append((kind, body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            close()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif kind is not None:
            lines.append(line)
    close()
    return out


def _source(text):
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def _figures(dpi):
    import matplotlib.pyplot as plt

    shown = []
    for num in plt.get_fignums():
        buf = io.BytesIO()
        plt.figure(num).savefig(buf, format="png", dpi=dpi)
        shown.append({"output_type": "display_data", "metadata": {},
                      "data": {"image/png": base64.b64encode(buf.getvalue()).decode(), "text/plain": ["<Figure>"]}})
    plt.close("all")
    return shown


def run(script, args, dpi=80):
    """The notebook (a dict, nbformat 4.5) of `script` run with `args`."""
    import matplotlib

    matplotlib.use("Agg")
    sys.argv = [str(script), *args]
    namespace = {"__name__": "__main__"}
    nb_cells, count = [], 0
    for i, (kind, text) in enumerate(cells(Path(script).read_text())):
        cell = {"cell_type": kind, "id": f"cell-{i}", "metadata": {}, "source": _source(text)}
        if kind == "code":
            count += 1
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                try:
                    exec(compile(text, f"{script} cell {count}", "exec"), namespace)
                    failed = None
                except Exception:  # noqa: BLE001 - reported, and the build fails
                    failed = traceback.format_exc()
            if failed:
                sys.exit(f"{script} cell {count} failed:\n{out.getvalue()}{failed}")
            outputs = [{"output_type": "stream", "name": "stdout", "text": _source(out.getvalue())}] if out.getvalue() else []
            cell.update(execution_count=count, outputs=outputs + _figures(dpi))
        nb_cells.append(cell)
    return {
        "cells": nb_cells,
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: scripts/notebook.py SCRIPT OUT.ipynb [ARGS...]")
    script, target, args = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    nb = run(script, args)
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {target} ({sum(c['cell_type'] == 'code' for c in nb['cells'])} code cells)", file=sys.__stderr__)


if __name__ == "__main__":
    main()
