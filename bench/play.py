"""Play benchmark: frames/s of ``forward_models/Dream-v0`` stepping each family's preset.

    python bench/play.py            # ~1 minute on 2 cores

Speed does not depend on what the weights learned, so each preset is saved untrained (its
baselines' mean frame from a few real episodes) and stepped with random actions, one env, batch
1, as `forward-models play` does. Goal: at least 60 frames/s so play is smooth.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from common import PONG  # noqa: E402  (bench/common.py)
from forward_models import models  # noqa: E402
from forward_models.data.collect import collect  # noqa: E402
from forward_models.data.zarr_store import open_rollouts  # noqa: E402
from forward_models.envs import DREAM_ID  # noqa: E402


def main(steps: int = 300) -> None:
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        store = open_rollouts(collect(PONG.source, Path(d) / "s.zarr", 5, seed=0, progress=False))
        for preset in sorted((ROOT / "config" / "models").glob("*.yaml")):
            model = models.build(
                yaml.safe_load(preset.read_text()), store.frame_shape, store.n_actions
            )
            if model.replays_env:  # the floor predicts whole windows; it cannot be played
                continue
            model.prepare(store)
            ckpt = Path(d) / f"{preset.stem}.pt"
            models.save(model.eval(), ckpt, env=store.attrs["env"])
            env = gym.make(DREAM_ID, checkpoint=str(ckpt))
            env.reset(seed=0)
            env.step(env.action_space.sample())  # warm-up
            t0 = time.perf_counter()
            for _ in range(steps):
                env.step(env.action_space.sample())
            fps = steps / (time.perf_counter() - t0)
            rows.append((preset.stem, fps))
            print(f"  {preset.stem}: {fps:,.0f} frames/s", file=sys.stderr, flush=True)
    print("\n| family | Dream-v0 frames/s (CPU, 2 threads) | >= 60 |\n|---|---:|---|")
    for name, fps in rows:
        print(f"| {name} | {fps:,.0f} | {'yes' if fps >= 60 else 'no'} |")


if __name__ == "__main__":
    main()
