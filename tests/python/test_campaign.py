"""hart.campaign against `hart campaign` on the module's ONNX export, and a
brute-force check of its clean accuracy."""

import json
import subprocess

import pandas as pd
import pytest

import hart


def test_campaign_equals_the_cli(trained_cnn, hart_bin, tmp_path, fashion_test):
    exported = hart.load(trained_cnn).save(tmp_path / "cnn.onnx")
    opts = dict(fault="bitflip", levels=[1e-5, 1e-4], storage=["fp32", "int8"], trials=6, limit=100, seed=3)
    py = hart.campaign(str(exported), "fashion-mnist", out=tmp_path / "py", progress=False, **opts)
    cli = tmp_path / "cli"
    subprocess.run(
        [hart_bin, "campaign", "--model", exported, "--dataset", "fashion-mnist", "--limit", "100", "--fault",
         "bitflip", "--levels", "1e-5,1e-4", "--storage", "fp32,int8", "--trials", "6", "--seed", "3", "--out", cli],
        check=True, capture_output=True,
    )
    for storage in ["fp32", "int8"]:
        mine = py.trials[py.trials["storage"] == storage].drop(columns="storage").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, pd.read_parquet(cli / storage / "trials.parquet"))
        assert py.summaries[storage] == json.loads((cli / storage / "summary.json").read_text())
    assert len(py.trials) == 2 * 2 * 6
    assert set(py.levels["storage"]) == {"fp32", "int8"}
    eager = hart.campaign(trained_cnn, "fashion-mnist", progress=False, **opts)
    pd.testing.assert_frame_equal(eager.trials, py.trials)


def test_campaign_bad_arguments(trained_cnn):
    with pytest.raises(ValueError, match="--fault"):
        hart.campaign(trained_cnn, "fashion-mnist", fault="cosmic", levels=[0.1], limit=10, progress=False)
    with pytest.raises(ValueError, match="twice"):
        hart.campaign(trained_cnn, "fashion-mnist", fault="bitflip", levels=[0.1], storage="fp32,fp32", limit=10)
