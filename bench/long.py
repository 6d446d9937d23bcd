"""Error against compute for one model config on one env (the default Pong unless ``--envs``
and ``--env`` name another): train for a budget (``--clock``) and score the open-loop MSE on
held-out episodes as a multiple of the floor's on the same windows ("x floor"), every
``--every`` seconds of training. One seed per process; run seeds side by side (one thread each)
and read them together with ``--table``:

    python bench/long.py config/models/conv_gru_residual.yaml --minutes 30 --seed 0 --out s0.jsonl
    python bench/long.py --table s0.jsonl s1.jsonl s2.jsonl
    python bench/long.py config/models/diffusion.yaml --envs config/beyond.yaml --env pendulum \
        --minutes 60 --clock cpu --every 600 --out pendulum.jsonl

On an env without a floor (Boxing, Pendulum) the reference is copy-last instead: each line
holds the MSE per horizon ("mse"), copy-last's ("copy_last"), the model's in dB below it
("db_below_copy_last", 10 log10 of copy-last's over the model's) and the energy score ("es");
the floor's ES columns stay out, never invented.
Every line also holds "shuffled_gain" per horizon: the MSE with another episode's actions fed
minus the MSE with the episode's own (the workflow's "model_shuffled_actions", Δ shuffled: 0 for
a model that ignores its actions).

``--eval-seed 2`` scores on a dev split (for choosing settings), the default is the env's test
split. The training loop is the workflow's (``forward_models.training.train``):
each family's own ``loss``, Adam, gradient clipping, its lr schedule; ``lr_schedule: cosine``
runs over the time budget here.
Each line of ``--out`` is one evaluation: steps, seconds, frames, x floor per horizon (1-32),
the mean MSE over h=1-32 and its ratio to the floor's, and the energy score as a multiple of
the floor posterior's ("x ES floor", its samples drawn once on the same windows) and the spread
ratio per horizon, with their means over h=1-32. A family that samples futures is scored on
``--samples`` futures per episode (its MSE is their mean's, as the workflow's); a deterministic
one on its one future (ES = RMSE, spread 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from common import PONG, key_value  # noqa: E402  (bench/common.py)
from forward_models import config, metrics, models  # noqa: E402
from forward_models.data.collect import collect  # noqa: E402
from forward_models.data.windows import WindowSampler  # noqa: E402
from forward_models.data.zarr_store import open_rollouts  # noqa: E402
from forward_models.evaluation import (  # noqa: E402
    eval_windows,
    predict,
    predict_samples,
    samples_futures,
    shuffled_actions,
)
from forward_models.floor import has_floor  # noqa: E402
from forward_models.training import Budget, train  # noqa: E402
from models import UNBOUNDED, floor_of  # noqa: E402  (bench/models.py)

HORIZON = 32
SHOWN = (1, 2, 4, 8, 16, 32)


def env_of(args):
    """The env config ``--env`` of the ``--envs`` file (its first env by default)."""
    if args.envs is None:
        if args.env not in (None, "pong"):
            raise SystemExit(f"--env {args.env!r} needs --envs, the config file that holds it")
        return "pong", PONG
    envs = config.read_yaml(args.envs).get("envs") or {}  # the file's envs only, validated here
    name = args.env or next(iter(envs), None)
    if name not in envs:
        raise SystemExit(f"--env {name!r}: {args.envs} has the envs {sorted(envs)}")
    return name, config.EnvConfig.model_validate(envs[name])


def store(data: Path, name: str, env, split: str, seed: int):
    """The rollouts of ``env``'s split ``split`` (its episodes) with collection seed ``seed``,
    collected into ``data/{name}/`` on first use."""
    path = data / name / f"{split}-seed{seed}.zarr"
    if not (path / "zarr.json").exists():
        n = env.splits["train" if split == "train" else "test"].episodes
        collect(env.source, path, n, seed=seed, workers=1, progress=False)
    return open_rollouts(path)


def test_of(args, name: str, env):
    """The split ``--eval-seed`` of ``env`` (by default the env's test split)."""
    seed = env.splits["test"].seed if args.eval_seed is None else args.eval_seed
    return store(Path(args.data), name, env, "eval", seed)


def sample_horizons(
    model, batch, p: int, k: int, seed: int, shuffled: bool = False
) -> dict[str, np.ndarray]:
    """Open-loop MSE of the mean of ``k`` futures, ES and spread at h = 1..HORIZON; with
    ``shuffled`` also the MSE of the mean with another episode's actions fed."""
    was = model.training
    truth = batch["obs"][:, p:]
    with torch.no_grad():
        point, scores, _ = predict_samples(model, batch, p, k, seed)
        moved = (
            predict_samples(model, shuffled_actions(batch, p), p, k, seed)[0] if shuffled else None
        )
    model.train(was)
    out = {name: scores[name].mean(0) for name in ("es", "spread")}
    out["mse"] = np.asarray(metrics.horizon_mse(point, truth))
    if shuffled:
        out["mse_shuffled"] = np.asarray(metrics.horizon_mse(moved, truth))
    return out


def rounded(values, digits: int = 3) -> list[float]:
    return [round(float(v), digits) for v in values]


def shuffled_gain(got: dict) -> list[float]:
    """Δ shuffled per horizon from :func:`sample_horizons`' ``shuffled`` columns."""
    return rounded(got["mse_shuffled"] - got["mse"], 6)


def sample_record(
    model, batch, p: int, k: int, seed: int, floor: dict, shuffled: bool = False
) -> dict:
    """The sampling columns of one evaluation, against the floor posterior's ``floor``; with
    ``shuffled`` also Δ shuffled per horizon."""
    got = sample_horizons(model, batch, p, k, seed, shuffled)
    x_es = got["es"] / floor["es"]
    spread = metrics.spread_ratio(got["spread"], floor["spread"])
    gain = {"shuffled_gain": shuffled_gain(got)} if shuffled else {}
    return {
        "mse": got["mse"],
        "x_es_floor": rounded(x_es),
        "spread_ratio": rounded(spread),
        "es_mean": float(got["es"].mean()), "es_floor_mean": float(floor["es"].mean()),
        "mean_x_es": float(got["es"].mean() / floor["es"].mean()),
        **gain,
    }  # fmt: skip


def copy_last_record(model, batch, p: int, k: int, seed: int, copy_mse: np.ndarray) -> dict:
    """One evaluation on an env without a floor: against copy-last's MSE ``copy_mse``."""
    got = sample_horizons(model, batch, p, k, seed, shuffled=True)
    db = 10 * np.log10(copy_mse / got["mse"])
    return {
        "db_below_copy_last": rounded(db, 2),
        "mse": rounded(got["mse"], 7), "copy_last": rounded(copy_mse, 7),
        "mse_mean": float(got["mse"].mean()), "copy_last_mean": float(copy_mse.mean()),
        "es": rounded(got["es"], 5), "es_mean": float(got["es"].mean()),
        "shuffled_gain": shuffled_gain(got),
    }  # fmt: skip


def records(path: str) -> list[dict]:
    """A run's evaluations, one per ``--out`` line."""
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def run(args) -> None:
    cfg = yaml.safe_load(Path(args.config).read_text())
    over = dict(args.train)
    cfg["train"] = {**cfg.get("train", {}), **over}
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    name, env = env_of(args)
    rollouts = store(data, name, env, "train", env.splits["train"].seed)
    test = test_of(args, name, env)
    torch.manual_seed(args.seed)
    model = models.build(cfg, rollouts.frame_shape, rollouts.n_actions, rollouts.action_dim)
    # references see the training rollouts (the mean frame), as in train_job
    model.prepare(rollouts)
    p, tc = model.cfg.precondition, model.cfg.train
    batch = eval_windows(test, p, HORIZON, env.splits["test"].episodes)
    k = args.samples if samples_futures(model) else 1
    score = scorer(env, test, batch, p, k, args.seed)
    sampler = WindowSampler(
        rollouts, tc.seq_len, seed=args.seed, from_start=tc.from_start, to_end=tc.to_end
    )
    with open(args.out, "w") as out:

        def evaluate(model, step: int, spent: float, frames: int) -> None:
            rec = {
                "config": args.config, "env": name, "train": over, "seed": args.seed,
                "step": step, "seconds": round(spent, 1), "frames": frames, **score(model),
            }  # fmt: skip
            print(json.dumps(rec), file=out, flush=True)
            print(f"{spent:7.0f} s  step {step:6d}  {summary(rec)}", file=sys.stderr, flush=True)

        evaluate(model, 0, 0.0, 0)
        budget = Budget(args.minutes * 60, args.clock, args.every, evaluate)
        with tempfile.TemporaryDirectory() as scratch:
            unbounded = tc.model_copy(update=UNBOUNDED)
            train(
                model,
                sampler,
                None,
                unbounded,
                scratch,
                args.seed,
                "cpu",
                progress=False,
                budget=budget,
            )
    if args.checkpoint:  # the workflow's format (play, Dream-v0 and bench/agents.py load it)
        models.save(model, args.checkpoint, env=rollouts.attrs["env"])


def scorer(env, test, batch, p: int, k: int, seed: int):
    """``model -> record columns`` for one evaluation: against the floor where ``env`` has one
    (its posterior sampled once on the same windows), else against copy-last."""
    if not has_floor(env.id):
        copy = models.build(
            {"arch": "copy_last", "precondition": p},
            test.frame_shape,
            test.n_actions,
            test.action_dim,
        )
        copy_mse = sample_horizons(copy, batch, p, 1, 0)["mse"]
        return lambda model: copy_last_record(model, batch, p, k, seed, copy_mse)
    floor = floor_of(test, p)
    floor_samples = sample_horizons(floor, batch, p, floor.cfg.samples, 0)  # once: the posterior
    floor_mse = floor_samples["mse"]  # its point: the posterior mean

    def score(model) -> dict:
        extra = sample_record(model, batch, p, k, seed, floor_samples, shuffled=True)
        mse = extra.pop("mse")
        return {
            "x_floor": rounded(metrics.x_floor(mse, floor_mse)),
            "mse_mean": float(mse.mean()), "floor_mean": float(floor_mse.mean()),
            "mean_x": float(metrics.x_floor(mse.mean(), floor_mse.mean())),
            **extra,
        }  # fmt: skip

    return score


def summary(rec: dict) -> str:
    """One evaluation in a progress line."""
    gain = f"Δ shuffled {np.mean(rec['shuffled_gain']):+.5f}"
    if "x_floor" in rec:
        return (f"mean x floor {rec['mean_x']:.2f}  mean x ES floor {rec['mean_x_es']:.2f}  "
                f"x floor at h={SHOWN}: {[rec['x_floor'][h - 1] for h in SHOWN]}  {gain}")  # fmt: skip
    db = rec["db_below_copy_last"]
    return (f"dB below copy-last at h={SHOWN}: {[db[h - 1] for h in SHOWN]}  "
            f"ES mean {rec['es_mean']:.4f}  {gain}")  # fmt: skip


def strip(args) -> None:
    """Truth / floor / model / |difference| on a test episode, from a ``--checkpoint`` file; for
    a sampling family also its samples sheet (``_samples`` beside the PNG): 8 of its futures of
    the episode and 8 of the floor's exact posterior."""
    from forward_models.figures import rollout_strip, samples_sheet
    from forward_models.frames import uint8_frames
    from forward_models.models.base import split_window

    ckpt, out = args.strip
    name, env = env_of(args)
    test = test_of(args, name, env)
    model = models.load(ckpt).eval()
    p = model.cfg.precondition
    batch = eval_windows(test, p, HORIZON, args.episode + 1)
    context, _, truth, _ = split_window(batch, p)
    floor = floor_of(test, p) if has_floor(env.id) else None
    examples = {
        "episode": batch["episode"].numpy(),
        "context": uint8_frames(context),
        "truth": uint8_frames(truth),
        "prediction": uint8_frames(predict(model, batch, p)),
    }
    if floor is not None:
        examples["floor"] = uint8_frames(predict(floor, batch, p))
    rollout_strip(examples, out, n_frames=args.frames, episode=args.episode)
    if samples_futures(model):
        one = {k: v[args.episode :] for k, v in batch.items()}  # the episode first
        posterior = uint8_frames(predict_samples(floor, one, p, 8, args.seed)[2]) if floor else None
        shown = {k: v[args.episode :] for k, v in examples.items()}  # the strip's own frames
        sheet = Path(out).with_name(Path(out).stem + "_samples.png")
        samples = {
            **shown,
            "samples": uint8_frames(predict_samples(model, one, p, 8, args.seed)[2]),
        }
        samples_sheet(samples, sheet, posterior, n_frames=args.frames)


def label_of(rec: dict) -> str:
    """A run's config name and its ``--train`` overrides."""
    over = ", ".join(f"{k}={v}" for k, v in rec.get("train", {}).items())
    return Path(rec["config"]).stem + (f" ({over})" if over else "")


def curves(paths: list[str], out: str) -> None:
    """Against training time, one line per run: mean x floor (h=1-32), x floor at h=1, mean x ES
    floor and the mean spread ratio (runs recorded before those columns leave them out); on envs
    without a floor :func:`copy_last_curves`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "x_floor" not in records(paths[0])[0]:
        return copy_last_curves(paths, out, plt)
    fig, grid = plt.subplots(2, 2, figsize=(9, 6.4), sharex=True)
    axes, below = grid[0], grid[1]
    colours: dict[str, str] = {}  # one per config and its overrides; seeds share it
    for path in paths:
        recs = records(path)[1:]
        name = label_of(recs[0])
        label = None if name in colours else name
        colour = colours.setdefault(name, f"C{len(colours)}")
        t = [r["seconds"] / 60 for r in recs]
        axes[0].plot(t, [r["mean_x"] for r in recs], color=colour, label=label)
        axes[1].plot(t, [r["x_floor"][0] for r in recs], color=colour)
        if "mean_x_es" in recs[0]:
            below[0].plot(t, [r["mean_x_es"] for r in recs], color=colour)
            below[1].plot(t, [np.mean(r["spread_ratio"]) for r in recs], color=colour)
    for ax, title, goal in zip(axes, ["mean over h=1-32", "h=1"], [1.5, 2.0], strict=True):
        ax.axhline(1, color="0.3", ls=":", lw=1)
        ax.axhline(goal, color="0.5", ls="--", lw=1)
        ax.set(yscale="log", title=title, xlabel="training time (minutes)", ylabel="MSE / floor's")
    below[0].axhline(1, color="0.3", ls=":", lw=1)
    below[0].axhline(1.2, color="0.5", ls="--", lw=1)
    below[0].set(yscale="log", title="energy score, mean over h=1-32", ylabel="ES / floor's")
    below[1].axhspan(0.8, 1.25, color="0.9")
    below[1].set(title="spread ratio, mean over h=1-32", ylabel="spread / posterior's")
    for ax in below:
        ax.set_xlabel("training time (minutes)")
    rows = -(-len(colours) // 2)  # the legend under the panels, two runs a line
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.035 * rows, 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)


def copy_last_curves(paths: list[str], out: str, plt) -> None:
    """Against training time, one line per run on an env without a floor: the MSE in dB below
    copy-last's (its mean and its least over h=4-32, the goal's 3 dB dashed), the mean energy
    score and the mean Δ shuffled actions (h=1-32); a reference scored once (copy-last, the
    mean frame) is a dashed level."""
    fig, grid = plt.subplots(2, 2, figsize=(9, 6.4), sharex=True)
    panels = grid.ravel()
    for i, path in enumerate(paths):
        recs = records(path)
        recs = recs[1:] if len(recs) > 1 else recs  # a learned run from its first evaluation on
        t = [r["seconds"] / 60 for r in recs]
        db = np.array([r["db_below_copy_last"][3:] for r in recs])  # h = 4..32
        label = f"{label_of(recs[0])} on {recs[0]['env']}, seed {recs[0]['seed']}"
        values = [db.mean(1), db.min(1), [r["es_mean"] for r in recs]]
        values.append([np.mean(r["shuffled_gain"]) for r in recs])
        for j, (ax, v) in enumerate(zip(panels, values, strict=True)):
            if len(recs) == 1:  # a reference, scored once: a dashed level across the panel
                ax.axhline(v[0], color=f"C{i}", ls="--", lw=1, label=label if j == 0 else None)
            else:
                ax.plot(t, v, color=f"C{i}", label=label if j == 0 else None)
    titles = [
        ("MSE below copy-last's, mean over h=4-32", "dB"),
        ("MSE below copy-last's, least over h=4-32", "dB"),
        ("energy score, mean over h=1-32", "ES (RMS pixel distance)"),
        ("Δ shuffled actions, mean over h=1-32", "MSE shuffled - own"),
    ]
    for ax, (title, unit) in zip(panels, titles, strict=True):
        ax.set(title=title, ylabel=unit)
    for ax in panels[:2]:
        ax.axhline(3, color="0.5", ls=(0, (6, 3)), lw=1.5)  # the goal
        ax.axhline(0, color="0.3", ls=":", lw=1)
    panels[3].axhline(0, color="0.3", ls=":", lw=1)
    for ax in panels[2:]:
        ax.set_xlabel("training time (minutes)")
    fig.legend(*panels[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.035 * -(-len(paths) // 2), 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)


def copy_last_table(runs: dict[str, list[dict]]) -> None:
    """:func:`table` on an env without a floor: dB below copy-last, ES and Δ shuffled."""
    cols = [f"dB below copy-last h={h}" for h in SHOWN] + ["least dB h=4-32 (at h)"]
    cols += ["ES mean h=1-32", "Δ shuffled mean h=1-32", "Δ shuffled least h"]
    print(f"| config | env | seed | steps | {' | '.join(cols)} |")
    print("|---|---|---|---:|" + "---:|" * len(cols))
    for name, recs in runs.items():
        for r in recs:
            db, gain = np.array(r["db_below_copy_last"]), np.array(r["shuffled_gain"])
            worst = 3 + int(db[3:].argmin())
            cells = [f"{db[h - 1]:.1f}" for h in SHOWN] + [f"{db[worst]:.1f} ({worst + 1})"]
            cells += [f"{r['es_mean']:.4f}", f"{gain.mean():+.5f}", f"{gain.min():+.5f}"]
            print(f"| {name} | {r['env']} | {r['seed']} | {r['step']} | {' | '.join(cells)} |")


def table(paths: list[str]) -> None:
    """Last evaluation of each run, grouped by config: mean over seeds, min-max across them."""
    runs: dict[str, list[dict]] = {}
    for path in paths:
        last = records(path)[-1]
        runs.setdefault(label_of(last), []).append(last)
    if not all("x_floor" in r for rs in runs.values() for r in rs):
        return copy_last_table(runs)
    cols = [f"x floor h={h}" for h in SHOWN] + ["mean MSE h=1-32 / floor's", "worst h"]
    sampled = all("mean_x_es" in r for rs in runs.values() for r in rs)
    if sampled:
        cols += [f"x ES floor h={h}" for h in SHOWN] + [
            "mean ES / floor's",
            "spread h=1",
            "spread h=32",
        ]
    print(f"| config | seeds | steps | {' | '.join(cols)} |")
    print("|---|---|---:|" + "---:|" * len(cols))
    for name, recs in runs.items():
        x = np.array([r["x_floor"] for r in recs])
        mean_x = np.array([r["mean_x"] for r in recs])

        def cell(v):
            return f"{v.mean():.2f}" + (f" ({v.min():.2f}-{v.max():.2f})" if len(v) > 1 else "")

        cells = [cell(x[:, h - 1]) for h in SHOWN] + [cell(mean_x), cell(x.max(1))]
        if sampled:
            x_es = np.array([r["x_es_floor"] for r in recs])
            spread = np.array([r["spread_ratio"] for r in recs])
            cells += [cell(x_es[:, h - 1]) for h in SHOWN] + [
                cell(np.array([r["mean_x_es"] for r in recs])),
                cell(spread[:, 0]),
                cell(spread[:, -1]),
            ]
        steps = "/".join(str(r["step"]) for r in recs)
        seeds = ",".join(str(r["seed"]) for r in recs)
        print(f"| {name} | {seeds} | {steps} | {' | '.join(cells)} |")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("config", nargs="?", help="a model config YAML (a preset file's format)")
    ap.add_argument(
        "--train",
        nargs="*",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="override the config's train settings (YAML values: from_start=0.5 lr_schedule=cosine)",
    )
    ap.add_argument("--minutes", type=float, default=30, help="training budget (wall-clock)")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="count the budget in wall-clock seconds of training steps, or in this process's CPU "
        "seconds (all its threads; fair when runs share the machine)",
    )
    ap.add_argument("--every", type=float, default=150, help="seconds between evaluations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--samples", type=int, default=16, help="futures per episode for a sampling family"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument(
        "--envs", help="a config file whose envs to train on (default: the default config's Pong)"
    )
    ap.add_argument("--env", help="with --envs: which of its envs (default: its first)")
    ap.add_argument(
        "--eval-seed",
        type=int,
        help="collection seed of the scored split (default: the env's test)",
    )
    ap.add_argument("--data", default="bench-data", help="where the rollout stores are kept")
    ap.add_argument("--out", help="JSON lines, one per evaluation")
    ap.add_argument("--checkpoint", help="save the final model here (the workflow's format)")
    ap.add_argument("--table", nargs="+", help="print the table of these runs' last lines")
    ap.add_argument("--figure", help="with --table: draw the runs' curves to this PNG")
    ap.add_argument(
        "--strip", nargs=2, metavar=("CHECKPOINT", "PNG"), help="draw a test episode's strip"
    )
    ap.add_argument("--episode", type=int, default=0, help="--strip: which test episode")
    ap.add_argument("--frames", type=int, default=16, help="--strip: predicted frames shown")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.strip:
        strip(args)
    elif args.table:
        table(args.table)
        if args.figure:
            curves(args.table, args.figure)
    elif args.config and args.out:
        run(args)
    else:
        ap.error("give a config and --out, or --table")


if __name__ == "__main__":
    main()
