"""Model benchmark: every model of the default config on Pong 32x32, same wall-clock budget.

    python bench/models.py --seconds 90      # ~15 minutes on 2 cores
    python bench/models.py --presets         # the thesis presets (config/models/) instead

For each model: parameters, training frames/s on this machine (predicted frames per second of
optimisation), and open-loop MSE / PSNR at horizons 1, 8, 16, 32 on held-out episodes, and the
MSE as a multiple of the floor's on the same episodes ("x floor"; references are models here
too). ``--eval-seed 2`` evaluates on a dev split instead of the default config's test split, for
choosing settings. Training is the workflow's loop (``forward_models.training.train``: each
family's own ``loss``, Adam, gradient clipping, its lr schedule); only the stopping rule (a time
budget, not steps; a cosine schedule runs over the time) differs, so every family gets the same
budget.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402
import yaml  # noqa: E402
from common import PONG  # noqa: E402  (bench/common.py)
from forward_models import config, metrics, models  # noqa: E402
from forward_models.data.collect import collect  # noqa: E402
from forward_models.data.windows import WindowSampler  # noqa: E402
from forward_models.data.zarr_store import open_rollouts  # noqa: E402
from forward_models.evaluation import eval_windows, predict  # noqa: E402
from forward_models.training import Budget, train  # noqa: E402

HORIZONS = (1, 8, 16, 32)


def train_for(model, data: WindowSampler, seconds: float) -> tuple[int, float]:
    """Train with the workflow's loop (:func:`~forward_models.training.train`: the family's
    loss, Adam, clipping, its lr schedule, autocast) for ``seconds`` of wall-clock training on
    the CPU; returns the steps taken and the training frames per second."""
    cfg = model.cfg.train.model_copy(update=UNBOUNDED)
    with tempfile.TemporaryDirectory() as out:
        log = train(model, data, None, cfg, out, 0, "cpu", progress=False, budget=Budget(seconds))
    last = log[log["metric"] == "frames_per_s"].iloc[-1]
    return int(last["step"]), float(last["value"])


# A time budget stops these runs: no step count, no progress checkpoint, one log line at the end.
UNBOUNDED = {"steps": 10**12, "checkpoint_every": 10**12, "log_every": 10**12}


def errors(model, test, episodes: int = 100) -> dict[str, list[float]]:
    """MSE and PSNR at HORIZONS, and the MSE as a multiple of the floor's on the same windows."""
    out = scores(model, test, episodes)
    floor = floor_mse(test, model.cfg.precondition, episodes)
    out["x_floor"] = [metrics.x_floor(m, f) for m, f in zip(out["mse"], floor, strict=True)]
    return out


def scores(model, test, episodes: int) -> dict[str, list[float]]:
    p = model.cfg.precondition
    batch = eval_windows(test, p, max(HORIZONS), episodes)
    err = metrics.step_errors(predict(model, batch, p), batch["obs"][:, p:])
    return {m: [float(err[m][:, h - 1].mean()) for h in HORIZONS] for m in ("mse", "psnr")}


_FLOORS: dict[int, list[float]] = {}


def floor_of(test, p: int):
    """The floor for windows of ``test`` with precondition ``p``."""
    floor = models.build({"arch": "floor", "precondition": p}, test.frame_shape, test.n_actions)
    floor.prepare(test)
    return floor


def floor_mse(test, precondition: int, episodes: int) -> list[float]:
    """The floor's MSE at HORIZONS on the windows a model of this precondition is scored on."""
    if precondition not in _FLOORS:
        _FLOORS[precondition] = scores(floor_of(test, precondition), test, episodes)["mse"]
    return _FLOORS[precondition]


def model_configs(presets: bool) -> dict[str, dict]:
    """Model name -> config dict: the default config's models, or every thesis preset."""
    if presets:
        return {
            p.stem: yaml.safe_load(p.read_text())
            for p in sorted((ROOT / "config" / "models").glob("*.yaml"))
        }

    cfg = config.load_yaml(ROOT / "config" / "config.yaml")
    return {name: m.model_dump(mode="json") for name, m in cfg.models.items()}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=90, help="training budget per family")
    ap.add_argument("--families", nargs="*", help="models to run (default: all)")
    ap.add_argument(
        "--presets", action="store_true", help="config/models/ presets, not config.yaml"
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument(
        "--eval-seed",
        type=int,
        default=PONG.splits["test"].seed,
        help="seed of the held-out episodes (default: the config's test split; 2: a dev split)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    configs = model_configs(args.presets)
    names = args.families or sorted(configs)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        rollouts = open_rollouts(
            collect(PONG.source, Path(d) / "train.zarr", 1000, seed=0, workers=2, progress=False)
        )
        test = open_rollouts(
            collect(
                PONG.source,
                Path(d) / "test.zarr",
                100,
                seed=args.eval_seed,
                workers=2,
                progress=False,
            )
        )
        for name in names:
            cfg = configs[name]
            torch.manual_seed(0)
            model = models.build(cfg, rollouts.frame_shape, rollouts.n_actions)
            model.prepare(rollouts)
            params = sum(p.numel() for p in model.parameters())
            steps, fps = (0, float("nan"))
            if model.trainable:
                sampler = WindowSampler(rollouts, model.cfg.train.seq_len, seed=0)
                steps, fps = train_for(model, sampler, args.seconds)
            err = errors(model, test)
            rows.append((name, params, steps, fps, err))
            print(
                f"  {name}: {params:,} params, {steps} steps, {fps:,.0f} frames/s, mse {err['mse']}",
                file=sys.stderr,
                flush=True,
            )
    head = " | ".join(
        [f"MSE h={h}" for h in HORIZONS]
        + [f"x floor h={h}" for h in HORIZONS]
        + [f"PSNR h={h}" for h in HORIZONS]
    )
    print(f"\n| family | params | steps in {args.seconds:.0f} s | train frames/s (CPU) | {head} |")
    print("|---|---:|---:|---:|" + "---:|" * 3 * len(HORIZONS))
    for name, params, steps, fps, err in rows:
        cells = " | ".join(
            [f"{v:.4f}" for v in err["mse"]]
            + [f"{v:.2f}" for v in err["x_floor"]]
            + [f"{v:.1f}" for v in err["psnr"]]
        )
        print(f"| {name} | {params:,} | {steps} | {fps:,.0f} | {cells} |")


if __name__ == "__main__":
    main()
