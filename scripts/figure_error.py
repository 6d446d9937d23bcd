"""Rule `figure_error_vs_horizon`: open-loop error against horizon for every run."""

import sys

import pandas as pd
from forward_models.figures import error_vs_horizon


def main(summary: str, style: str, out: str) -> None:
    error_vs_horizon(pd.read_csv(summary), out, metric="mse", style=style)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        main(snakemake.input.summary, snakemake.input.style, snakemake.output.figure)
elif __name__ == "__main__":
    main(*sys.argv[1:4])
