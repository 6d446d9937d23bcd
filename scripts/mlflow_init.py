"""Rule `mlflow_init`: create the tracking store and the experiment once, before training fans out.

Several processes creating a fresh SQLite store at once corrupt it, hence this single job.
Standalone: python scripts/mlflow_init.py [--configfile ...]
"""

import json

from _rule import run
from forward_models import tracking
from forward_models.config import MlflowConfig


def main(snakemake):
    cfg = MlflowConfig.model_validate(snakemake.params.mlflow)
    exp_id = tracking.init_experiment(cfg.tracking_uri, cfg.experiment)
    with open(snakemake.output.experiment, "w") as f:
        json.dump({**cfg.model_dump(), "experiment_id": exp_id}, f, indent=2)
    print(f"MLflow experiment {cfg.experiment!r} (id {exp_id}) in {cfg.tracking_uri}")


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
