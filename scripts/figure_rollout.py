"""Rule `figure_rollout_strip`: truth / prediction / |difference| rows for one test episode."""

import sys

import numpy as np
from forward_models.figures import rollout_strip


def main(examples: str, style: str, out: str) -> None:
    rollout_strip(dict(np.load(examples)), out, style=style)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        main(snakemake.input.examples, snakemake.input.style, snakemake.output.figure)
elif __name__ == "__main__":
    main(*sys.argv[1:4])
