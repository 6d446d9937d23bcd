"""The error-against-compute benchmark (bench/long.py) end to end on tiny envs: real rollouts,
the workflow's training loop and evaluation, its JSON lines, table and curves."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

ENVS = {  # one env with a floor (the built-in Pong) and one without (Pendulum, continuous)
    "pong": {
        "id": "forward_models/TwoPlayerPong-v0",
        "max_episode_steps": 40,
        "agent": {"kind": "pong", "kwargs": {"stochasticity": [0.5, 1.0]}},
        "splits": {"train": {"episodes": 3, "seed": 0}, "test": {"episodes": 3, "seed": 1}},
    },
    "pendulum": {
        "id": "Pendulum-v1",
        "max_episode_steps": 40,
        "agent": {"kind": "sticky", "kwargs": {"stickiness": 0.8}},
        "splits": {"train": {"episodes": 3, "seed": 0}, "test": {"episodes": 3, "seed": 1}},
    },
}


def long(*args, cwd: Path) -> str:
    cmd = [sys.executable, str(ROOT / "bench" / "long.py"), *map(str, args)]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def envs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "envs.yaml"
    path.write_text(yaml.safe_dump({"envs": {k: {"size": 32, **v} for k, v in ENVS.items()}}))
    return path


def run(envs: Path, env: str, preset: str, *extra) -> list[dict]:
    out = envs.parent / f"{env}-{preset}.jsonl"
    config = ROOT / "config" / "models" / f"{preset}.yaml"
    long(config, "--envs", envs, "--env", env, "--minutes", 0.05, "--every", 1,
         "--samples", 2, "--data", envs.parent / "data", "--out", out, *extra, cwd=envs.parent)  # fmt: skip
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.slow
def test_on_an_env_without_a_floor_the_reference_is_copy_last(envs):
    copy = run(envs, "pendulum", "copy_last")[-1]
    # copy-last against itself: 0 dB at every horizon, and it ignores the actions exactly
    assert copy["env"] == "pendulum" and "x_floor" not in copy
    assert copy["db_below_copy_last"] == [0.0] * 32 and set(copy["shuffled_gain"]) == {0.0}
    assert copy["mse"] == copy["copy_last"] and min(copy["mse"]) > 0
    # its energy score is its RMSE per episode, whose mean over episodes is at most the root
    # of the mean MSE (Jensen)
    assert 0 < sum(e**2 for e in copy["es"]) / 32 <= copy["copy_last_mean"] * (1 + 1e-4)
    # the mean training frame is a reference of its own: it sees the training rollouts first
    # (unprepared, its frame is all zeros: ~20 dB worse than copy-last on Pendulum's white)
    mean = run(envs, "pendulum", "mean_frame")[-1]
    assert min(mean["db_below_copy_last"]) > -10
    learned = run(envs, "pendulum", "conv_gru_residual")
    assert len(learned) >= 2 and learned[-1]["step"] > 0  # evaluated at the start and after
    assert learned[0]["db_below_copy_last"] != learned[-1]["db_below_copy_last"]  # it trained
    paths = [envs.parent / f"pendulum-{m}.jsonl" for m in ("copy_last", "conv_gru_residual")]
    table = long("--table", *paths, "--figure", envs.parent / "curves.png", cwd=envs.parent)
    rows = [line for line in table.splitlines() if line.startswith("| conv_gru_residual")]
    assert len(rows) == 1 and "| pendulum |" in rows[0]
    assert (envs.parent / "curves.png").stat().st_size > 10_000


@pytest.mark.slow
def test_on_pong_a_model_is_scored_against_the_floor(envs):
    copy = run(envs, "pong", "copy_last")[-1]
    assert copy["env"] == "pong" and "db_below_copy_last" not in copy
    # copy-last is no better than the floor anywhere, and worse than its posterior's samples
    assert min(copy["x_floor"]) >= 1 and copy["mean_x_es"] > 1
    assert copy["spread_ratio"] == [0.0] * 32  # a point predictor does not spread
    assert set(copy["shuffled_gain"]) == {0.0}
