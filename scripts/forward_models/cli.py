"""The ``forward-models`` command: inspect stores, print the config schema."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from forward_models import config as fm_config


def load_yaml_config(*paths: str | Path) -> fm_config.ExperimentBase:
    """Load and merge YAML files (later ones overlay earlier ones, like Snakemake) and validate."""
    merged: dict = {}
    for path in paths:
        _merge(merged, yaml.safe_load(Path(path).read_text()) or {})
    return fm_config.load(merged)


def _merge(base: dict, over: dict) -> None:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def cmd_schema(args) -> None:
    print(json.dumps(fm_config.json_schema(), indent=2))


def cmd_inspect(args) -> None:
    import numpy as np

    from forward_models.data.zarr_store import open_rollouts

    r = open_rollouts(args.store)
    steps = r.lengths - 1
    action = r.array("action")[:]
    a = r.attrs
    print(f"store      {r.path}")
    print(f"env        {a['env']['id']}  agent={a['env']['agent']}  frames {r.frame_shape}")
    print(f"episodes   {r.n_episodes}  rows {int(r.episode_ends[-1])}")
    print(f"steps      min {steps.min()}  median {int(np.median(steps))}  max {steps.max()}")
    if action.ndim == 1:
        hist = np.bincount(action, minlength=max(r.n_actions, 1))
        print(f"actions    {hist.tolist()}")
    size = sum(f.stat().st_size for f in Path(args.store).rglob("*") if f.is_file())
    raw = r.array("obs").nbytes
    print(f"disk       {size / 2**20:.1f} MiB  (obs raw {raw / 2**20:.1f} MiB, ratio {raw / max(size, 1):.1f}x)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="forward-models", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("schema", help="print the config JSON schema").set_defaults(fn=cmd_schema)
    p = sub.add_parser("inspect", help="summarise a rollout store")
    p.add_argument("store")
    p.set_defaults(fn=cmd_inspect)
    args = ap.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main(sys.argv[1:])
