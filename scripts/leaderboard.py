"""Rule `leaderboard`: mean and 95% interval over seeds at chosen horizons (csv and markdown)."""

import sys
from pathlib import Path

import pandas as pd
from forward_models.evaluation import leaderboard, leaderboard_markdown


def main(summary: str, horizons: list[int], csv_out: str, md_out: str) -> None:
    board = leaderboard(pd.read_csv(summary), horizons)
    board.to_csv(csv_out, index=False)
    Path(md_out).write_text(leaderboard_markdown(board))
    print(Path(md_out).read_text())


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        main(
            snakemake.input.summary,
            snakemake.params.horizons,
            snakemake.output.csv,
            snakemake.output.markdown,
        )
elif __name__ == "__main__":
    main(sys.argv[1], [1, 8, 16, 32], sys.argv[2], sys.argv[3])
