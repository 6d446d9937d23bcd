"""Rule `figure_training`: training curves of every run, and parameter count against error."""

import sys
from pathlib import Path

import pandas as pd
from forward_models import models
from forward_models.figures import params_vs_error, training_curves


def run_labels(path: str) -> dict:
    """results/{stage}/{env}/{model}/seed{seed}/file -> labels."""
    env, model, seed = Path(path).parts[-4:-1]
    return {"env": env, "model": model, "seed": int(seed.removeprefix("seed"))}


def main(
    logs: list[str],
    checkpoints: list[str],
    summary: str,
    style: str,
    curves_out: str,
    params_out: str,
):
    frames = [pd.read_csv(p).assign(**run_labels(p)) for p in logs]
    training_curves(pd.concat(frames, ignore_index=True), curves_out, style=style)
    s = pd.read_csv(summary)
    err = (
        s[(s.metric == "mse") & (s.predictor == "model")]
        .groupby(["env", "model", "seed"])["mean"]
        .mean()
    )
    rows = []
    for ckpt in checkpoints:
        labels = run_labels(ckpt)
        n = sum(p.numel() for p in models.load(ckpt).parameters())
        rows.append(
            {
                **labels,
                "parameters": max(n, 1),
                "mse": err[labels["env"], labels["model"], labels["seed"]],
            }
        )
    params_vs_error(pd.DataFrame(rows), params_out, style=style)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        i, o = snakemake.input, snakemake.output
        main(list(i.logs), list(i.checkpoints), i.summary, i.style, o.curves, o.params)
