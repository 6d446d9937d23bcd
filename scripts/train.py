"""Rule `train`: train one (env, model, seed), tracked in MLflow; checkpoint, config and log.

A killed job resumes from ``progress.pt`` in its output folder (and continues its MLflow run).
Standalone: python scripts/train.py --env pong --model rnn_deconv --seed 0 [--configfile ...]
"""

import torch
from _rule import run
from forward_models import models
from forward_models.config import MlflowConfig
from forward_models.training import TrainJob, train_job


def main(snakemake):
    p = snakemake.params
    torch.set_num_threads(snakemake.threads)
    job = TrainJob(
        model=models.parse_config(p.model),
        seed=int(snakemake.wildcards.seed),
        mlflow=MlflowConfig.model_validate(p.mlflow),
        run_name=p.run_name,
        device=p.device,
        progress=p.progress,
        horizon=p.horizon,
        verify=p.verify,
    )
    train_job(snakemake.input.rollouts, job, dict(snakemake.output.items()))


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
