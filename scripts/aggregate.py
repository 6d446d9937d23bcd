"""Rule `aggregate`: every run's metrics table -> results/eval/summary.csv.

Standalone: python scripts/aggregate.py [--configfile ...]
"""

import pandas as pd
from _rule import run
from forward_models.leaderboard import summarize


def main(snakemake):
    tables = [pd.read_parquet(t) for t in snakemake.input.metrics]
    summarize(tables).to_csv(snakemake.output.summary, index=False)


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
