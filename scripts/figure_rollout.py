"""Rule `figure_rollout_strip`: truth / prediction / |difference| of a test episode (PNG and GIF)."""

import sys
from pathlib import Path

import numpy as np
from forward_models import tracking
from forward_models.figures import rollout_gif, rollout_strip


def main(examples: str, style: str, out: str, gif: str | None = None) -> None:
    ex = dict(np.load(examples))
    rollout_strip(ex, out, style=style)
    if gif:
        rollout_gif(ex["truth"][0], ex["prediction"][0], gif)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        main(
            snakemake.input.examples,
            snakemake.input.style,
            snakemake.output.figure,
            snakemake.output.gif,
        )
        run_id = Path(snakemake.input.run_id).read_text().strip()
        uri = snakemake.params.mlflow["tracking_uri"]
        tracking.log_to_run(
            uri, run_id, artifacts=[snakemake.output.figure, snakemake.output.gif], folder="figures"
        )
elif __name__ == "__main__":
    main(*sys.argv[1:4])
