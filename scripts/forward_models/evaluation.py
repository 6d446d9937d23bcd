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
from forward_models.data.windows import rows_from
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
    return rows_from(rollouts, ids, rollouts.episode_starts[ids], need)


@torch.no_grad()
def predict(
    model: ForwardModel, batch: dict, precondition: int, batch_size: int = 64
) -> torch.Tensor:
    """Point predictions of every window, (E, T, C, H, W) in [0, 1]."""
    model.eval()
    n = len(batch["obs"])
    window = {k: batch[k] for k in ("obs", "action", "mask")}
    out = [
        model.rollout_window({k: v[i : i + batch_size] for k, v in window.items()}, precondition)
        for i in range(0, n, batch_size)
    ]
    return torch.cat(out).float().clamp(0, 1)


def samples_futures(model: ForwardModel) -> bool:
    """Whether evaluation draws futures from ``model`` (a stochastic family, or the floor from
    its posterior); any other is rolled out once and counts as K equal samples."""
    family = type(model.cfg)
    return family.stochastic or family.floor


def sample_seed(seed: int, episode: int) -> int:
    """The generator seed of the chunk of windows that starts at test ``episode``."""
    return 1_000_003 * seed + episode


@torch.no_grad()
def predict_samples(
    model: ForwardModel, batch: dict, precondition: int, k: int, seed: int, batch_size: int = 64
) -> tuple[torch.Tensor, dict[str, np.ndarray], torch.Tensor]:
    """``(point (E, T, C, H, W), scores, first)``: the point prediction of every window, the
    sample scores (:func:`~forward_models.metrics.sample_scores`, each (E, T)) of ``k`` futures
    per window, and the first window's ``k`` futures (for figures).

    Windows go through the model in chunks of ``batch_size // k`` whole episodes, each chunk
    drawn with its own generator seeded by :func:`sample_seed` from its first episode: the
    same config and seed give the same samples, byte for byte on the CPU, and no episode's
    futures depend on how many episodes there are after it."""
    model.eval()
    window = {key: batch[key] for key in ("obs", "action", "mask")}
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    per = max(1, batch_size // k)  # whole episodes per call
    points, parts, first = [], [], None
    for i in range(0, len(window["obs"]), per):
        chunk = {key: v[i : i + per] for key, v in window.items()}
        gen = torch.Generator(device=device).manual_seed(
            sample_seed(seed, int(batch["episode"][i]))
        )
        point, samples = model.sample_window(chunk, precondition, k, gen)
        samples = samples.float().cpu().clamp(0, 1)
        truth = chunk["obs"][:, precondition:].float()
        parts.append(metrics.sample_scores(samples, truth))
        points.append(point.float().cpu().clamp(0, 1))
        first = samples[0] if first is None else first
    scores = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return torch.cat(points), scores, first


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
    model: ForwardModel,
    rollouts: Rollouts,
    horizon: int,
    episodes: int,
    labels: dict,
    samples: int = 16,
    ends=None,
    end_horizons=(),
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Errors against horizon (tidy table) and a few examples for figures.

    The ``model`` predictor's metrics are those of its point prediction (mse, psnr, ssim; for
    a stochastic family the mean of its ``samples`` futures per episode, for the floor the
    posterior mean) and of the futures themselves: ``es``, ``spread`` and ``mse_best``
    (:func:`~forward_models.metrics.sample_scores`; a deterministic model's are those of
    ``samples`` equal futures: ES = RMSE, spread 0, best-of-K = MSE). Futures are drawn with
    generators seeded from ``labels["seed"]`` and the episode (:func:`predict_samples`).

    Predictors: ``model`` (open loop); ``model_shuffled_actions``, the same episodes fed
    another episode's actions (controllability, after Genie: a model that ignores its actions
    scores the same); and, for families that offer it
    (:meth:`~forward_models.models.base.ForwardModel.one_step`), ``model_one_step`` (teacher
    forced: every step reads the true previous frame). The ``reference`` and ``floor`` columns
    carry the family's flags, so tables and figures can tell references from learned models.

    Given ``ends``, the env's reward and end model (:mod:`~forward_models.outcome`), the model
    also gets ``end_hit`` rows at ``end_horizons``: over the test episodes that end, whether
    its rollout of the last h steps ends within 2 steps of the true end
    (:func:`~forward_models.outcome.end_hits`; its mean is the end recall). Not the floor's:
    it is defined from an episode's start, and no agent acts in it.
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
    seed, family = int(labels.get("seed", 0)), type(model.cfg)
    if samples_futures(model):
        k = model.cfg.samples if family.floor else samples
        point, scores, first = predict_samples(model, batch, p, k, seed)
        moved = shuffled_actions(batch, p)  # the floor's point is exact without samples
        shuffled = (
            predict(model, moved, p)
            if family.floor
            else predict_samples(model, moved, p, k, seed)[0]
        )
    else:
        point = predict(model, batch, p)
        scores, first = metrics.sample_scores(point[:, None], truth), point[0, None]
        shuffled = predict(model, shuffled_actions(batch, p), p)
    preds = {"model": point, "model_shuffled_actions": shuffled}
    with torch.no_grad():
        one_step = model.eval().one_step(context, actions, truth)
    if one_step is not None:
        preds["model_one_step"] = one_step.float().clamp(0, 1)
    ids = batch["episode"].numpy()
    labels = {**labels, "precondition": p, "reference": family.reference, "floor": family.floor}
    errors = {name: metrics.step_errors(pred, truth) for name, pred in preds.items()}
    errors["model"].update(scores)
    parts = [tidy(errs, ids, **labels, predictor=name) for name, errs in errors.items()]
    if ends is not None and not family.floor:  # the floor replays from an episode's start only
        parts += end_rows(model, ends, rollouts, end_horizons, seed, labels)
    table = pd.concat(parts, ignore_index=True)
    examples = {
        "episode": ids[:8],
        "context": frames.uint8_frames(context[:8]),
        "truth": frames.uint8_frames(truth[:8]),
        "prediction": frames.uint8_frames(preds["model"][:8]),
        "action": actions[:8].numpy(),  # the actions behind each prediction
        "samples": frames.uint8_frames(first[:16]),  # the first episode's futures (K, T, H, W, C)
    }
    return table, examples


def end_rows(model, ends, rollouts, horizons, seed: int, labels: dict) -> list[pd.DataFrame]:
    """The ``end_hit`` rows of :func:`evaluate`, one per episode that ends and horizon."""
    from forward_models.outcome import end_hits

    rows = []
    for h, (episodes, hit) in end_hits(model, ends, rollouts, horizons, seed).items():
        df = pd.DataFrame({"episode": episodes, "horizon": h, "metric": "end_hit"})
        df["value"] = hit.astype(np.float64)
        for k, v in reversed({**labels, "predictor": "model"}.items()):
            df.insert(0, k, v)
        rows.append(df)
    return rows


def shuffled_actions(batch: dict, precondition: int) -> dict:
    """The windows with the actions fed after the precondition (``a[P-1..]``) taken from the
    next episode (cyclically): the frames and the precondition's own actions stay."""
    action = batch["action"].clone()
    action[:, precondition - 1 :] = action[:, precondition - 1 :].roll(1, dims=0)
    return {**batch, "action": action}


def run_metrics(table: pd.DataFrame, floor: pd.DataFrame | None = None) -> dict[str, float]:
    """eval/{metric}_h{h} of the model at every horizon, each metric's mean over horizons and,
    given the floor run's table on the same episodes: eval/x_floor_h{h} (MSE / the floor's),
    eval/x_es_floor_h{h} (ES / the floor's samples') and eval/spread_h{h} (the spread ratio,
    spread / the posterior's)."""
    model = table[table["predictor"] == "model"].groupby(["metric", "horizon"])["value"].mean()
    # The raw spread E d(S, S') is logged as pair_distance: eval/spread_h{h} is the ratio.
    named = model.rename(index={"spread": "pair_distance"}, level="metric")
    out = {f"eval/{m}_h{h}": v for (m, h), v in named.items()}
    scored = (table["predictor"] == "model") & (table["metric"] == "mse")
    out["eval/episodes"] = float(table.loc[scored, "episode"].nunique())
    out.update({f"eval/{m}_mean": v for m, v in named.groupby(level="metric").mean().items()})
    if floor is not None:
        best = floor[floor["predictor"] == "model"].groupby(["metric", "horizon"])["value"].mean()
        ratios = {
            "x_floor": metrics.x_floor(model["mse"], best["mse"]),
            "x_es_floor": metrics.x_floor(model["es"], best["es"]),
            "spread": metrics.spread_ratio(model["spread"], best["spread"]),
        }
        for name, ratio in ratios.items():
            out.update({f"eval/{name}_h{h}": v for h, v in ratio.items()})
    return out
