"""Open-loop evaluation on held-out rollouts, for a model and for the copy-last-frame baseline.

Every test episode long enough is used from its start: the first P frames are the precondition,
then the model is fed the episode's actions and predicts ``horizon`` frames that are compared
with the truth step by step. The same code path (``model.rollout``) serves training and play.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from forward_models import models
from forward_models.data.windows import to_batch
from forward_models.data.zarr_store import Rollouts
from forward_models.models.base import ForwardModel, split_window
from forward_models.models.frame_fed import FrameFed

METRICS = ("mse", "psnr", "ssim")


def eval_windows(rollouts: Rollouts, precondition: int, horizon: int, episodes: int) -> dict:
    """The first ``episodes`` test episodes with at least P + horizon rows, from their start."""
    need = precondition + horizon
    ids = np.flatnonzero(rollouts.lengths >= need)[:episodes]
    if len(ids) == 0:
        raise ValueError(
            f"{rollouts.path}: no test episode has the {need} rows that precondition={precondition} "
            f"+ horizon={horizon} need (longest: {rollouts.lengths.max()}); lower the horizon or "
            f"collect longer episodes"
        )
    # Only the rows evaluated are read: contiguous slices, not the whole store.
    obs, action = rollouts.array("obs"), rollouts.array("action")
    starts = rollouts.episode_starts[ids]
    batch = to_batch(
        np.stack([obs[s : s + need] for s in starts]),
        np.stack([action[s : s + need] for s in starts]),
        np.ones((len(ids), need), bool),
    )
    batch["episode"] = torch.from_numpy(ids)
    return batch


@torch.no_grad()
def predict(
    model: ForwardModel, batch: dict, precondition: int, batch_size: int = 64
) -> torch.Tensor:
    model.eval()
    context, actions, _, _ = split_window(batch, precondition)
    out = [
        model.rollout(context[i : i + batch_size], actions[i : i + batch_size]).float().clamp(0, 1)
        for i in range(0, len(context), batch_size)
    ]
    return torch.cat(out)


def step_errors(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, np.ndarray]:
    """Per episode and step (E, T): MSE on [0, 1] pixels, PSNR in dB (capped at 100) and SSIM."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    mse = ((pred - truth) ** 2).flatten(2).mean(-1).clamp_min(1e-10)
    e, t = mse.shape
    s = ssim(
        pred.flatten(0, 1).float(), truth.flatten(0, 1).float(), data_range=1.0, reduction="none"
    )
    return {
        "mse": mse.numpy(),
        "psnr": (10 * torch.log10(1.0 / mse)).numpy(),
        "ssim": s.view(e, t).numpy(),
    }


def tidy(errors: dict[str, np.ndarray], episodes: np.ndarray, **labels) -> pd.DataFrame:
    """Long table: one row per episode x horizon x metric, plus constant label columns."""
    e, t = next(iter(errors.values())).shape
    frames = [
        pd.DataFrame(
            {
                "episode": np.repeat(episodes, t),
                "horizon": np.tile(np.arange(1, t + 1), e),
                "metric": name,
                "value": values.reshape(-1).astype(np.float64),
            }
        )
        for name, values in errors.items()
    ]
    df = pd.concat(frames, ignore_index=True)
    for k, v in reversed(labels.items()):
        df.insert(0, k, v)
    return df


def evaluate(
    model: ForwardModel,
    rollouts: Rollouts,
    horizon: int,
    episodes: int,
    labels: dict,
    train_obs=None,
):
    """Errors against horizon, and the arrays for figures.

    Predictors: ``model`` (open loop), ``copy_last`` and, given the training frames
    ``train_obs``, ``mean_frame``; for families that read frames also ``model_one_step``
    (teacher forced: every step reads the true previous frame).
    """
    p = model.cfg.precondition
    batch = eval_windows(rollouts, p, horizon, episodes)
    truth = batch["obs"][:, p:]
    preds = {"model": predict(model, batch, p)}
    if isinstance(model, FrameFed):
        with torch.no_grad():
            context, actions, target, _ = split_window(batch, p)
            preds["model_one_step"] = (
                model.eval().teacher_forced(context, actions, target).float().clamp(0, 1)
            )
    baselines = (
        {"copy_last": None, "mean_frame": train_obs}
        if train_obs is not None
        else {"copy_last": None}
    )
    for arch, data in baselines.items():
        base = models.build(
            {"arch": arch, "precondition": p}, model.frame_shape, model.n_actions, model.action_dim
        )
        if data is not None:
            base.prepare(data)
        preds[arch] = predict(base, batch, p)
    ids = batch["episode"].numpy()
    table = pd.concat(
        [
            tidy(step_errors(pred, truth), ids, **labels, predictor=name)
            for name, pred in preds.items()
        ],
        ignore_index=True,
    )
    examples = {
        "episode": ids[:8],
        "context": _u8(batch["obs"][:8, :p]),
        "truth": _u8(truth[:8]),
        "prediction": _u8(preds["model"][:8]),
        "action": batch["action"][:8, p - 1 : -1].numpy(),  # the actions behind each prediction
    }
    return table, examples


def _u8(x: torch.Tensor) -> np.ndarray:
    """(B, T, C, H, W) floats in [0, 1] -> (B, T, H, W, C) uint8."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()


def summarize(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean, std and count over episodes for every env x model x seed x predictor x horizon x metric."""
    df = pd.concat(tables, ignore_index=True)
    keys = ["env", "model", "seed", "predictor", "horizon", "metric"]
    out = df.groupby(keys, sort=True)["value"].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "episodes"})


BASELINES = ("copy_last", "mean_frame")


def baseline_runs(summary: pd.DataFrame) -> pd.DataFrame:
    """Baseline rows as runs of a model named after the baseline, once per env, seed, horizon and
    metric (they are the same for every model). A baseline also configured as a model
    (``copy_last: {preset: copy_last}``) is left out: it would be counted, or drawn, twice."""
    runs = summary[summary["predictor"] == "model"]
    base = summary[summary["predictor"].isin(BASELINES)].drop_duplicates(
        ["env", "seed", "predictor", "horizon", "metric"]
    )
    base = base.assign(model=base["predictor"])
    trained = set(zip(runs["env"], runs["model"], strict=True))
    return base[[(e, m) not in trained for e, m in zip(base["env"], base["model"], strict=True)]]


def leaderboard(summary: pd.DataFrame, horizons: list[int], metric: str = "mse") -> pd.DataFrame:
    """Mean over seeds and 95% t-interval half-width at ``horizons``, per env and predictor.

    Rows are every model plus the baselines (``copy_last``, ``mean_frame``; the same for every
    model, counted once per seed). With one seed the interval is undefined (NaN).
    """
    from scipy import stats

    df = summary[(summary["metric"] == metric) & summary["horizon"].isin(horizons)]
    both = pd.concat([df[df["predictor"] == "model"], baseline_runs(df)], ignore_index=True)
    g = both.groupby(["env", "model", "horizon"])["mean"]
    out = g.agg(["mean", "std", "count"]).reset_index().rename(columns={"count": "seeds"})
    t = stats.t.ppf(0.975, (out["seeds"] - 1).clip(lower=1))
    out["ci95"] = np.where(out["seeds"] > 1, t * out["std"] / np.sqrt(out["seeds"]), np.nan)
    return out.drop(columns="std")


def leaderboard_markdown(board: pd.DataFrame, metric: str = "mse") -> str:
    """One table per env: models sorted by their mean over the horizons, best first."""
    lines = []
    for env, df in board.groupby("env"):
        cell = df.assign(
            text=[
                f"{m:.4f}" + ("" if np.isnan(c) else f" ± {c:.4f}")
                for m, c in zip(df["mean"], df["ci95"], strict=True)
            ]
        )
        wide = cell.pivot(index="model", columns="horizon", values="text")
        order = df.groupby("model")["mean"].mean().sort_values().index
        seeds = df.groupby("model")["seeds"].max()
        hs = list(wide.columns)
        lines += [f"## {env}: open-loop {metric.upper()} (mean ± 95% interval over seeds)", ""]
        lines.append("| model | seeds | " + " | ".join(f"h={h}" for h in hs) + " |")
        lines.append("|---|---:|" + "---:|" * len(hs))
        lines += [
            f"| {m} | {seeds[m]} | " + " | ".join(wide.loc[m, h] for h in hs) + " |" for m in order
        ]
        lines.append("")
    return "\n".join(lines)
