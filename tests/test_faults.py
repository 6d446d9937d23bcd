"""Fault injection: bad input and broken runs, each checked for a clear error (naming what is
wrong and what would be valid) and for nothing silent or lost. At the end one line sums up:
``faults tried N, clear errors N, silent 0, data lost 0``."""

import copy

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, env_config, scratch_repo, snakemake, tally
from forward_models import config, models
from forward_models.data.collect import collect
from forward_models.data.windows import WindowSampler
from forward_models.data.zarr_store import open_rollouts
from forward_models.health import TrainingDiverged, non_finite
from forward_models.model_config import TrainConfig
from forward_models.progress import PROGRESS
from forward_models.training import train
from pydantic import ValidationError


def default_with(over: dict) -> dict:
    raw = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config.deep_merge(raw, copy.deepcopy(over))
    return raw


@pytest.mark.parametrize(
    "over, names",
    [
        ({"models": {"rnn_deconv": {"hiden": 3}}}, ["hiden"]),
        ({"models": {"rnn_deconv": {"arch": "rnn_deconf"}}}, ["rnn_deconf"]),
        ({"envs": {"pong": {"id": "forward_models/TwoPlayerPong-v9"}}}, ["TwoPlayerPong-v0"]),
        ({"models": {"rnn_deconv": {"precondition": 40}}}, ["seq_len=35", "precondition=40"]),
        ({"evaluation": {"horizon": 300}}, ["horizon=300", "max_episode_steps=200"]),
        ({"envs": {"pong": {"size": 50}}}, ["conv_gru_residual", "size=50", "divisible by 4"]),
        (
            {"envs": {"pong": {"id": "CartPole-v1"}}},
            ["'pong' is written for forward_models/TwoPlayerPong-v0", "'random' or 'sticky'"],
        ),
        (
            {"models": {"copy_last": {"preset": "../../../x"}}},
            ["'../../../x'", "not a preset name"],
        ),
        (
            {"models": {"copy_last": {"preset": "/etc/hosts"}}},
            ["'/etc/hosts'", "not a preset name"],
        ),
        ({"envs": {"pong": {"min_length": 500}}}, ["min_length=500", "max_episode_steps=200"]),
        ({"models": {"rnn_deconv": {"train": {"steps": 0}}}}, ["train.steps=0", "untrained"]),
        (
            {"evaluation": {"leaderboard": [0, -3, 100]}},
            ["leaderboard", "greater than or equal to 1"],
        ),
        (
            {"envs": {"pong": {"agent": {"kwargs": {"stochasticity": 5}}}}},
            ["stochasticity", "[0, 1]", "got 5"],
        ),
        (
            {"envs": {"pong": {"agent": {"kind": "sticky"}}}},  # the pong agent's kwargs survive
            ["'sticky' has no option stochasticity", "stickiness"],
        ),
        ({"seeds": [-1]}, ["seeds", "greater than or equal to 0"]),
        ({"envs": {"pong": {"size": 4096}}}, ["size=4096", "GiB", "lower size or workers"]),
        ({"device": "tpu"}, ["device", "tpu", "cuda"]),
    ],  # fmt: skip
    ids=[
        "unknown key",
        "unknown arch",
        "unknown env",
        "seq_len",
        "horizon",
        "size",
        "agent",
        "preset path",
        "preset absolute",
        "min_length",
        "untrained",
        "leaderboard horizons",
        "agent option range",
        "stale agent options",
        "negative seed",
        "huge frames",
        "device",
    ],  # fmt: skip
)
def test_config_faults_fail_at_parse_time_naming_key_and_value(over, names):
    """Everything a config can tell is checked before any job (the Snakefile runs this)."""
    with pytest.raises((ValueError, ValidationError)) as err:
        config.load(default_with(over))
    tally(all(n in str(err.value) for n in names))


def test_a_sticky_agent_out_of_range_fails_at_parse_time():
    with pytest.raises(ValidationError) as err:
        config.AgentConfig(kind="sticky", kwargs={"stickiness": 5})
    tally("stickiness must be a probability in [0, 1], got 5" in str(err.value))


def test_a_number_written_like_people_write_it_is_a_number():
    cfg = config.load(default_with({"models": {"rnn_deconv": {"train": {"lr": "1e-4"}}}}))
    tally(cfg.models["rnn_deconv"].train.lr == 1e-4)  # PyYAML reads 1e-4 as a string


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    spec = env_config("forward_models/TwoPlayerPong-v0", 32, 40, "pong", {"stochasticity": 0.5})
    path = tmp_path_factory.mktemp("s") / "s.zarr"
    return open_rollouts(collect(spec, path, 4, seed=0, progress=False))


def tiny_model(store, **train_over):
    cfg = {"arch": "rnn_deconv", "precondition": 2, "hidden": 8, "embed": 4, "encoder_width": 8}
    cfg["decoder_channels"] = [8, 8, 8, 8]
    cfg["train"] = {"steps": 10, "batch_size": 4, "seq_len": 6, "checkpoint_every": 5, **train_over}
    torch.manual_seed(0)
    model = models.build(cfg, store.frame_shape, 9)
    return model, TrainConfig(**cfg["train"])


def run(model, tcfg, store, out):
    train(model, WindowSampler(store, 6, seed=0), None, tcfg, out, device="cpu", progress=False)


def test_a_changed_config_does_not_resume_the_old_progress_it_moves_it_aside(
    store, tmp_path, capsys
):
    model, tcfg = tiny_model(store)
    run(model, tcfg, store, tmp_path)  # leaves progress.pt at step 5 (as a killed job would)
    model, tcfg = tiny_model(store)
    run(model, tcfg, store, tmp_path)
    same = "resuming from" in capsys.readouterr().out  # the same config resumes
    model, tcfg = tiny_model(store, lr=1e-4)
    run(model, tcfg, store, tmp_path)
    out = capsys.readouterr().out
    aside = list(tmp_path.glob("progress.stale-*.pt"))
    kept = len(aside) == 1 and torch.load(aside[0], weights_only=True)["step"] == 5
    tally(same and "changed: model.train.lr" in out and "resuming" not in out, lost=not kept)


def test_a_diverging_run_stops_clearly_and_keeps_only_finite_progress(store, tmp_path):
    """lr 1e6: the BCE clamp keeps the loss finite, so only the weights, gradients and
    BatchNorm statistics show it; the run must stop, not "succeed"."""
    model, tcfg = tiny_model(store, lr=1e6, steps=200)
    with pytest.raises(TrainingDiverged) as err:
        run(model, tcfg, store, tmp_path)
    msg = str(err.value)
    progress = tmp_path / PROGRESS
    finite = True
    if progress.exists():  # "last good" must be true
        state = torch.load(progress, weights_only=True)["state_dict"]
        finite = all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())
    tally("diverged" in msg and "lr 1e+06 in force" in msg and "at step" in msg, lost=not finite)


def test_non_finite_batchnorm_statistics_are_found():
    model = models.build({"arch": "rnn_deconv", "hidden": 8}, (3, 32, 32), 9)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var.fill_(np.inf)
    tally(non_finite(model) is not None and "running_var" in non_finite(model))


@pytest.mark.slow
def test_a_failing_rule_leaves_its_traceback_in_the_log(tmp_path):
    repo = scratch_repo(tmp_path)
    (repo / "bad.yaml").write_text(yaml.safe_dump({"mlflow": {"tracking_uri": "nowhere://x"}}))
    target = "results/models/pong/copy_last/seed0/checkpoint.pt"
    proc = snakemake(repo, target, configfiles=("config/test.yaml", "bad.yaml"), check=False)
    log = (repo / "results/logs/train/pong/copy_last/seed0.log").read_text()
    tally(proc.returncode != 0 and "Traceback (most recent call last)" in log and "nowhere" in log)


def two_model_repo(tmp_path):
    """A scratch repo whose workflow config is the tiny one with a learned model and a reference."""
    repo = scratch_repo(tmp_path)
    raw = default_with(yaml.safe_load((ROOT / "config/test.yaml").read_text()))
    raw["models"] = {k: raw["models"][k] for k in ("rnn_dense", "copy_last")}
    raw["acting"] = {"models": []}  # the tiny overlay's agents are in models not kept here
    (repo / "config/config.yaml").write_text(yaml.safe_dump(raw))
    return repo


def checkpoints(repo) -> dict[str, int]:
    return {
        m: (repo / f"results/models/pong/{m}/seed0/checkpoint.pt").stat().st_mtime_ns
        for m in ("rnn_dense", "copy_last")
    }


def change_lr(repo, lr: float) -> tuple[str, ...]:
    (repo / "lr.yaml").write_text(yaml.safe_dump({"models": {"rnn_dense": {"train": {"lr": lr}}}}))
    return ("config/config.yaml", "lr.yaml")


@pytest.mark.slow
def test_a_lost_tracking_store_is_recreated_and_a_failed_one_retrains_only_what_changed(tmp_path):
    """mlflow.db deleted after a run, one model changed: the rerun recreates the store and
    retrains that model only. Then the store breaks (a folder where the file was: SQLite cannot
    open it) while the model changes again: the run fails naming the store; once the store is
    back, the next run retrains the changed model and not the other."""
    from mlflow.tracking import MlflowClient

    repo = two_model_repo(tmp_path)
    snakemake(repo, configfiles=("config/config.yaml",))
    before = checkpoints(repo)
    (repo / "mlflow.db").unlink()
    snakemake(repo, configfiles=change_lr(repo, 2e-3))
    after = checkpoints(repo)
    run_id = (repo / "results/models/pong/rnn_dense/seed0/mlflow_run_id").read_text()
    run = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}").get_run(run_id)
    tally(
        after["rnn_dense"] != before["rnn_dense"]
        and after["copy_last"] == before["copy_last"]
        and "eval/mse_h1" in run.data.metrics,
        lost=not (repo / "results/models/pong/copy_last/seed0/checkpoint.pt").exists(),
    )

    (repo / "mlflow.db").unlink()
    (repo / "mlflow.db").mkdir()
    broken = snakemake(repo, configfiles=change_lr(repo, 1e-3), check=False)
    log = (repo / "results/logs/train/pong/rnn_dense/seed0.log").read_text()
    (repo / "mlflow.db").rmdir()
    snakemake(repo, configfiles=change_lr(repo, 1e-3))
    final = checkpoints(repo)
    tally(
        broken.returncode != 0
        and "sqlite:///mlflow.db cannot be opened or created" in log
        and final["rnn_dense"] != after["rnn_dense"]
        and final["copy_last"] == before["copy_last"]
    )


def cli(*args):
    import subprocess
    import sys

    code = "from forward_models.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
        cwd=ROOT, env={"PYTHONPATH": str(ROOT / "scripts"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_check_config_of_a_file_outside_config_reads_the_workflows_presets(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text((ROOT / "config/config.yaml").read_text())  # presets by name, as shipped
    proc = cli("check-config", "--replace", str(mine))
    tally(proc.returncode == 0 and "valid" in proc.stdout)


def test_play_on_a_file_that_is_not_a_checkpoint_is_one_clear_line(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    proc = cli("play", str(bad), "--steps", "1")
    one_line = proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    debug = cli("--debug", "play", str(bad), "--steps", "1")
    tally(
        proc.returncode == 2
        and one_line
        and "is not a forward-models checkpoint" in proc.stderr
        and "Traceback" in debug.stderr  # --debug shows where
    )


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    import os
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"config": Evil()}, f)
    with pytest.raises(ValueError, match="not a forward-models checkpoint"):
        models.load(path)
    tally(not marker.exists())


def test_a_tracking_server_that_does_not_answer_is_named_within_seconds():
    import socket
    import time

    from forward_models import tracking

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    with pytest.raises(tracking.TrackingUnreachable) as err:
        tracking.init_experiment(uri, "forward-models")
    tally(time.monotonic() - t0 < 30 and f"{uri} does not answer" in str(err.value))


def test_a_checkpoint_cut_short_is_called_damaged_naming_file_and_retrain_command(tmp_path):
    model = models.build({"arch": "copy_last", "precondition": 2}, (3, 16, 16), 9)
    path = tmp_path / "checkpoint.pt"
    models.save(model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as err:
        models.load(path)
    msg = str(err.value)
    tally("damaged or incomplete" in msg and str(path) in msg and f"--forcerun {path}" in msg)


@pytest.mark.parametrize(
    "damage",
    ["delete a frame shard", "delete the action chunk", "truncate a frame shard"],
)
def test_a_store_missing_or_truncated_files_is_refused_naming_array_and_file(
    store, tmp_path, damage
):
    """Zarr reads a missing file as fill values: black frames, action 0, and a copy-last MSE of
    1e-10. Opening the store (training, evaluation, `forward-models inspect`) refuses it."""
    import shutil

    from forward_models.data.zarr_store import StoreError

    copy = tmp_path / "s.zarr"
    shutil.copytree(store.path, copy)
    name, file = {
        "delete a frame shard": ("data/obs", "data/obs/c.0.0.0.0"),
        "delete the action chunk": ("data/action", "data/action/c/0"),
        "truncate a frame shard": ("data/obs", "data/obs/c.0.0.0.0"),
    }[damage]
    if damage.startswith("truncate"):
        (copy / file).write_bytes((copy / file).read_bytes()[:10])
    else:
        (copy / file).unlink()
    with pytest.raises(StoreError) as err:
        open_rollouts(copy)
    proc = cli("inspect", str(copy))
    tally(
        name in str(err.value)
        and file in str(err.value)
        and proc.returncode == 2
        and "damaged" in proc.stderr
    )


@pytest.mark.parametrize("damage", ["flip a bit in a shard's index", "cut a shard's first bytes"])
def test_verify_decodes_everything_and_names_a_damaged_file(store, tmp_path, damage):
    """Damage that keeps every file present and large enough passes the cheap check on open;
    `forward-models inspect --verify` decodes it all and names the file."""
    import shutil

    copy = tmp_path / "s.zarr"
    shutil.copytree(store.path, copy)
    shard = copy / "data/obs/c.0.0.0.0"
    blob = bytearray(shard.read_bytes())
    if damage.startswith("flip"):
        blob[-10] ^= 0x01  # inside the index, which its crc32c covers
    else:
        blob = blob[64:]
    shard.write_bytes(bytes(blob))
    plain, checked = cli("inspect", str(copy)), cli("inspect", "--verify", str(copy))
    tally(
        plain.returncode == 0  # the cheap check cannot see it...
        and checked.returncode == 2  # ...decoding does, and names the array and the file
        and "data/obs file data/obs/c.0.0.0.0 does not decode" in checked.stderr,
        silent=plain.returncode == 0 and checked.returncode == 0,
    )


def test_verify_passes_an_intact_store(store):
    proc = cli("inspect", "--verify", str(store.path))
    tally(proc.returncode == 0 and "files decode, shard checksums match" in proc.stdout)


BROKEN_YAML = "seeds: [0, 1\nmodels: {}\n"  # an unclosed list: the error is on line 2


@pytest.mark.slow
def test_a_yaml_syntax_error_in_the_workflow_config_names_file_and_line(tmp_path):

    repo = scratch_repo(tmp_path)
    (repo / "config/config.yaml").write_text(BROKEN_YAML)
    proc = snakemake(repo, "-n", check=False)
    out = proc.stdout + proc.stderr
    tally(proc.returncode != 0 and "config/config.yaml: YAML syntax error at line 2" in out)


def test_a_yaml_syntax_error_in_an_overlay_or_preset_names_file_and_line(tmp_path):
    overlay = tmp_path / "mine.yaml"
    overlay.write_text(BROKEN_YAML)
    proc = cli("check-config", str(overlay))
    tally(
        proc.returncode == 2
        and proc.stderr.count("\n") == 1
        and f"{overlay}: YAML syntax error at line 2, column 7" in proc.stderr
    )
    presets = tmp_path / "models"
    presets.mkdir()
    (presets / "mine.yaml").write_text("arch: rnn_dense\n  hidden: 3\n")
    with pytest.raises(ValueError, match=r"mine.yaml: YAML syntax error at line 2") as err:
        config.load({"models": {"m": {"preset": "mine"}}}, presets)
    tally("mine.yaml" in str(err.value))


@pytest.mark.slow
def test_with_verify_stores_a_reading_rule_refuses_a_damaged_store_naming_the_file(tmp_path):

    repo = scratch_repo(tmp_path)
    snakemake(repo, "results/rollouts/pong/train.zarr")
    shard = repo / "results/rollouts/pong/train.zarr/data/obs/c.0.0.0.0"
    blob = bytearray(shard.read_bytes())
    blob[-10] ^= 0x01  # inside the shard index: every file stays, the checksum breaks
    shard.write_bytes(bytes(blob))
    target = "results/models/pong/copy_last/seed0/checkpoint.pt"
    proc = snakemake(repo, target, "--config", "verify_stores=true", check=False)
    log = "".join(p.read_text() for p in (repo / "results/logs/train").rglob("*.log"))
    tally(
        proc.returncode != 0 and "data/obs file data/obs/c.0.0.0.0 does not decode" in log,
        silent=proc.returncode == 0,
    )
