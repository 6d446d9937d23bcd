"""Rule `rollouts`: collect one split of one env into a Zarr store.

Standalone: python scripts/rollouts.py --config config/config.yaml --env pong --split train OUT.zarr
"""

import argparse
import sys

from forward_models.data.collect import EnvSpec, collect


def main(env: dict, split: str, out: str, progress: bool = True) -> None:
    agent = env["agent"]
    spec = EnvSpec(
        env["id"],
        env["size"],
        env["kwargs"],
        env["max_episode_steps"],
        agent["kind"],
        agent["kwargs"],
    )
    s = env["splits"][split]
    collect(spec, out, s["episodes"], s["seed"], env["workers"], env["min_length"], progress)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        main(
            snakemake.params.env,
            snakemake.wildcards.split,
            snakemake.output.store,
            snakemake.params.progress,
        )
elif __name__ == "__main__":
    from forward_models.cli import load_yaml_config

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--env", required=True)
    ap.add_argument("--split", choices=["train", "test"], required=True)
    ap.add_argument("out")
    a = ap.parse_args()
    main(load_yaml_config(a.config).envs[a.env].model_dump(mode="json"), a.split, a.out)
