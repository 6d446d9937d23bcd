"""Rule `figure_samples`: a stochastic run's sampled futures of the first test episode beside the
exact posterior's (on an env with a floor) and the truth (PNG), and a few of them side by side
(GIF), also attached to the run in MLflow.

Standalone: python scripts/figure_samples.py --env pong --model rssm --seed 0
"""

from pathlib import Path

import numpy as np
from _rule import run
from forward_models import tracking
from forward_models.config import MlflowConfig
from forward_models.figures import same_episodes, samples_gif, samples_sheet


def main(snakemake):
    i, o = snakemake.input, snakemake.output
    ex = dict(np.load(i.examples))
    posterior = same_episodes(ex, dict(np.load(i.floor)))["samples"] if i.get("floor") else None
    samples_sheet(ex, o.figure, posterior, style=i.style)
    samples_gif(ex["truth"][0], ex["samples"][:4], o.gif)
    uri = MlflowConfig.model_validate(snakemake.params.mlflow).tracking_uri
    run_id = Path(i.run_id).read_text().strip()
    tracking.log_to_run(uri, run_id, artifacts=[o.figure, o.gif], folder="figures")


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
