"""hart.hessian against `hart hessian` on the module's ONNX export."""

import json
import subprocess

import hart


def test_hessian_trace_equals_the_cli_within_stderr(trained_cnn, hart_bin, tmp_path):
    model = hart.load(trained_cnn)
    res = hart.hessian(model, "fashion-mnist", split="test", limit=200, max_probes=60, progress=False)
    path = model.save(tmp_path / "cnn.onnx")
    out = subprocess.run(
        [hart_bin, "hessian", "--model", path, "--dataset", "fashion-mnist", "--split", "test",
         "--limit", "200", "--max-probes", "60", "--json"],
        check=True, capture_output=True, text=True,
    )
    cli = json.loads(out.stdout)
    assert res.trace > 0 and res.trace_stderr > 0
    assert abs(res.trace - cli["trace"]) <= res.trace_stderr + cli["trace_stderr"]
    assert res.report["parameters"] == cli["parameters"] == sum(p.numel() for p in trained_cnn.parameters())
    assert list(res.per_layer["tensor"]) == [n for n, _ in trained_cnn.named_parameters()]
    assert len(res.top_eigenvalues) == 1 and res.top_eigenvalues[0] > 0
