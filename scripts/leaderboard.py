"""Rule `leaderboard`: mean and 95% interval over seeds at chosen horizons (csv and markdown).

Standalone: python scripts/leaderboard.py [--configfile ...]
"""

from pathlib import Path

import pandas as pd
from _rule import run
from forward_models.leaderboard import leaderboard_markdown, leaderboards


def main(snakemake):
    board = leaderboards(pd.read_csv(snakemake.input.summary), snakemake.params.horizons)
    board.to_csv(snakemake.output.csv, index=False)
    Path(snakemake.output.markdown).write_text(leaderboard_markdown(board))
    print(Path(snakemake.output.markdown).read_text())


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
