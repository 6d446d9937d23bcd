"""The agents' table: every agent's real-env return and normalised score, over seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd


def agents_table(records: list[dict]) -> pd.DataFrame:
    """Per env and agent: the real-env return and the normalised score (each seed's against its
    own references; 0 random, 1 the real-env PPO), mean over seeds and 95% t-interval."""
    from scipy import stats

    df = pd.DataFrame(records)
    refs = df["agent"].str.startswith("reference-")
    ref = df[refs].set_index(["env", "seed", "agent"])["mean"]
    lo = ref.xs("reference-random", level="agent").rename("lo")
    hi = ref.xs("reference-real", level="agent").rename("hi")
    df = df.join(lo, on=["env", "seed"]).join(hi, on=["env", "seed"])
    gap = (df.pop("hi") - df["lo"]).where(lambda g: g != 0)  # no gap: no normalised score
    df["normalised"] = (df["mean"] - df.pop("lo")) / gap
    out = df.groupby(["env", "agent"]).agg(
        seeds=("seed", "nunique"),
        episodes=("episodes", "min"),
        ppo_steps=("ppo_steps", "max"),
        cpu_minutes=("cpu_seconds", lambda s: s.mean() / 60),
        return_mean=("mean", "mean"),
        return_std=("mean", "std"),
        normalised_mean=("normalised", "mean"),
        normalised_std=("normalised", "std"),
    )
    t = stats.t.ppf(0.975, (out["seeds"] - 1).clip(lower=1))
    for name in ("return", "normalised"):
        half = t * out.pop(f"{name}_std") / np.sqrt(out["seeds"])
        out[f"{name}_ci95"] = np.where(out["seeds"] > 1, half, np.nan)
    out["reference"] = refs.groupby([df["env"], df["agent"]]).first()
    # a real-env reference's own score is 0 or 1 by definition: its interval is the return's
    return out.reset_index()


def agents_markdown(table: pd.DataFrame) -> str:
    """Per env: every agent's real-env return and normalised score, best first."""

    def cell(m, c, fmt):
        if np.isnan(m):
            return "–"
        return fmt.format(m) + ("" if np.isnan(c) else f" ± {fmt.format(c)}")

    parts = []
    for env, df in table.groupby("env"):
        df = df.sort_values(["normalised_mean", "return_mean"], ascending=False)
        # returns of a few units (CubeCrash's, -1 to ~2) need two decimals, Pong's hundreds one
        ret = "{:.1f}" if df["return_mean"].abs().max() >= 10 else "{:.2f}"
        body = pd.DataFrame(
            {
                "seeds": df["seeds"].astype(str).values,
                "real-env return": [
                    cell(m, c, ret)
                    for m, c in zip(df["return_mean"], df["return_ci95"], strict=True)
                ],
                "normalised score": [
                    cell(m, c, "{:.2f}")
                    for m, c in zip(df["normalised_mean"], df["normalised_ci95"], strict=True)
                ],
                "episodes": df["episodes"].astype(str).values,
                "PPO steps": [
                    "" if a.endswith(("random", "scripted")) else f"{s:,}"
                    for a, s in zip(df["agent"], df["ppo_steps"], strict=True)
                ],
                "CPU min": [f"{m:.1f}" for m in df["cpu_minutes"]],
            },
            index=[
                a.removeprefix("reference-") + " (reference)" if r else a
                for a, r in zip(df["agent"], df["reference"], strict=True)
            ],
        ).rename_axis("agent")
        text = body.to_markdown(
            colalign=["left"] + ["right"] * body.shape[1], disable_numparse=True
        )
        parts.append(
            f"## {env}: agents trained in each model, scored in the real env\n\n"
            "Normalised score: (R - R_random) / (R_real - R_random), each seed against its own "
            "references (random: 0, PPO trained in the real env for the same steps: 1); mean ± "
            f"95% interval over seeds.\n\n{text}\n"
        )
    return "\n".join(parts)
