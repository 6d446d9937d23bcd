"""Rule `evaluate`: one run's open-loop error against horizon on the test split.

Standalone: python scripts/evaluate.py --env pong --model rnn_deconv --seed 0 [--configfile ...]
"""

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _rule import run
from forward_models import models, outcome, tracking
from forward_models.config import EvaluationConfig, MlflowConfig
from forward_models.data.zarr_store import open_rollouts
from forward_models.devices import pick_device
from forward_models.evaluation import evaluate, run_metrics


def main(snakemake):
    i, o, p, wc = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards
    ev = EvaluationConfig.model_validate(p.evaluation)
    torch.set_num_threads(snakemake.threads)
    model = models.load(i.checkpoint, map_location=pick_device(p.device))
    labels = {"env": wc.env, "model": wc.model, "seed": int(wc.seed)}
    ends = outcome.load(i.outcome)
    horizons = [h for h in ev.leaderboard if h <= ev.horizon] or [ev.horizon]
    test = open_rollouts(i.rollouts, p.verify)
    table, examples = evaluate(
        model, test, ev.horizon, ev.episodes, labels, ev.samples, ends, horizons
    )
    table.to_parquet(o.metrics, index=False)
    np.savez_compressed(o.examples, **examples)
    mean = table[table["metric"] == "mse"].groupby("predictor")["value"].mean()
    print("mean MSE over horizons:", mean.to_dict())
    # On the training run, so `mlflow ui` compares models by their test error.
    uri = MlflowConfig.model_validate(p.mlflow).tracking_uri
    run_id = Path(i.run_id).read_text().strip()
    floor = pd.read_parquet(i.floor) if i.get("floor") else None
    tracking.log_to_run(uri, run_id, run_metrics(table, floor), [o.metrics], "eval")


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
