"""Rule `mlflow_init`: create the tracking store and the experiment once, before training fans out.

Several processes creating a fresh SQLite store at once corrupt it, hence this single job.
"""

import json
import sys

from forward_models import tracking


def main(mlflow: dict, out: str) -> None:
    exp_id = tracking.init_experiment(mlflow["tracking_uri"], mlflow["experiment"])
    with open(out, "w") as f:
        json.dump({**mlflow, "experiment_id": exp_id}, f, indent=2)
    print(f"MLflow experiment {mlflow['experiment']!r} (id {exp_id}) in {mlflow['tracking_uri']}")


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        main(snakemake.params.mlflow, snakemake.output.experiment)
