"""MLflow helpers. The store and the experiment are created once, before training jobs fan out.

The default tracking URI ``sqlite:///mlflow.db`` (artifacts in ``./mlruns``) is exactly where a
bare ``mlflow ui`` looks when started in the same directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient


class TrackingUnreachable(RuntimeError):
    """The tracking server does not answer."""


def check_reachable(uri: str, timeout: float = 10.0) -> None:
    """For an ``http(s)://`` tracking URI, ask the server's ``/health`` once, briefly: MLflow's
    own client retries a dead server for minutes before it says anything."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUnreachable(
            f"the MLflow tracking server {uri} does not answer ({reason}); start it "
            f"(`mlflow server --host ... --port ...`) or set mlflow.tracking_uri to one that "
            f"runs, then rerun snakemake (finished jobs are kept)"
        ) from None


def init_experiment(uri: str, name: str) -> str:
    """Create the tracking store and experiment ``name`` if missing; return the experiment id."""
    check_reachable(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else client.create_experiment(name)


def start_run(uri: str, experiment: str, run_name: str, run_id: str | None = None, tags=None):
    """Start (or, with ``run_id``, resume) a run; use as a context manager."""
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise RuntimeError(
            f"MLflow experiment {experiment!r} does not exist in {uri}; the workflow's mlflow_init "
            f"rule creates it once before training jobs start"
        )
    return mlflow.start_run(
        run_id=run_id, experiment_id=exp.experiment_id, run_name=run_name, tags=tags
    )


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> flat ``a.b.c`` params (MLflow params are flat strings)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list | tuple) else str(v)
    return out


def config_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]


def git_commit(path: str | Path = ".") -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def log_metrics(metrics: dict[str, float], step: int) -> None:
    """Metrics of the active run at ``step``."""
    mlflow.log_metrics(metrics, step=step)


def log_artifacts(paths) -> None:
    """Files attached to the active run."""
    for path in paths:
        mlflow.log_artifact(str(path))


def log_to_run(
    uri: str, run_id: str, metrics: dict[str, float] | None = None, artifacts=(), folder=None
) -> None:
    """Add metrics and artifact files to an existing run (evaluation and figures of a training run)."""
    check_reachable(uri)
    client = MlflowClient(tracking_uri=uri)
    if metrics:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    for path in artifacts:
        client.log_artifact(run_id, str(path), artifact_path=folder)


@contextlib.contextmanager
def training_run(
    uri: str, experiment: str, run_name: str, out_dir: Path, resumable: bool, params: dict, tags
):
    """The MLflow run of a training job: a new one, or, when the job resumes (``resumable``: its
    progress checkpoint exists), the run it started before. Logs ``params`` on a new run.

    Snakemake deletes a failed job's outputs, so the id is kept in ``out_dir/.mlflow_run_id``,
    beside the progress checkpoint, and removed when the job ends well.
    """
    resume_file = Path(out_dir) / ".mlflow_run_id"
    run_id = resume_file.read_text().strip() if resumable and resume_file.exists() else None
    with start_run(uri, experiment, run_name, run_id, tags) as run:
        resume_file.write_text(run.info.run_id)
        if run_id is None:
            mlflow.log_params(flatten(params))
        yield run
    resume_file.unlink(missing_ok=True)
