"""Rule `aggregate`: every run's metrics table -> results/eval/summary.csv."""

import sys

import pandas as pd
from forward_models.evaluation import summarize


def main(tables: list[str], out: str) -> None:
    summarize([pd.read_parquet(t) for t in tables]).to_csv(out, index=False)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        main(list(snakemake.input.metrics), snakemake.output.summary)
elif __name__ == "__main__":
    main(sys.argv[1:-1], sys.argv[-1])
