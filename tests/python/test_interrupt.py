"""Ctrl-C (SIGINT) during hart.sweep: the call stops with KeyboardInterrupt
within a unit of work, and the same call on the same directory resumes
to the table an uninterrupted sweep writes."""

import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd

import hart

SCRIPT = textwrap.dedent(
    """
    import sys, hart
    def progress(done, total, message):
        if done:
            print("progress", done, total, flush=True)
    hart.sweep(sys.argv[1], "fashion-mnist", limit=300, params="fc.weight", jobs=1, out=sys.argv[2], progress=progress)
    print("finished", flush=True)
    """
)
OPTS = dict(limit=300, params="fc.weight", jobs=1, progress=False)


def test_sigint_stops_the_sweep_and_leaves_it_resumable(trained_cnn, tmp_path):
    model = tmp_path / "cnn.onnx"
    hart.load(trained_cnn).save(model)
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(model), str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    first = proc.stdout.readline()
    assert first.startswith("progress"), (first, proc.stderr.read())
    done, total = map(int, first.split()[1:])
    assert done < total, "the sweep finished before it could be interrupted: give it more work"
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert "finished" not in rest
    assert "KeyboardInterrupt" in err, err
    assert proc.returncode != 0
    parts = os.listdir(out / "parts")
    assert parts, "finished units should be on disk"
    assert not (out / "flips.parquet").exists()

    resumed = hart.sweep(str(model), "fashion-mnist", out=out, **OPTS)
    fresh = hart.sweep(str(model), "fashion-mnist", **OPTS)
    pd.testing.assert_frame_equal(resumed.flips, fresh.flips)
    assert resumed.summary == fresh.summary
    assert len(fresh.flips) == 32 * trained_cnn.fc.weight.numel()
