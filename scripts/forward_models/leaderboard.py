"""Aggregate every run's metrics (``summary.csv``) and rank models over seeds (the leaderboard)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forward_models import metrics

RUN_KEYS = [
    "env", "model", "precondition", "seed", "reference", "floor", "predictor", "horizon", "metric",
]  # fmt: skip


def summarize(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean, std and count over episodes for every env x model x seed x predictor x horizon x metric."""
    df = pd.concat(tables, ignore_index=True)
    out = df.groupby(RUN_KEYS, sort=True)["value"].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "episodes"})


def leaderboard(summary: pd.DataFrame, horizons: list[int], metric: str = "mse") -> pd.DataFrame:
    """Mean over seeds and 95% t-interval half-width of every model's open-loop ``metric`` at
    ``horizons``, per env. With one seed the interval is undefined (NaN)."""
    from scipy import stats

    rows = summary[(summary["metric"] == metric) & summary["horizon"].isin(horizons)]
    df = rows[rows["predictor"] == "model"]
    keys = ["env", "model", "precondition", "reference", "floor", "horizon"]
    # episodes: the fewest any seed was scored on (below what was asked when few are long enough)
    out = (
        df.groupby(keys)
        .agg(
            mean=("mean", "mean"),
            std=("mean", "std"),
            seeds=("mean", "count"),
            episodes=("episodes", "min"),
        )
        .reset_index()
    )
    t = stats.t.ppf(0.975, (out["seeds"] - 1).clip(lower=1))
    out["ci95"] = np.where(out["seeds"] > 1, t * out["std"] / np.sqrt(out["seeds"]), np.nan)
    # Distance to the floor at the model's own precondition, on the same frames, where the env
    # has one (NaN elsewhere: never invented).
    on = ["env", "precondition", "horizon"]
    best = out[out["floor"]].groupby(on)["mean"].mean().rename("floor_mean")
    out = out.join(best, on=on)
    out["x_floor"] = metrics.x_floor(out["mean"], out.pop("floor_mean"))
    out["db_above_floor"] = metrics.db_above_floor(out["x_floor"])
    # Controllability: how much worse the model gets on another episode's actions.
    keys = ["env", "model", "horizon"]
    runs = rows.pivot_table(index=[*keys, "seed"], columns="predictor", values="mean")
    if "model_shuffled_actions" in runs:
        delta = (runs["model_shuffled_actions"] - runs["model"]).groupby(level=keys).mean()
        out = out.join(delta.rename("delta_shuffled"), on=keys)
    else:
        out["delta_shuffled"] = np.nan
    out["metric"] = metric
    return out.drop(columns="std")


def leaderboards(summary: pd.DataFrame, horizons: list[int]) -> pd.DataFrame:
    """The MSE leaderboard and, where the summary has sample scores, the energy score's, whose
    ``x_floor`` is against the floor's posterior samples (x ES floor) and whose
    ``spread_ratio`` is the model's spread over the posterior's (1: calibrated, 0: a point
    predictor), one ``metric`` column apart."""
    boards = [leaderboard(summary, horizons, "mse")]
    if (summary["metric"] == "es").any():
        es = leaderboard(summary, horizons, "es")
        spread = leaderboard(summary, horizons, "spread")
        on = ["env", "model", "horizon"]
        boards.append(es.join(spread.set_index(on)["x_floor"].rename("spread_ratio"), on=on))
    if (summary["metric"] == "end_hit").any():  # a recall: no ratio to the floor's, no delta
        ends = leaderboard(summary, horizons, "end_hit")
        boards.append(ends.assign(x_floor=np.nan, db_above_floor=np.nan, delta_shuffled=np.nan))
    return pd.concat(boards, ignore_index=True)


TITLES = {
    "mse": "open-loop MSE (mean ± 95% interval over seeds)",
    "es": "energy score of sampled futures (RMS distance; mean ± 95% interval over seeds)",
    "end_hit": "end recall from the model's own frames: of the test episodes that end, the "
    "share whose last h steps, rolled out open loop, the reward and end model ends within 2 "
    "steps of the true end (higher is better; mean ± 95% interval over seeds)",
}


def leaderboard_markdown(board: pd.DataFrame) -> str:
    """Per env, one table per metric (MSE, then the energy score where scored): models sorted by
    their mean over the horizons, best first; references are marked; where the env has a floor,
    each horizon also as a multiple of it (and dB above; for the energy score against the
    floor's posterior samples, with the spread ratio beside it); last, in the MSE table, the
    controllability: the mean over the horizons shown of how much the error grows when the
    model is fed another episode's actions (0: it ignores its actions)."""
    if "metric" not in board:
        board = board.assign(metric="mse")
    parts = []
    for (env, metric), df in board.groupby(["env", "metric"], sort=False):
        parts.append(_table(df, TITLES.get(metric, metric), env, metric))
    return "\n".join(parts)


def _table(df: pd.DataFrame, title: str, env: str, metric: str) -> str:
    sampled, recall = metric == "es", metric == "end_hit"
    digits = 2 if recall else 4
    floor_name = " x ES floor" if sampled else " x floor"
    cells = {
        "": [
            f"{m:.{digits}f}" + ("" if np.isnan(c) else f" ± {c:.{digits}f}")
            for m, c in zip(df["mean"], df["ci95"], strict=True)
        ],
        floor_name: [
            f"{x:.2f}x ({d:+.1f} dB)"
            for x, d in zip(df["x_floor"], df["db_above_floor"], strict=True)
        ],
    }
    if sampled:
        cells[" spread"] = [f"{r:.2f}" for r in df["spread_ratio"]]
    if df["x_floor"].isna().all():
        del cells[floor_name]
        cells.pop(" spread", None)
    wide = pd.concat(
        [
            df.assign(text=text)
            .pivot(index="model", columns="horizon", values="text")
            .rename(columns=lambda h, suffix=suffix: f"h={h}{suffix}")
            for suffix, text in cells.items()
        ],
        axis=1,
    )
    rows = df.groupby("model").agg(
        order=("mean", "mean"),
        seeds=("seeds", "max"),
        episodes=("episodes", "min"),
        precondition=("precondition", "first"),
        reference=("reference", "first"),
        delta=("delta_shuffled", "mean"),
    )
    delta = rows.pop("delta")
    if metric == "mse":  # controllability (the shuffled run draws no samples, ends no episode)
        rows["Δ shuffled actions"] = [f"{d:+.4f}" for d in delta]
    table = wide.join(rows).sort_values("order", ascending=not recall)
    table.insert(0, "episodes", table.pop("episodes").astype(int).astype(str))
    table.insert(0, "P", table.pop("precondition").astype(int).astype(str))
    table.insert(0, "seeds", table.pop("seeds"))
    table.index = [f"{m} (reference)" if r else m for m, r in table["reference"].items()]
    table = table.drop(columns=["order", "reference"]).rename_axis("model")
    align = ["left"] + ["right"] * table.shape[1]
    body = table.to_markdown(colalign=align, disable_numparse=True)
    return f"## {env}: {title}\n\n{body}\n"


def headline(summary: pd.DataFrame, horizons: list[int], metric: str = "mse") -> str:
    """The README's results table, per env: every model's open-loop ``metric`` (mean over
    seeds) at ``horizons``, its mean over every horizon evaluated, and that mean as a multiple
    of the floor's where the env has one; the floor first, then best first, the best learned
    value of each column in bold. Generated, never copied: ``forward-models results-table``."""
    rows = summary[(summary["predictor"] == "model") & (summary["metric"] == metric)]
    if "precondition" not in rows:  # a summary from before preconditions were recorded
        rows = rows.assign(precondition=0)
    index = ["model", "precondition", "reference", "floor"]
    runs = rows.groupby(["env", *index, "horizon"])["mean"].mean()
    seeds = rows.groupby(["env", "model"])["seed"].nunique()
    parts = []
    for env, df in runs.reset_index().groupby("env"):
        wide = df.pivot_table(index=index, columns="horizon", values="mean")
        top = int(wide.columns.max())
        mean = f"mean h=1-{top}"
        table = wide[[h for h in horizons if h in wide.columns]].copy()
        table.columns = [f"h={h}" for h in table.columns]
        table[mean] = wide.mean(axis=1)
        table = table.reset_index()
        # Against the floor at the model's own precondition, where the env has one.
        floors = table[table["floor"]].groupby("precondition")[mean].mean()
        if len(floors):
            table["x floor (mean)"] = metrics.x_floor(
                table[mean], table["precondition"].map(floors)
            )
        table = table.sort_values(["floor", mean], ascending=[False, True])
        learned = table[~table["reference"]]
        cells = pd.DataFrame(index=table.index)
        for col in table.columns[len(index) :]:
            fmt = "{:.2f}" if col.startswith("x floor") else "{:.4f}"
            best = learned[col].min() if len(learned) else np.nan
            cells[col] = [
                f"**{fmt.format(v)}**" if v == best and not ref else fmt.format(v)
                for v, ref in zip(table[col], table["reference"], strict=True)
            ]
        names = [
            f"*{m}* (best achievable)" if fl else f"{m} (reference)" if ref else m
            for m, ref, fl in zip(table["model"], table["reference"], table["floor"], strict=True)
        ]
        cells.insert(0, "seeds", [str(seeds[(env, m)]) for m in table["model"]])
        cells.index = names
        body = cells.rename_axis("model").to_markdown(
            colalign=["left"] + ["right"] * cells.shape[1], disable_numparse=True
        )
        parts.append(f"## {env}: open-loop {metric.upper()}, mean over seeds\n\n{body}\n")
    return "\n".join(parts)
