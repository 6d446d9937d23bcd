"""What the benchmark scripts share: the default env and ``KEY=VALUE`` command-line overrides."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import yaml  # noqa: E402
from forward_models import config  # noqa: E402

PONG = config.load_yaml(ROOT / "config" / "config.yaml").envs["pong"]  # the default env


def key_value(text: str) -> tuple[str, Any]:
    """An argparse ``type``: ``lr=1e-3`` -> ``("lr", 0.001)``, the value read as YAML (and a
    number YAML 1.1 leaves a string, such as ``1e-3``, as the number)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. lr=1e-3")
    loaded = yaml.safe_load(value)
    if isinstance(loaded, str):
        try:
            return key, float(loaded)
        except ValueError:
            pass
    return key, loaded
