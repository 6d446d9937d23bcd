"""Rule `rollouts`: collect one split of one env into a Zarr store.

Standalone: python scripts/rollouts.py --env pong --split train [--configfile ...]
"""

from _rule import run
from forward_models.config import EnvConfig
from forward_models.data.collect import collect


def main(snakemake):
    env = EnvConfig.model_validate(snakemake.params.env)
    split = env.splits[snakemake.wildcards.split]
    out = snakemake.output.store
    collect(
        env.source,
        out,
        split.episodes,
        split.seed,
        env.workers,
        env.min_length,
        snakemake.params.progress,
    )


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
