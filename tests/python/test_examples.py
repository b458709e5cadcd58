"""The README's Python example (examples/from_python.py) runs, shortened
(--tiny: every step on a few hundred images), so it cannot rot: its
comparison table names the four models and its plot is written."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_from_python_example_runs(tmp_path):
    p = subprocess.run([sys.executable, ROOT / "examples" / "from_python.py", "--tiny", "--out", tmp_path],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.splitlines()
    assert lines[0].startswith("hart.Model(onnx; ") and lines[1].startswith("hart.SweepResult(clean accuracy "), p.stdout
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["model", "clean_accuracy"])
    assert [line.split()[0] for line in lines[header + 1 : header + 5]] == ["trained", "plain", "hat", "noise"]
    assert (tmp_path / "erratic_per_layer.png").stat().st_size > 10_000
