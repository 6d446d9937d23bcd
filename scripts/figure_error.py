"""Rule `figure_error_vs_horizon`: open-loop MSE and the energy score of sampled futures against
horizon for every run, each with its floor's unreachable region.

Standalone: python scripts/figure_error.py [--configfile ...]
"""

import pandas as pd
from _rule import run
from forward_models.figures import error_vs_horizon


def main(snakemake):
    summary = pd.read_csv(snakemake.input.summary)
    o, style = snakemake.output, snakemake.input.style
    error_vs_horizon(summary, o.figure, metric="mse", style=style)
    error_vs_horizon(summary, o.es, metric="es", style=style)


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
