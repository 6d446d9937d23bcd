"""Rule `figure_rollout_strip`: truth / prediction / |difference| of a test episode (PNG and GIF),
also attached to the run in MLflow. On an env with a floor, the strip also shows the floor's
prediction of the same episode: how sharp the best possible prediction is at each step.

Standalone: python scripts/figure_rollout.py --env pong --model rnn_deconv --seed 0
"""

from pathlib import Path

import numpy as np
from _rule import run
from forward_models import tracking
from forward_models.config import MlflowConfig
from forward_models.figures import rollout_gif, rollout_strip, same_episodes


def main(snakemake):
    i, o = snakemake.input, snakemake.output
    ex = dict(np.load(i.examples))
    if i.get("floor"):
        ex["floor"] = same_episodes(ex, dict(np.load(i.floor)))["prediction"]
    rollout_strip(ex, o.figure, style=i.style)
    rollout_gif(ex["truth"][0], ex["prediction"][0], o.gif)
    uri = MlflowConfig.model_validate(snakemake.params.mlflow).tracking_uri
    run_id = Path(i.run_id).read_text().strip()
    tracking.log_to_run(uri, run_id, artifacts=[o.figure, o.gif], folder="figures")


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
