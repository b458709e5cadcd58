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


TRAIN = textwrap.dedent(
    """
    import sys, hart
    def progress(done, total, message):
        if done:
            print("progress", done, total, flush=True)
    hart.fine_tune(sys.argv[1], "fashion-mnist", limit=512, epochs=5000, eval_limit=0, out=sys.argv[2],
                   progress=progress)
    print("finished", flush=True)
    """
)


def test_sigint_stops_fine_tuning_between_steps(trained_cnn, tmp_path):
    # 5,000 epochs would run for many minutes: only a stop between steps ends it within the timeout.
    model = tmp_path / "cnn.onnx"
    hart.load(trained_cnn).save(model)
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAIN, str(model), str(tmp_path / "tuned.onnx")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    first = proc.stdout.readline()
    assert first.startswith("progress"), (first, proc.stderr.read())
    proc.send_signal(signal.SIGINT)
    try:
        rest, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("fine_tune went on training after Ctrl-C") from None
    assert "finished" not in rest and "KeyboardInterrupt" in err, err
    assert not (tmp_path / "tuned.onnx").exists(), "an interrupted training wrote a model"
