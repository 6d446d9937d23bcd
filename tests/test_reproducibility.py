"""Same seeds, same bytes; many concurrent MLflow writers, nothing lost."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from forward_models.data.collect import collect

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("workers", [2, 3])
def test_same_seed_gives_byte_identical_stores_for_any_number_of_workers(
    tmp_path, pong_spec, workers
):
    # Enough short, dropped and long episodes that workers finish out of order and every
    # chunk-sharing case (two, three episodes in one chunk) occurs.
    kw = {"episodes": 12, "seed": 3, "min_length": 20, "progress": False}
    a = collect(pong_spec, tmp_path / "a.zarr", workers=1, **kw)
    b = collect(pong_spec, tmp_path / "b.zarr", workers=workers, **kw)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "zarr.json")
    assert files and files == sorted(
        p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "zarr.json"
    )
    for f in files:  # every chunk and shard, byte for byte
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    import zarr

    attrs_a, attrs_b = (dict(zarr.open_group(str(p), mode="r").attrs) for p in (a, b))
    attrs_a.pop("created"), attrs_b.pop("created")
    assert attrs_a == attrs_b
    assert attrs_a["env"] == {  # the env as plain JSON, enough to rebuild it
        "id": "forward_models/TwoPlayerPong-v0",
        "size": 32,
        "kwargs": {},
        "max_episode_steps": 80,
        "agent": {"kind": "pong", "kwargs": {"stochasticity": [0.5, 1.0]}},
    }


WRITER = """
import sys
sys.path.insert(0, {scripts!r})
from forward_models import tracking
import mlflow
with tracking.start_run({uri!r}, "stress", "writer{i}"):
    mlflow.log_params({{"writer": {i}}})
    for step in range({points}):
        mlflow.log_metrics({{"train/loss": 1.0 / (step + 1), "train/step": step}}, step=step)
"""


@pytest.mark.slow
def test_eight_concurrent_training_logs_lose_nothing(tmp_path):
    uri, writers, points = f"sqlite:///{tmp_path / 'mlflow.db'}", 8, 150
    # No store yet: the writers create it and the experiment at once, as the train jobs do.
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER.format(scripts=str(ROOT / "scripts"), uri=uri, i=i, points=points),
            ]
        )
        for i in range(writers)
    ]
    assert all(p.wait(timeout=600) == 0 for p in procs)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("stress").experiment_id])
    logged = sum(
        len(client.get_metric_history(r.info.run_id, k))
        for r in runs
        for k in ("train/loss", "train/step")
    )
    print(
        f"runs logged {len(runs)} / expected {writers}; metric points logged {logged} / expected {writers * points * 2}"
    )
    assert len(runs) == writers and {r.data.params["writer"] for r in runs} == {
        str(i) for i in range(writers)
    }
    assert logged == writers * points * 2
    assert np.allclose(
        sorted(m.value for m in client.get_metric_history(runs[0].info.run_id, "train/step")),
        range(points),
    )


def _train_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_rule", ROOT / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch", ["rnn_deconv", "conv_gru_residual"])
def test_same_config_and_seed_give_byte_identical_checkpoints(tmp_path, pong_spec, arch):
    """The train rule's own code, run twice on the CPU: the same checkpoint, byte for byte."""
    store = collect(pong_spec, tmp_path / "train.zarr", 6, seed=0, progress=False)
    cfg = {"arch": arch, "precondition": 2, "hidden": 8, "embed": 4}
    cfg["train"] = {"steps": 6, "batch_size": 4, "seq_len": 8, "val_every": 3, "log_every": 3}
    mlflow = {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "repro"}
    train = _train_script()
    blobs = []
    for run in ("a", "b"):
        d = tmp_path / run
        d.mkdir()
        names = ["checkpoint.pt", "config.yaml", "train_log.csv", "mlflow_run_id"]
        out = dict(zip(["checkpoint", "config", "train_log", "run_id"], names, strict=True))
        job = SimpleNamespace(  # what Snakemake hands the rule's script
            input=SimpleNamespace(rollouts=str(store)),
            output={k: str(d / f) for k, f in out.items()},
            wildcards=SimpleNamespace(seed="0"),
            threads=1,
            params=SimpleNamespace(
                model=cfg,
                mlflow=mlflow,
                run_name=f"run-{run}",
                device="cpu",
                progress=False,
                horizon=4,
                verify=False,
            ),
        )
        train.main(job)
        blobs.append((d / "checkpoint.pt").read_bytes())
    assert blobs[0] == blobs[1]
