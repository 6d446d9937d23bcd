"""Rule `agents_table`: every agent's real-env scores -> results/agents/agents.{csv,md} and the
figure of normalised scores.

Standalone: python scripts/agents_table.py [--configfile ...]
"""

import json
from pathlib import Path

from _rule import run
from forward_models.agent_scores import agents_markdown, agents_table
from forward_models.figures import agents_scores


def main(snakemake):
    o = snakemake.output
    table = agents_table([json.loads(Path(f).read_text()) for f in snakemake.input.scores])
    table.to_csv(o.csv, index=False)
    Path(o.markdown).write_text(agents_markdown(table))
    agents_scores(table, o.figure, style=snakemake.input.style)


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
