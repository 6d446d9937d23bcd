"""Rule `figure_error_vs_horizon`: open-loop error against horizon for every run.

Standalone: python scripts/figure_error.py [--configfile ...]
"""

import pandas as pd
from _rule import run
from forward_models.figures import error_vs_horizon


def main(snakemake):
    summary = pd.read_csv(snakemake.input.summary)
    error_vs_horizon(summary, snakemake.output.figure, metric="mse", style=snakemake.input.style)


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
