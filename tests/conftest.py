import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the package, also without `pip install -e .`

import forward_models  # noqa: E402,F401  (registers the built-in envs)
from forward_models.config import EnvConfig  # noqa: E402

# Splits every EnvConfig needs; tests pass the episodes and seed to collect() themselves.
SPLITS = {"train": {"episodes": 1, "seed": 0}, "test": {"episodes": 1, "seed": 1}}


def env_config(
    env_id: str,
    size: int = 32,
    max_episode_steps: int | None = None,
    agent: str = "random",
    agent_kwargs: dict | None = None,
    kwargs: dict | None = None,
) -> EnvConfig:
    """An env config for collect() (``max_episode_steps`` None: the env's own limit)."""
    return EnvConfig(
        id=env_id,
        size=size,
        kwargs=kwargs or {},
        max_episode_steps=max_episode_steps,
        agent={"kind": agent, "kwargs": agent_kwargs or {}},
        splits=SPLITS,
    )


@pytest.fixture
def pong_spec():
    return EnvConfig(
        id="forward_models/TwoPlayerPong-v0",
        size=32,
        max_episode_steps=80,
        agent={"kind": "pong", "kwargs": {"stochasticity": [0.5, 1.0]}},
        splits=SPLITS,
    )


def pytest_terminal_summary(terminalreporter):
    faults = sys.modules.get("test_faults")
    if faults is not None and faults.TALLY["tried"]:
        terminalreporter.write_line(faults.summary_line())
