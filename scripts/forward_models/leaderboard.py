"""Aggregate every run's metrics (``summary.csv``) and rank models over seeds (the leaderboard)."""

from __future__ import annotations

import numpy as np
import pandas as pd

RUN_KEYS = ["env", "model", "seed", "reference", "predictor", "horizon", "metric"]


def summarize(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean, std and count over episodes for every env x model x seed x predictor x horizon x metric."""
    df = pd.concat(tables, ignore_index=True)
    out = df.groupby(RUN_KEYS, sort=True)["value"].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "episodes"})


def leaderboard(summary: pd.DataFrame, horizons: list[int], metric: str = "mse") -> pd.DataFrame:
    """Mean over seeds and 95% t-interval half-width of every model's open-loop ``metric`` at
    ``horizons``, per env. With one seed the interval is undefined (NaN)."""
    from scipy import stats

    df = summary[
        (summary["metric"] == metric)
        & summary["horizon"].isin(horizons)
        & (summary["predictor"] == "model")
    ]
    g = df.groupby(["env", "model", "reference", "horizon"])["mean"]
    out = g.agg(["mean", "std", "count"]).reset_index().rename(columns={"count": "seeds"})
    t = stats.t.ppf(0.975, (out["seeds"] - 1).clip(lower=1))
    out["ci95"] = np.where(out["seeds"] > 1, t * out["std"] / np.sqrt(out["seeds"]), np.nan)
    return out.drop(columns="std")


def leaderboard_markdown(board: pd.DataFrame, metric: str = "mse") -> str:
    """One table per env: models sorted by their mean over the horizons, best first;
    references are marked."""
    parts = []
    for env, df in board.groupby("env"):
        cell = df.assign(
            text=[
                f"{m:.4f}" + ("" if np.isnan(c) else f" ± {c:.4f}")
                for m, c in zip(df["mean"], df["ci95"], strict=True)
            ]
        )
        wide = cell.pivot(index="model", columns="horizon", values="text")
        wide.columns = [f"h={h}" for h in wide.columns]
        rows = df.groupby("model").agg(
            order=("mean", "mean"), seeds=("seeds", "max"), reference=("reference", "first")
        )
        table = wide.join(rows).sort_values("order")
        table.insert(0, "seeds", table.pop("seeds"))
        table.index = [f"{m} (reference)" if r else m for m, r in table["reference"].items()]
        table = table.drop(columns=["order", "reference"]).rename_axis("model")
        title = f"## {env}: open-loop {metric.upper()} (mean ± 95% interval over seeds)"
        parts.append(
            f"{title}\n\n{table.to_markdown(colalign=['left'] + ['right'] * table.shape[1], disable_numparse=True)}\n"
        )
    return "\n".join(parts)
