"""The README's "Harden your own model" example (examples/own_model.py) on a
tiny budget, so it cannot rot: its export trains and writes an ONNX file
HART reads, and its `accuracy` command, reloading that file's initializers
into the PyTorch module by name, counts what the exported module counted and
what `hart eval` counts on the same test images."""

import json
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own_model.py"
TEST_IMAGES = 300


def run(*args):
    out = subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def counted(text):
    """(correct, total) from the example's `test accuracy P% (C/T)` line."""
    m = re.search(r"test accuracy [0-9.]+% \((\d+)/(\d+)\)", text)
    assert m, text
    return int(m[1]), int(m[2])


def test_export_and_reload_agree_with_hart(tmp_path, hart_bin):
    model = tmp_path / "own.onnx"
    exported = run("export", str(model), "--images", "256", "--epochs", "1", "--test-images", str(TEST_IMAGES))
    assert model.exists(), exported
    reloaded = run("accuracy", str(model), "--test-images", str(TEST_IMAGES))
    correct, total = counted(reloaded)
    assert (correct, total) == counted(exported)
    # The brief training learned something: well above chance (10%).
    assert correct > 0.3 * total, reloaded

    ev = subprocess.run(
        [str(hart_bin), "eval", "--model", str(model), "--limit", str(TEST_IMAGES), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ev.returncode == 0, ev.stderr
    hart = json.loads(ev.stdout)
    assert (hart["correct"], hart["total"]) == (correct, total)
