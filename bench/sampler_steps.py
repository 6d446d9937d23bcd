"""A sampling family's steps per future frame against its scores, on one checkpoint: the same
weights sampled with each ``--steps`` value (diffusion: Euler steps of its Karras schedule,
DIAMOND samples with 3), scored as ``bench/long.py`` scores (x ES floor, spread ratio, the
K-sample mean's x floor) on dev episodes (seed 2) by default:

    python bench/sampler_steps.py diffusion-s0.pt --steps 1 2 3 6 10

Prints one row per setting with the CPU seconds it took to draw the K futures of every episode,
and that time as a multiple of the first setting's (the same process, one thread).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "scripts"))
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from common import PONG  # noqa: E402  (bench/common.py)
from forward_models import metrics, models  # noqa: E402
from forward_models.evaluation import eval_windows  # noqa: E402
from long import HORIZON, SHOWN, sample_horizons, sample_record, store  # noqa: E402
from models import floor_of  # noqa: E402


def with_steps(path: str, steps: int, frame_shape, n_actions: int):
    """The checkpoint's weights in a model that samples with ``steps`` steps (the schedule is
    built from the config, not saved with the weights)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "sample_steps" not in ckpt["config"]:
        raise ValueError(f"{path}: its family ({ckpt['config']['arch']}) has no sampling steps")
    model = models.build({**ckpt["config"], "sample_steps": steps}, frame_shape, n_actions)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("checkpoint")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 6, 10])
    ap.add_argument("--samples", type=int, default=16, help="futures per episode")
    ap.add_argument("--episodes", type=int, default=100, help="of the 100 of the split")
    ap.add_argument("--eval-seed", type=int, default=2, help="2: the dev split (1: test)")
    ap.add_argument("--data", default="bench-data", help="where the rollout stores are kept")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    test = store(Path(args.data), "pong", PONG, "eval", args.eval_seed)  # bench/long.py's split
    p = models.load(args.checkpoint).cfg.precondition
    batch = eval_windows(test, p, HORIZON, args.episodes)
    floor = floor_of(test, p)
    floor_samples = sample_horizons(floor, batch, p, floor.cfg.samples, 0)
    cols = [f"x ES floor h={h}" for h in SHOWN] + [f"spread h={h}" for h in SHOWN]
    print(f"{len(batch['obs'])} episodes (seed {args.eval_seed}), K = {args.samples}")
    print(f"| steps | CPU s | x first | mean x ES floor | {' | '.join(cols)} | mean x floor |")
    print("|" + "---:|" * (len(cols) + 5))
    first = None
    for steps in args.steps:
        model = with_steps(args.checkpoint, steps, test.frame_shape, test.n_actions)
        start = time.process_time()
        rec = sample_record(model, batch, p, args.samples, 0, floor_samples)
        spent = time.process_time() - start
        first = first or spent
        x_floor = metrics.x_floor(rec["mse"].mean(), floor_samples["mse"].mean())
        cells = [f"{rec['x_es_floor'][h - 1]:.2f}" for h in SHOWN]
        cells += [f"{rec['spread_ratio'][h - 1]:.2f}" for h in SHOWN]
        print(f"| {steps} | {spent:.0f} | {spent / first:.1f} | {rec['mean_x_es']:.2f} | "
              f"{' | '.join(cells)} | {x_floor:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
