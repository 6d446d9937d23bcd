"""What the test modules share (no test module imports another): the repo, env configs,
the families by what they declare, small models and windows, the scratch workflow runner and
the fault tally."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the package, also without `pip install -e .`

import forward_models  # noqa: E402,F401  (registers the built-in envs)
import torch  # noqa: E402
from forward_models import families, models  # noqa: E402
from forward_models.config import RolloutSource  # noqa: E402
from forward_models.models import REGISTRY  # noqa: E402
from forward_models.models.frame_fed import FrameFed  # noqa: E402

# Under pytest-xdist (`-n 2`, the full suite) two workers share the 2 cores: one thread each,
# for torch here and for the workflows the tests start (torch's 2 OpenMP threads per worker made
# small convs ~10x slower, the threads spinning against each other).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def env_config(
    env_id: str,
    size: int = 32,
    max_episode_steps: int | None = None,
    agent: str = "random",
    agent_kwargs: dict | None = None,
    kwargs: dict | None = None,
) -> RolloutSource:
    """An env and its agent for collect() (``max_episode_steps`` None: the env's own limit)."""
    return RolloutSource(
        env={
            "id": env_id,
            "size": size,
            "kwargs": kwargs or {},
            "max_episode_steps": max_episode_steps,
        },
        agent={"kind": agent, "kwargs": agent_kwargs or {}},
    )


@pytest.fixture
def pong_spec():
    return env_config(
        "forward_models/TwoPlayerPong-v0", 32, 80, "pong", {"stochasticity": [0.5, 1.0]}
    )


# --- families and small models ---------------------------------------------------------
FRAME = (3, 16, 16)
LEARNED = sorted(set(REGISTRY) - families.references())
# Families that predict from (context, actions) alone; the floor replays the rollouts' env.
STEPPABLE = sorted(arch for arch, cls in REGISTRY.items() if not cls.replays_env)


def tiny_checkpoints(store, archs, tmp_path_factory, steps: int) -> dict:
    """``arch -> checkpoint path``: each family at its tiny sizes (P=2), trained ``steps`` steps
    on ``store`` and saved with its env, as the workflow saves them (for dreams and play)."""
    from forward_models.data.windows import WindowSampler
    from forward_models.model_config import TrainConfig
    from forward_models.training import train

    out = {}
    for arch in archs:
        d = tmp_path_factory.mktemp(arch)
        model = models.build({"arch": arch, "precondition": 2, **tiny(arch)}, store.frame_shape, 9)
        model.prepare(store)
        cfg = TrainConfig(steps=steps, batch_size=2, seq_len=6, log_every=1)
        train(model, WindowSampler(store, 6, seed=0), None, cfg, d, device="cpu", progress=False)
        models.save(model, d / "checkpoint.pt", env=store.attrs["env"])
        out[arch] = d / "checkpoint.pt"
    return out


def tiny(arch: str) -> dict:
    """The family's own small sizes (its config's ``TINY``), without dropout: these tests check
    what a model can fit, and dropout only adds noise to that."""
    cls = REGISTRY[arch].Config
    out = {k: v for k, v in cls.TINY.items() if k != "train"}
    return out | ({"dropout": 0.0} if "dropout" in cls.model_fields else {})


# Families that draw pixels from their state or the action (not only move what they read).
DRAWS = sorted(arch for arch, cls in REGISTRY.items() if cls.Config.draws_pixels)
FRAME_FED = [a for a, cls in REGISTRY.items() if issubclass(cls, FrameFed)]


def rollout(m, ctx, actions, seed: int = 0):
    """``m.rollout``, given a generator seeded ``seed`` where the family samples futures (the
    same seed draws the same future)."""
    return m.rollout(ctx, actions, **m.draw(torch.Generator().manual_seed(seed)))


def small(arch, **over):
    cfg = {"arch": arch, "precondition": 2, **tiny(arch)}
    cfg.update(over)
    return models.build(cfg, FRAME, n_actions=9)


def window(b=4, length=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.rand(b, length, *FRAME, generator=g),
        "action": torch.randint(0, 9, (b, length), generator=g),
        "mask": torch.ones(b, length, dtype=torch.bool),
    }


# --- the real workflow in a scratch copy of the repo -----------------------------------------
def snakemake(cwd, *args, configfiles=("config/test.yaml",), check=True):
    """Run snakemake in ``cwd`` with ``args`` (targets, options) and the config files, which go
    last in one ``--configfile`` (given twice, snakemake keeps only the last list, and a target
    before it would be read as a config file)."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", *configfiles]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def scratch_repo(tmp_path):
    for part in ("workflow", "scripts", "config", "envs"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


# --- the fault tally (tests/test_faults.py) -------------------------------------------------
TALLY = {"tried": 0, "clear": 0, "silent": 0, "lost": 0}


def summary_line() -> str:
    """Printed at the end of the test session (:func:`pytest_terminal_summary`)."""
    return (
        f"faults tried {TALLY['tried']}, clear errors {TALLY['clear']}, "
        f"silent {TALLY['silent']}, data lost {TALLY['lost']}"
    )


def tally(clear: bool, silent: bool = False, lost: bool = False) -> None:
    TALLY["tried"] += 1
    TALLY["clear"] += clear
    TALLY["silent"] += silent
    TALLY["lost"] += lost
    assert clear and not silent and not lost


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # an xdist worker: hand its tally over
        session.config.workeroutput["fault_tally"] = dict(TALLY)


def pytest_testnodedown(node, error):
    """On the xdist controller: add up the workers' tallies."""
    for key, n in getattr(node, "workeroutput", {}).get("fault_tally", {}).items():
        TALLY[key] += n


def pytest_terminal_summary(terminalreporter):
    if TALLY["tried"]:
        terminalreporter.write_line(summary_line())
