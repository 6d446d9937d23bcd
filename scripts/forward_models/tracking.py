"""MLflow helpers. Every job that writes to the store opens it through :func:`open_store`, which
creates a missing store (a lost ``mlflow.db`` is recreated) under a file lock: several processes
creating a fresh SQLite store at once corrupt it. No job holds the experiment as a file output,
so nothing about the tracking store decides what Snakemake reruns.

The default tracking URI ``sqlite:///mlflow.db`` (artifacts in ``./mlruns``) is exactly where a
bare ``mlflow ui`` looks when started in the same directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow.exceptions import MlflowException
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


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other store, or in memory)."""
    if urlparse(uri).scheme != "sqlite":
        return None
    db = uri.removeprefix("sqlite:///")
    return Path(db) if db and db != ":memory:" else None


def store_lock(uri: str) -> Path | None:
    """The lock file that serialises creating a local store (``mlflow.db.lock`` beside an SQLite
    file, ``.lock`` in a file store's folder); None for a server, which serialises itself."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        db = sqlite_file(uri)
        return Path(f"{db}.lock") if db else None
    if parsed.scheme in ("", "file"):
        return Path(parsed.path or uri) / ".lock"
    return None


def _unusable_store(uri: str, why: str) -> TrackingUnreachable:
    return TrackingUnreachable(
        f"the MLflow tracking store {uri} cannot be opened or created{why}; make its path a "
        f"writable file (or delete it: the next job creates a fresh store) or set "
        f"mlflow.tracking_uri to one that works, then rerun snakemake (finished jobs are kept)"
    )


@contextlib.contextmanager
def _locked(path: Path | None):
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_sqlite_file(uri: str) -> None:
    """For a ``sqlite:///`` URI, refuse at once a path SQLite cannot use (a folder, an
    unwritable place): MLflow retries such a store for ~100 s before it says anything."""
    db = sqlite_file(uri)
    if db is None:
        return
    if db.exists() and not db.is_file():
        raise _unusable_store(uri, f": {db} is not a file")
    if not db.exists() and not os.access(db.parent, os.W_OK):
        raise _unusable_store(uri, f": {db} does not exist and its folder is not writable")


def open_store(uri: str) -> MlflowClient:
    """A client of the store at ``uri``, created (tables and all) if missing, under the lock."""
    check_reachable(uri)
    check_sqlite_file(uri)
    with _locked(store_lock(uri)):
        try:
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)  # a fresh SQLite store is made here
        except Exception as exc:  # MLflow's own message names neither the store nor a way out
            first = str(exc).splitlines()[0][:200]
            raise _unusable_store(uri, f" ({type(exc).__name__}: {first})") from exc
    return client


def init_experiment(uri: str, name: str) -> str:
    """Create the tracking store and experiment ``name`` if missing; return the experiment id."""
    client = open_store(uri)
    with _locked(store_lock(uri)):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return client.create_experiment(name)
        except MlflowException:  # another job created it on a server in between
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id


def _has_run(client: MlflowClient, run_id: str) -> bool:
    try:
        client.get_run(run_id)
        return True
    except MlflowException:
        return False


def start_run(uri: str, experiment: str, run_name: str, run_id: str | None = None, tags=None):
    """Start (or, with ``run_id``, resume) a run in ``experiment``, which is created if missing;
    use as a context manager. A run to resume that the store no longer has (the store was
    deleted) is started anew, with a warning."""
    exp_id = init_experiment(uri, experiment)
    if run_id is not None and not _has_run(MlflowClient(tracking_uri=uri), run_id):
        print(
            f"warning: MLflow run {run_id} is not in {uri} (the store was replaced or deleted); "
            f"the resumed training logs to a new run",
            file=sys.stderr,
        )
        run_id = None
    mlflow.set_tracking_uri(uri)
    return mlflow.start_run(run_id=run_id, experiment_id=exp_id, run_name=run_name, tags=tags)


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
) -> bool:
    """Add metrics and artifact files to an existing run (evaluation and figures of a training
    run). Returns False, with a warning that says how to recover, when the store no longer has
    the run (it was deleted after the model trained): the files stay, untracked."""
    client = open_store(uri)
    if not _has_run(client, run_id):
        print(
            f"warning: MLflow run {run_id} is not in {uri} (the store was replaced or deleted "
            f"after the model trained); these results are written to results/ but not tracked. "
            f"To track them again, retrain: snakemake --forcerun <its checkpoint.pt>",
            file=sys.stderr,
        )
        return False
    if metrics:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    for path in artifacts:
        client.log_artifact(run_id, str(path), artifact_path=folder)
    return True


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
