import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the package, also without `pip install -e .`

import forward_models  # noqa: E402,F401  (registers the built-in envs)
from forward_models.data.collect import EnvSpec  # noqa: E402


@pytest.fixture
def pong_spec():
    return EnvSpec(
        "forward_models/TwoPlayerPong-v0", 32, {}, 80, "pong", {"stochasticity": [0.5, 1.0]}
    )
