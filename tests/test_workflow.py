"""End-to-end: the real Snakemake workflow on the tiny overlay, in a scratch copy of the repo."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import FRAME_FED, LEARNED, ROOT, scratch_repo, snakemake
from forward_models import models

pytestmark = pytest.mark.slow
PRESETS = sorted(p.stem for p in (ROOT / "config" / "models").glob("*.yaml"))
MODELS = sorted(yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["models"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    repo = scratch_repo(tmp_path_factory.mktemp("repo"))
    snakemake(repo)
    return repo


def test_every_output_exists_and_is_sane(run):
    res = run / "results"
    from forward_models.data.zarr_store import open_rollouts

    train, test = (open_rollouts(res / f"rollouts/pong/{s}.zarr") for s in ("train", "test"))
    assert train.n_episodes == 12 and test.n_episodes == 6
    assert (
        train.attrs["env"]["id"] == "forward_models/TwoPlayerPong-v0" and train.attrs["seed"] == 0
    )
    assert train.attrs["versions"]["zarr"].startswith("3.")
    assert not np.array_equal(train.array("obs")[:10], test.array("obs")[:10])  # disjoint seeds

    run_dir = res / "models/pong/rnn_deconv/seed0"
    for f in ("checkpoint.pt", "config.yaml", "train_log.csv"):
        assert (run_dir / f).stat().st_size > 0, f
    assert not (run_dir / "progress.pt").exists()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["train"]["steps"] == 20
    log = pd.read_csv(run_dir / "train_log.csv")
    assert log["step"].max() == 20 and np.isfinite(log["value"]).all()

    metrics = pd.read_parquet(res / "eval/pong/rnn_deconv/seed0/metrics.parquet")
    # open loop, and on shuffled actions (controllability); references are runs of their own
    assert set(metrics["predictor"]) == {"model", "model_shuffled_actions"}
    by = metrics.groupby("predictor")["metric"].agg(set)
    assert by["model_shuffled_actions"] == {"mse", "psnr", "ssim"}
    # the end recall from the model's own frames, over the test episodes that end
    ends = sum(bool(test.episode(i)["terminated"][-1]) for i in range(test.n_episodes))
    assert ends > 0  # the tiny config's test split has episodes that end
    assert by["model"] == {"mse", "psnr", "ssim", "es", "spread", "mse_best", "end_hit"}
    hits = metrics[metrics["metric"] == "end_hit"]
    assert set(hits["horizon"]) == {1, 8} and hits["value"].isin([0.0, 1.0]).all()
    assert metrics["horizon"].max() == 8
    summary = pd.read_csv(res / "eval/summary.csv")
    # Every family runs through the DAG, and the floor also at every other precondition in use.
    assert set(summary["model"]) == set(MODELS) | {"floor_p2"}
    assert set(summary[summary.model == "floor_p2"]["precondition"]) == {2}
    for model, rows in summary.groupby("model"):
        predictors = {"model", "model_shuffled_actions"}  # controllability
        if model in FRAME_FED:
            predictors.add("model_one_step")
        assert set(rows["predictor"]) == predictors, model  # one_step: teacher forced
        # predictor x horizon x metric; the open-loop predictor also has the 3 sample scores
        # and, but for the floor, the end recall at the leaderboard's horizons (1 and 8)
        end_rows = 0 if model.startswith("floor") else 2
        assert len(rows) == (len(predictors) * 3 + 3) * 8 + end_rows, model
        assert rows["reference"].eq(model not in LEARNED).all(), model  # the family's flag
    assert summary["mean"].notna().all()
    mse = summary[summary.metric == "mse"]
    assert mse["mean"].between(0, 1).all() and (mse["episodes"] == 4).all()

    board = (res / "eval/leaderboard.md").read_text()
    # One row per table: MSE, the energy score of sampled futures, the end recall.
    assert board.count("| rnn_deconv ") == 3 and board.count("| copy_last (reference) ") == 3
    assert "end recall" in board
    assert "energy score" in board and "x ES floor" in board and board.count("Δ shuffled") == 1
    assert "h=8" in board
    figs = ["error_vs_horizon.png", "training_curves.png", "params_vs_error.png"]
    figs += ["error_vs_compute.png"]
    val = log[log["split"] == "val"]  # error against compute, logged as it trains
    assert {"loss", "open_loop_mse", "seconds", "frames"} <= set(val["metric"])
    figs += [f"pong/{m}/seed0/rollout_strip.png" for m in MODELS]
    figs += ["es_vs_horizon.png"]  # sampled futures: every run's energy score
    figs += [f"pong/{m}/seed0/samples.png" for m in MODELS if models.REGISTRY[m].Config.stochastic]
    figs += ["pong/asset_stn/seed0/assets.png"]
    assert (res / "figures/pong/asset_stn/seed0/assets.gif").stat().st_size > 0
    for fig in (f"figures/{f}" for f in figs):
        assert (res / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", fig
    # A learned model's strip adds the floor's prediction of the episode; the floor's own not.
    from PIL import Image

    rows = {m: Image.open(res / f"figures/pong/{m}/seed0/rollout_strip.png").height for m in MODELS}
    assert rows["conv_gru_residual"] > 1.2 * rows["floor"], rows


def test_agents_learn_in_the_models_and_are_scored_in_the_real_env(run):
    import json

    res = run / "results"
    ends = json.loads((res / "outcome/pong/seed0/scores.json").read_text())
    # scored on the test split's true frames (the tiny split's 3 training ends teach it little:
    # tests/test_dream.py checks what it finds on held-out episodes)
    assert ends["ends"] > 0 and 0 <= ends["end_recall"] <= 1, ends
    acting = ["conv_gru_residual", "copy_last"]  # config/test.yaml's acting.models
    refs = ["reference-random", "reference-real", "reference-scripted"]
    for agent in [*acting, *refs]:
        got = json.loads((res / f"agents/pong/{agent}/seed0/scores.json").read_text())
        assert len(got["returns"]) == 2 and got["agent"] == agent, agent
        # the real Pong pays 1 per step: every return is an episode's length, 1 to 60
        assert all(1 <= r <= 60 and r == int(r) for r in got["returns"]), got
    random, real = (
        json.loads((res / f"agents/pong/{r}/seed0/scores.json").read_text())["mean"]
        for r in refs[:2]
    )
    got = json.loads((res / "agents/pong/copy_last/seed0/scores.json").read_text())
    if real == random:  # no gap to normalise by (at 2 episodes of 60 steps both may last)
        assert np.isnan(got["normalised"])
    else:
        assert np.isclose(got["normalised"], (got["mean"] - random) / (real - random))
    scripted = json.loads((res / "agents/pong/reference-scripted/seed0/scores.json").read_text())
    assert scripted["mean"] == 60  # the scripted agent never misses: every episode truncates
    table = pd.read_csv(res / "agents/agents.csv")
    assert set(table["agent"]) == {*acting, *refs}
    real_row = table.loc[table["agent"] == "reference-real", "normalised_mean"].item()
    assert real_row == 1.0 or (np.isnan(real_row) and real == random)
    board = (res / "agents/agents.md").read_text()
    assert "normalised score" in board and "copy_last" in board
    assert (res / "figures/agents.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    gif = Image.open(res / "agents/pong/conv_gru_residual/seed0/episode.gif")
    assert gif.n_frames > 2 and gif.width == 4 * (3 * 32 + 4)  # real | dream | difference


def test_runs_are_in_mlflow_where_bare_mlflow_ui_looks(run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    exp = client.get_experiment_by_name("forward-models")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {f"pong/{m}/seed0" for m in [*MODELS, "floor_p2"]}
    r = runs["pong/rnn_deconv/seed0"]
    assert r.data.params["model.arch"] == "rnn_deconv" and len(r.data.tags["git_commit"]) > 0
    assert len(client.get_metric_history(r.info.run_id, "train/loss")) == 4
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {
        "checkpoint.pt",
        "train_log.csv",
        "config.yaml",
        "eval",
        "figures",
    } <= artifacts
    assert {a.path for a in client.list_artifacts(r.info.run_id, "figures")} == {
        "figures/rollout_strip.png",
        "figures/test_rollout.gif",
    }
    assert (
        0 < r.data.metrics["eval/mse_h1"] < 1 and "eval/ssim_mean" in r.data.metrics
    )  # test error on the run
    assert r.data.metrics["eval/x_floor_h1"] > 1  # and its distance to the floor
    # A P=2 model's distance is to the floor run at P=2, on the same frames.
    m, floor = (
        runs[f"pong/{n}/seed0"].data.metrics for n in ("frame_transformer_dense", "floor_p2")
    )
    assert np.isclose(m["eval/x_floor_h3"], m["eval/mse_h3"] / floor["eval/mse_h3"])
    # Sampled futures: the energy score against the floor's posterior samples, and the spread.
    s = runs["pong/rssm/seed0"]
    assert {"eval/es_h1", "eval/x_es_floor_h1", "eval/spread_h1"} <= set(s.data.metrics)
    assert r.data.metrics["eval/spread_h1"] == 0  # a point predictor
    assert {a.path for a in client.list_artifacts(s.info.run_id, "figures")} >= {
        "figures/samples.png",
        "figures/samples.gif",
    }
    # The agent trained in a model: its real-env return and normalised score on its run.
    g = runs["pong/conv_gru_residual/seed0"].data.metrics
    assert {"agent/return", "agent/normalised", "eval/end_hit_h8"} <= set(g)


def test_second_run_has_nothing_to_do(run):
    out = snakemake(run, "-n").stdout
    assert "Nothing to be done" in out, out[-2000:]


def test_changing_one_model_reruns_only_its_jobs(run, tmp_path):
    overlay = tmp_path / "change.yaml"
    overlay.write_text(yaml.safe_dump({"models": {"rnn_deconv": {"hidden": 12}}}))
    out = snakemake(run, "-n", configfiles=("config/test.yaml", str(overlay))).stdout
    assert planned_jobs(out) == {  # one job each: mean_frame's jobs and the rollouts stay done
        "train": 1,
        "evaluate": 1,
        "aggregate": 1,
        "leaderboard": 1,
        "figure_error_vs_horizon": 1,
        "figure_training": 1,
        "figure_rollout_strip": 1,
        "all": 1,
    }


def planned_jobs(dry_run: str) -> dict[str, int]:
    """Rule name -> job count, from the 'Job stats' table of a dry run."""
    table = dry_run.split("Job stats:")[1].split("\n\n")[0].splitlines()
    rows = [line.split() for line in table[3:] if line.split() and line.split()[0] != "total"]
    return {row[0]: int(row[1]) for row in rows}


def test_lint_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "overlay, message",
    [
        ({"models": {"rnn_deconv": {"hiden": 3}}}, "hiden"),
        ({"envs": {"pong": {"id": "forward_models/TwoPlayerPong-v9"}}}, "unknown Gymnasium env id"),
        ({"models": {"rnn_deconv": {"arch": "rnn_deconf"}}}, "rnn_deconf"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, overlay, message):
    repo = scratch_repo(tmp_path)
    (repo / "bad.yaml").write_text(yaml.safe_dump(overlay))
    proc = snakemake(repo, configfiles=("config/test.yaml", "bad.yaml"), check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (repo / "results").exists()


def test_killed_training_resumes_when_the_workflow_reruns(tmp_path):
    import os
    import signal
    import time

    repo = scratch_repo(tmp_path)
    long_run = {
        # Not capped by the tiny overlay: its own small sizes, trained longer.
        "tiny": False,
        "models": {
            "rnn_deconv": {
                "hidden": 16,
                "embed": 8,
                "encoder_width": 8,
                "decoder_channels": [16, 16, 8, 8],
                "train": {"steps": 600, "batch_size": 4, "seq_len": 12, "checkpoint_every": 20},
            }
        },
        "envs": {"pong": {"splits": {"train": {"episodes": 4}, "test": {"episodes": 2}}}},
        "evaluation": {"episodes": 2},
    }
    (repo / "long.yaml").write_text(yaml.safe_dump(long_run))
    target = "results/models/pong/rnn_deconv/seed0/checkpoint.pt"
    # The target goes first: --configfile takes every following positional as a config file.
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        target,
        "--cores",
        "2",
        "--configfile",
        "config/test.yaml",
        "long.yaml",
    ]
    proc = subprocess.Popen(
        cmd, cwd=repo, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    progress = repo / "results/models/pong/rnn_deconv/seed0/progress.pt"
    deadline = time.time() + 300
    while not progress.exists():
        assert time.time() < deadline and proc.poll() is None, "training never checkpointed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # the job is killed between checkpoints
    proc.wait(timeout=120)
    assert not (repo / target).exists()
    subprocess.run(cmd, cwd=repo, check=True, capture_output=True, timeout=600)
    log = (repo / "results/logs/train/pong/rnn_deconv/seed0.log").read_text()
    assert "resuming from" in log and (repo / target).exists() and not progress.exists()
    steps = pd.read_csv(repo / "results/models/pong/rnn_deconv/seed0/train_log.csv")["step"]
    assert steps.min() == 25 and steps.max() == 600  # the log spans the kill


def test_default_config_holds_every_family_and_every_preset_is_shipped_in_a_config():
    raw = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    presets = {m["preset"] for m in raw["models"].values()}
    archs = {
        yaml.safe_load((ROOT / f"config/models/{p}.yaml").read_text())["arch"] for p in presets
    }
    assert archs == set(models.REGISTRY)
    assert len(raw["seeds"]) == 3
    shipped = {
        m.get("preset")
        for path in (ROOT / "config").glob("*.yaml")
        for m in (yaml.safe_load(path.read_text()).get("models") or {}).values()
    }
    assert set(PRESETS) <= shipped


def test_report_renders_in_headless_chromium_with_every_figure(run):
    from forward_models.report_check import check_report, find_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium)")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--configfile",
            "config/test.yaml",
            "--report",
            "results/report.html",
        ],
        cwd=run,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = check_report(run / "results/report.html", screenshot=run / "results/report.png")
    assert result["images"] >= 4  # error curve, training curves, strips, GIFs
    for category in ("Evaluation", "Rollouts", "Training"):
        assert category in result["text"]


BEYOND_TINY = """
tiny: true
seeds: [0]
progress: false
envs:
  boxing: {workers: 1, max_episode_steps: 30, splits: {train: {episodes: 4}, test: {episodes: 3}}}
  pendulum: {workers: 1, max_episode_steps: 30, splits: {train: {episodes: 4}, test: {episodes: 3}}}
evaluation: {horizon: 8, episodes: 3}
"""


def test_beyond_pong_runs_an_atari_game_and_a_continuous_action_env(tmp_path):
    """config/beyond.yaml, tiny: mid-tone frames (ALE Boxing) and continuous actions
    (Pendulum) through the whole DAG; neither has a floor, so no "x floor" is invented."""
    repo = scratch_repo(tmp_path)
    (repo / "tiny.yaml").write_text(BEYOND_TINY)
    snakemake(repo, "--replace-workflow-config", configfiles=("config/beyond.yaml", "tiny.yaml"))
    summary = pd.read_csv(repo / "results/eval/summary.csv")
    models = set(yaml.safe_load((repo / "config/beyond.yaml").read_text())["models"])
    assert {"conv_gru_residual", "conv_gru_logit", "copy_last"} <= models
    for env in ("boxing", "pendulum"):
        assert set(summary[summary.env == env]["model"]) == models, env
    assert summary[summary.metric == "mse"]["mean"].between(0, 1).all()
    board = (repo / "results/eval/leaderboard.md").read_text()
    assert "boxing" in board and "pendulum" in board
    for env in ("boxing", "pendulum"):
        strip = repo / f"results/figures/{env}/conv_gru_residual/seed0/rollout_strip.png"
        assert strip.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
