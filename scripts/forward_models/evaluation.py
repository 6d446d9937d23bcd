"""Evaluate one run on held-out rollouts: open-loop error against horizon.

Every test episode long enough is used from its start: the first P frames are the precondition,
then the model is fed the episode's actions and predicts ``horizon`` frames that are compared
with the truth step by step. The same code path (``model.rollout``) serves training and play.
References (copy-last, mean-frame) are models too, evaluated by this same code once per run.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from forward_models import frames, metrics
from forward_models.data.windows import to_batch
from forward_models.data.zarr_store import Rollouts
from forward_models.models.base import ForwardModel, split_window

log = logging.getLogger(__name__)


def eval_windows(
    rollouts: Rollouts, precondition: int, horizon: int, episodes: int, among=None
) -> dict:
    """The first ``episodes`` episodes (of those in ``among``, default all) with at least
    P + horizon rows, from their start."""
    need = precondition + horizon
    pool = np.arange(rollouts.n_episodes) if among is None else np.asarray(among)
    ids = pool[rollouts.lengths[pool] >= need][:episodes]
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
    n = len(batch["obs"])
    window = {k: batch[k] for k in ("obs", "action", "mask")}
    out = [
        model.rollout_window({k: v[i : i + batch_size] for k, v in window.items()}, precondition)
        for i in range(0, n, batch_size)
    ]
    return torch.cat(out).float().clamp(0, 1)


def tidy(errors: dict[str, np.ndarray], episodes: np.ndarray, **labels) -> pd.DataFrame:
    """Long table: one row per episode x horizon x metric, plus constant label columns."""
    e, t = next(iter(errors.values())).shape
    parts = [
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
    df = pd.concat(parts, ignore_index=True)
    for k, v in reversed(labels.items()):
        df.insert(0, k, v)
    return df


def evaluate(
    model: ForwardModel, rollouts: Rollouts, horizon: int, episodes: int, labels: dict
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Errors against horizon (tidy table) and a few examples for figures.

    Predictors: ``model`` (open loop); ``model_shuffled_actions``, the same episodes fed
    another episode's actions (controllability, after Genie: a model that ignores its actions
    scores the same); and, for families that offer it
    (:meth:`~forward_models.models.base.ForwardModel.one_step`), ``model_one_step`` (teacher
    forced: every step reads the true previous frame). The ``reference`` and ``floor`` columns
    carry the family's flags, so tables and figures can tell references from learned models.
    """
    p = model.cfg.precondition
    batch = eval_windows(rollouts, p, horizon, episodes)
    if len(batch["episode"]) < episodes:
        log.warning(
            "only %d of the %d test episodes asked for have the %d rows precondition=%d + "
            "horizon=%d need: the metrics are over %d (the leaderboard's episodes column)",
            len(batch["episode"]), episodes, p + horizon, p, horizon, len(batch["episode"]),
        )  # fmt: skip
    context, actions, truth, _ = split_window(batch, p)
    preds = {
        "model": predict(model, batch, p),
        "model_shuffled_actions": predict(model, shuffled_actions(batch, p), p),
    }
    with torch.no_grad():
        one_step = model.eval().one_step(context, actions, truth)
    if one_step is not None:
        preds["model_one_step"] = one_step.float().clamp(0, 1)
    ids = batch["episode"].numpy()
    family = type(model.cfg)
    labels = {**labels, "precondition": p, "reference": family.reference, "floor": family.floor}
    table = pd.concat(
        [
            tidy(metrics.step_errors(pred, truth), ids, **labels, predictor=name)
            for name, pred in preds.items()
        ],
        ignore_index=True,
    )
    examples = {
        "episode": ids[:8],
        "context": frames.uint8_frames(context[:8]),
        "truth": frames.uint8_frames(truth[:8]),
        "prediction": frames.uint8_frames(preds["model"][:8]),
        "action": actions[:8].numpy(),  # the actions behind each prediction
    }
    return table, examples


def shuffled_actions(batch: dict, precondition: int) -> dict:
    """The windows with the actions fed after the precondition (``a[P-1..]``) taken from the
    next episode (cyclically): the frames and the precondition's own actions stay."""
    action = batch["action"].clone()
    action[:, precondition - 1 :] = action[:, precondition - 1 :].roll(1, dims=0)
    return {**batch, "action": action}


def run_metrics(table: pd.DataFrame, floor: pd.DataFrame | None = None) -> dict[str, float]:
    """eval/{metric}_h{h} of the model at every horizon, each metric's mean over horizons and,
    given the floor run's table on the same episodes, eval/x_floor_h{h}: MSE / the floor's."""
    model = table[table["predictor"] == "model"].groupby(["metric", "horizon"])["value"].mean()
    out = {f"eval/{m}_h{h}": v for (m, h), v in model.items()}
    out["eval/episodes"] = float(table.loc[table["predictor"] == "model", "episode"].nunique())
    out.update({f"eval/{m}_mean": v for m, v in model.groupby(level="metric").mean().items()})
    if floor is not None:
        best = floor[(floor["predictor"] == "model") & (floor["metric"] == "mse")]
        ratio = metrics.x_floor(model["mse"], best.groupby("horizon")["value"].mean())
        out.update({f"eval/x_floor_h{h}": v for h, v in ratio.items()})
    return out
