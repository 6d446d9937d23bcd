"""The workflow through `--profile slurm` on a real single-node SLURM cluster.

The cluster is Debian's slurm-wlm + munge started by ``slurm/local-cluster/start.sh`` (needs
root; it installs the packages with apt when missing). Without them these tests skip, unless
``FM_REQUIRE_SLURM=1`` (set by CI), where a missing cluster is a failure.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, scratch_repo
from forward_models.config import deep_merge

pytestmark = pytest.mark.slow
# The plugin waits this long before its first status check (default 40 s); tiny jobs are faster.
FAST = ["--slurm-init-seconds-before-status-checks", "5"]


@pytest.fixture(scope="module")
def cluster():
    required = os.environ.get("FM_REQUIRE_SLURM") == "1"
    if os.geteuid() != 0 or not (shutil.which("slurmctld") or shutil.which("apt-get")):
        if required:
            pytest.fail("FM_REQUIRE_SLURM=1 but the local cluster cannot be started here")
        pytest.skip("the local SLURM cluster needs root and slurm-wlm (or apt-get)")
    was_running = cluster_running()
    proc = subprocess.run(
        ["bash", str(ROOT / "slurm/local-cluster/start.sh")], capture_output=True, text=True
    )
    if proc.returncode != 0:
        message = f"local SLURM cluster did not start:\n{proc.stdout}\n{proc.stderr}"
        pytest.fail(message) if required else pytest.skip(message)
    yield
    if not was_running:  # a cluster these tests started is stopped; one found running stays
        subprocess.run(["bash", str(ROOT / "slurm/local-cluster/stop.sh")], capture_output=True)


def cluster_running() -> bool:
    """Whether the local cluster's controller is alive (by the pid file start.sh writes)."""
    pidfile = Path(os.environ.get("FM_SLURM_STATE", "/var/lib/fm-slurm")) / "slurmctld.pid"
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def snakemake_slurm(cwd, *args):
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", *FAST, *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1200)


def slurm_jobs(log: str) -> dict[str, str]:
    """SLURM job id -> final state, for every job the snakemake log says it submitted."""
    ids = re.findall(r"submitted with SLURM jobid (\d+)", log)
    out = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i %T", "-j", ",".join(ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines())


def test_tiny_workflow_runs_through_slurm(cluster, tmp_path):
    repo = scratch_repo(tmp_path)
    shutil.copytree(ROOT / "slurm", repo / "slurm")
    # The tiny overlay with two of its models (a learned one and a baseline): fewer jobs.
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    deep_merge(config, yaml.safe_load((ROOT / "config/test.yaml").read_text()))
    config["models"] = {k: config["models"][k] for k in ("rnn_deconv", "mean_frame")}
    config["acting"] = {"models": []}  # no agents: the overlay's acting models are not here
    # In place of config.yaml: jobs submitted to SLURM re-read the config files but are not
    # passed --replace-workflow-config, so an overlay could not drop the default's models.
    (repo / "config/config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake_slurm(repo)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    jobs = slurm_jobs(log)
    # Everything but the `all` target ran as a SLURM job: rollouts x2, train x2, the end
    # model, evaluate x2, aggregate, leaderboard, 2 summary figures, rollout strips x2.
    assert len(jobs) == 13, log[-4000:]
    assert set(jobs.values()) == {"COMPLETED"}, jobs
    res = repo / "results"
    assert (res / "eval/summary.csv").stat().st_size > 0
    assert (res / "figures/error_vs_horizon.png").read_bytes()[:4] == b"\x89PNG"
    assert (res / "models/pong/rnn_deconv/seed0/checkpoint.pt").stat().st_size > 0


def test_failing_slurm_job_fails_the_run_and_does_not_hang(cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(
        'rule fails:\n    output: "never.txt"\n    shell: "echo failing on purpose >&2; exit 3"\n'
    )
    shutil.copytree(ROOT / "slurm", tmp_path / "slurm")
    proc = snakemake_slurm(tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-4000:]
    assert "Error in rule fails" in log, log[-4000:]
    assert set(slurm_jobs(log).values()) == {"FAILED"}
    assert not (tmp_path / "never.txt").exists()
