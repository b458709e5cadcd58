"""The README's Python example cannot rot: examples/from_python.py runs
shortened (--tiny: every step on a few hundred images) through
scripts/notebook.py, which runs the script's cells in order as a kernel would,
and the committed examples/from_python.ipynb holds exactly the script's cells,
executed."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "from_python.py"
sys.path.insert(0, str(ROOT / "scripts"))
from notebook import cells  # noqa: E402


def printed(nb):
    return "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])


def check_outputs(nb):
    lines = printed(nb).splitlines()
    assert lines[0].startswith("hart.Model(onnx; ") and lines[1].startswith("hart.SweepResult(clean accuracy "), lines
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["model", "clean_accuracy"])
    assert [line.split()[0] for line in lines[header + 1 : header + 5]] == ["trained", "plain", "hat", "noise"]
    pngs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"] if "image/png" in o.get("data", {})]
    assert len(pngs) == 1 and len(pngs[0]["data"]["image/png"]) > 10_000


def test_the_example_runs_cell_by_cell(tmp_path):
    target = tmp_path / "nb.ipynb"
    p = subprocess.run([sys.executable, ROOT / "scripts" / "notebook.py", SCRIPT, target, "--tiny", "--out", tmp_path],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    check_outputs(json.loads(target.read_text()))
    assert (tmp_path / "erratic_per_layer.png").stat().st_size > 10_000


def test_the_committed_notebook_is_the_script_executed():
    nb = json.loads((ROOT / "examples" / "from_python.ipynb").read_text())
    assert [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]] == cells(SCRIPT.read_text()), (
        "examples/from_python.ipynb differs from examples/from_python.py: rebuild it with scripts/notebook.py"
    )
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    check_outputs(nb)
    assert "hart.SweepResult(clean accuracy 86.60%, 50650 flips" in printed(nb), "not the full run the README quotes"
