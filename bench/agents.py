"""PPO against env steps: train the workflow's PPO (``forward_models.policies``) in the real env,
or in a model's dreams (``--checkpoint`` and ``--outcome``), and score it in the real env every
``--every`` steps, for choosing PPO's settings and budget.

    python bench/agents.py --steps 500000 --every 50000 --out real.jsonl
    python bench/agents.py --checkpoint results/train/pong/conv_gru_residual/seed0/checkpoint.pt \\
        --outcome results/outcome/pong/seed0/outcome.pt --steps 500000 --out dream.jsonl

Scores on dev episodes (``--score-seed 20000``, not the workflow's scoring seeds) by default.
``--figure PNG a.jsonl b.jsonl ...`` draws runs' returns against steps (label: the file name).
Each line of ``--out``: steps, seconds (this process's CPU time), the mean return (sampled
actions) and its standard error over ``--episodes`` episodes, the greedy policy's mean, and the
random policy's mean on the same episodes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import PONG, key_value  # noqa: E402  (bench/common.py)
from forward_models import policies  # noqa: E402
from forward_models.dream import DreamVector, env_spec  # noqa: E402


def figure(out: str, paths: list[str]) -> None:
    """Mean return (and +-1 standard error) against PPO steps, one line per run, random's level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.4, 3.6))
    for path in paths:
        recs = [json.loads(line) for line in Path(path).read_text().splitlines()]
        x = np.array([r["steps"] for r in recs]) / 1e3
        y, e = np.array([r["return"] for r in recs]), np.array([r["sem"] for r in recs])
        (line,) = ax.plot(x, y, marker="o", ms=3, label=Path(path).stem)
        ax.fill_between(x, y - e, y + e, color=line.get_color(), alpha=0.2)
    ax.axhline(recs[0]["random"], color="0.4", ls="--", lw=1, label="random policy")
    ax.set(xlabel="PPO steps (thousands)", ylabel="real-env return (dev episodes)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # off the curves
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def end_recall(model, ends: str, test) -> dict[int, float]:
    """Of the ``test`` store's episodes that end, the share whose model rollout of the h steps up
    to the end ends there too (:func:`forward_models.outcome.end_hits`), at h = 1, 2, 4, ..., 32."""
    from forward_models import outcome

    hits = outcome.end_hits(model, outcome.load(ends), test, [1, 2, 4, 8, 16, 32])
    recall = {h: round(float(hit.mean()), 3) for h, (_, hit) in hits.items()}
    print(f"end recall from the model's own frames ({len(hits[1][1])} ends): {recall}", flush=True)
    return recall


def end_strip(model, test, out: str, h: int = 8, shown: int = 3) -> None:
    """Truth / model / |difference| over the ``h`` steps up to a true end, for the first
    ``shown`` ``test`` episodes that end (``out`` gets ``_0``, ``_1``, ... before its suffix)."""
    from forward_models import outcome
    from forward_models.figures import rollout_strip
    from forward_models.frames import uint8_frames

    p = model.cfg.precondition
    batch = outcome.end_windows(test, p, h)
    window = {k: batch[k] for k in ("obs", "action", "mask")}
    with torch.no_grad():
        pred = model.rollout_window(window, p, torch.Generator().manual_seed(0))
    examples = {
        "episode": batch["episode"].numpy(),
        "context": uint8_frames(batch["obs"][:, :p]),
        "truth": uint8_frames(batch["obs"][:, p:]),
        "prediction": uint8_frames(pred),
    }
    for i in range(min(shown, len(pred))):
        rollout_strip(examples, Path(out).with_stem(f"{Path(out).stem}_{i}"), h, episode=i)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--figure":
        return figure(sys.argv[2], sys.argv[3:])
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=500_000)
    ap.add_argument("--every", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--score-seed", type=int, default=20_000, help="dev episodes by default")
    ap.add_argument("--checkpoint", help="train in this model's dreams instead of the real env")
    ap.add_argument("--outcome", help="the reward and end model for the dreams")
    ap.add_argument(
        "--recall",
        metavar="STORE",
        help="with --checkpoint: first score the model's end recall from its own frames on this "
        "rollout store (the test split), h=1..32, as the workflow's evaluation does",
    )
    ap.add_argument(
        "--end-strip",
        metavar="PNG",
        help="with --recall: draw the model's last 8 steps to ends (--steps 0: only that)",
    )
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="PolicyConfig fields (YAML values)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--save", help="write the final PPO here (stable-baselines3's zip)")
    args = ap.parse_args()
    if (args.checkpoint is None) != (args.outcome is None):
        ap.error("--checkpoint and --outcome go together: a dream needs its reward and end model")
    if args.recall and not args.checkpoint:
        ap.error("--recall scores a model's rollouts: give its --checkpoint and --outcome")
    if args.end_strip and not args.recall:
        ap.error("--end-strip draws ends of the --recall STORE's episodes: give it")
    torch.set_num_threads(args.threads)
    over = dict(args.set)
    cfg = policies.PolicyConfig(
        steps=args.every, episodes=args.episodes, score_seed=args.score_seed, **over
    )
    if args.checkpoint:
        spec = env_spec(args.checkpoint)
        vector = DreamVector(args.checkpoint, cfg.n_envs, args.outcome)
    else:
        spec = PONG.spec.model_dump()
        vector = policies.real_vector(spec, cfg.n_envs)
    recall = None
    if args.recall:  # the dream's own model (already loaded, in eval mode)
        from forward_models.data.zarr_store import open_rollouts

        model, test = vector.dreams.model, open_rollouts(args.recall)
        recall = end_recall(model, args.outcome, test)
        if args.end_strip:
            end_strip(model, test, args.end_strip)
            if args.steps == 0:
                return
    random = policies.score_agent("random", spec, cfg).mean()
    ppo, start = None, time.process_time()
    with open(args.out, "w") as out:
        for done in range(args.every, args.steps + 1, args.every):
            if ppo is None:
                ppo = policies.train_ppo(vector, cfg, args.seed)
            else:
                ppo.learn(total_timesteps=args.every, reset_num_timesteps=False)
            spent = time.process_time() - start
            returns = policies.score_ppo(ppo, spec, cfg)
            greedy = policies.score_ppo(ppo, spec, cfg.model_copy(update={"greedy": True}))
            rec = {
                "steps": done, "seconds": round(spent, 1), "return": float(returns.mean()),
                "sem": float(returns.std(ddof=1) / np.sqrt(len(returns))),
                "greedy": float(greedy.mean()),
                "random": float(random), "set": over, "dream": args.checkpoint,
                "end_recall": recall,
            }  # fmt: skip
            print(json.dumps(rec), file=out, flush=True)
            print(f"{done:8d} steps  {spent:6.0f} s  return {rec['return']:6.1f} "
                  f"+- {rec['sem']:.1f}  greedy {rec['greedy']:6.1f}  (random {random:.1f})",
                  flush=True)  # fmt: skip
    if args.save:
        ppo.save(args.save)


if __name__ == "__main__":
    main()
