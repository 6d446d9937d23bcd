"""Rule `figure_training`: training curves of every run, open-loop error against training time,
and parameter count against error.

Standalone: python scripts/figure_training.py [--configfile ...]
"""

from pathlib import Path

import pandas as pd
from _rule import run
from forward_models import models
from forward_models.figures import error_vs_compute, params_vs_error, training_curves


def run_labels(path: str) -> dict:
    """results/{stage}/{env}/{model}/seed{seed}/file -> labels."""
    env, model, seed = Path(path).parts[-4:-1]
    return {"env": env, "model": model, "seed": int(seed.removeprefix("seed"))}


def main(snakemake):
    i, o, style = snakemake.input, snakemake.output, snakemake.input.style
    logs = [pd.read_csv(p).assign(**run_labels(p)) for p in i.logs]
    logs_all = pd.concat(logs, ignore_index=True)
    training_curves(logs_all, o.curves, style=style)
    s = pd.read_csv(i.summary)
    error_vs_compute(logs_all, s, o.compute, style=style)
    err = (
        s[(s.metric == "mse") & (s.predictor == "model")]
        .groupby(["env", "model", "seed"])["mean"]
        .mean()
    )
    rows = []
    for ckpt in i.checkpoints:
        labels = run_labels(ckpt)
        n = sum(p.numel() for p in models.load(ckpt).parameters())
        mse = err[labels["env"], labels["model"], labels["seed"]]
        rows.append({**labels, "parameters": max(n, 1), "mse": mse})
    params_vs_error(pd.DataFrame(rows), o.params, style=style)


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
