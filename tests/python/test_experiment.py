"""hart.experiment against `hart experiment` on the same tiny configuration:
given as a dict (written as TOML by the engine) it runs the same stages and
writes the same summary.json but for the timings; given as a path it reads
the file as the CLI does; a bad key is one line naming it."""

import json
import subprocess
import tomllib

import pytest

import hart

# The smallest experiment with a comparison: two recipes, one seed, a
# sampled sweep and the curvature, compression and landscape measurements.
TINY = """
name = "tiny-py"
archs = ["mlp"]
seeds = [0]

[data]
train_limit = 200
test_limit = 60

[train]
epochs = 1
optimizer = "adam"
lr = 0.001

[[recipe]]
name = "plain"

[[recipe]]
name = "noise"
regularizer = "noise"
noise_std = 0.05

[sweep]
bits = "30"
limit = 20
sample_params = 8

[analysis]
hessian_limit = 20
quantize_bits = [8, 4]
prune_sparsity = [0.5]

[analysis.landscape]
steps = 3
limit = 20
"""


def without_times(value):
    """summary.json without what depends on the clock."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [without_times(v) for v in value if not (isinstance(v, str) and "training time" in v)]
    return value


def test_a_dict_config_runs_what_the_cli_runs(hart_bin, tmp_path):
    config = tomllib.loads(TINY)
    res = hart.experiment(config, out=tmp_path / "py", progress=False)
    assert (tmp_path / "py" / "config.toml").exists() and res.config == str(tmp_path / "py" / "config.toml")
    assert res.report == str(tmp_path / "py" / "report.html") and (tmp_path / "py" / "summary.md").exists()
    assert len(res.groups) == 2 and [g["recipe"] for g in res.groups] == ["plain", "noise"]
    assert res.computed == len(res.stages) > 0
    assert res.groups == res.summary["groups"]
    assert "noise" in set(res.table["recipe"])

    (tmp_path / "tiny.toml").write_text(TINY)
    cli = subprocess.run([hart_bin, "experiment", tmp_path / "tiny.toml", "--out", tmp_path / "cli"],
                         check=True, capture_output=True, text=True)
    assert f"{len(res.stages)} stages: {len(res.stages)} computed, 0 from the cache" in cli.stdout
    theirs = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert without_times(res.summary) == without_times(theirs)
    for line in res.console:
        assert line in cli.stdout

    # The file the dict was written to, given as a path: every stage from the cache.
    again = hart.experiment(res.config, out=tmp_path / "py", progress=False)
    assert again.computed == 0 and list(again.stages["stage"]) == list(res.stages["stage"])
    assert without_times(again.summary) == without_times(res.summary)


@pytest.mark.parametrize(
    "change, kind, text",
    [
        (lambda c: c["data"].update(train_limt=5), hart.InvalidArgumentError, "train_limt"),
        (lambda c: c.update(archs=["vgg99"]), hart.InvalidArgumentError, "archs"),
        (lambda c: c["sweep"].update(threshold=3.0), hart.InvalidArgumentError, "sweep.threshold"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_key(tmp_path, change, kind, text):
    config = tomllib.loads(TINY)
    change(config)
    with pytest.raises(kind) as info:
        hart.experiment(config, out=tmp_path / "out", progress=False)
    assert text in str(info.value) and "config.toml" in str(info.value) and "\n" not in str(info.value)


def test_experiment_arguments(tmp_path):
    with pytest.raises(hart.NotFoundError, match="no/such.toml"):
        hart.experiment(tmp_path / "no/such.toml", out=tmp_path / "out", progress=False)
    with pytest.raises(hart.InvalidArgumentError, match="TOML file's path or a dict"):
        hart.experiment(["archs"], out=tmp_path / "out", progress=False)
    with pytest.raises(hart.InvalidArgumentError, match='unknown device "tpu"'):
        hart.experiment(tomllib.loads(TINY), out=tmp_path / "out", device="tpu", progress=False)
