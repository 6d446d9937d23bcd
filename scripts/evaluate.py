"""Rule `evaluate`: open-loop error against horizon on the test split, model vs copy-last-frame.

Standalone: python scripts/evaluate.py CHECKPOINT TEST.zarr TRAIN.zarr METRICS.parquet EXAMPLES.npz
"""

import sys
from pathlib import Path

import numpy as np
import torch
from forward_models import models, tracking
from forward_models.data.zarr_store import open_rollouts
from forward_models.evaluation import evaluate
from forward_models.training import pick_device


def main(
    checkpoint,
    rollouts,
    train,
    horizon,
    episodes,
    labels,
    metrics_out,
    examples_out,
    threads=2,
    device="auto",
    mlflow=None,
    run_id=None,
):
    torch.set_num_threads(threads)
    model = models.load(checkpoint, map_location=pick_device(device))
    train_obs = open_rollouts(train).array("obs")  # the mean-frame baseline's training frames
    table, examples = evaluate(model, open_rollouts(rollouts), horizon, episodes, labels, train_obs)
    table.to_parquet(metrics_out, index=False)
    np.savez_compressed(examples_out, **examples)
    mean = table[table["metric"] == "mse"].groupby("predictor")["value"].mean()
    print("mean MSE over horizons:", mean.to_dict())
    if mlflow and run_id:  # on the training run, so `mlflow ui` compares models by test error
        tracking.log_to_run(
            mlflow["tracking_uri"], run_id, run_metrics(table), [metrics_out], "eval"
        )


def run_metrics(table) -> dict[str, float]:
    """eval/{metric}_h{h} of the model at every horizon, and each metric's mean over horizons."""
    model = table[table["predictor"] == "model"].groupby(["metric", "horizon"])["value"].mean()
    out = {f"eval/{m}_h{h}": v for (m, h), v in model.items()}
    out.update({f"eval/{m}_mean": v for m, v in model.groupby(level="metric").mean().items()})
    return out


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        wc, ev = snakemake.wildcards, snakemake.params.evaluation
        main(
            snakemake.input.checkpoint,
            snakemake.input.rollouts,
            snakemake.input.train,
            ev["horizon"],
            ev["episodes"],
            {"env": wc.env, "model": wc.model, "seed": int(wc.seed)},
            snakemake.output.metrics,
            snakemake.output.examples,
            snakemake.threads,
            snakemake.params.device,
            snakemake.params.mlflow,
            Path(snakemake.input.run_id).read_text().strip(),
        )
elif __name__ == "__main__":
    ckpt, store, train, metrics, examples = sys.argv[1:6]
    main(ckpt, store, train, 32, 100, {"env": "?", "model": "?", "seed": 0}, metrics, examples)
