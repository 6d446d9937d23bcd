"""Rule `outcome`: one env's reward and episode-end model, fit on the training split and scored
on the test split's true frames (reward error, end precision and recall within +-1 step).

Standalone: python scripts/outcome.py --env pong --seed 0 [--configfile ...]
"""

import json

import torch
from _rule import run
from forward_models import outcome
from forward_models.config import OutcomeConfig
from forward_models.data.zarr_store import open_rollouts


def main(snakemake):
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    torch.set_num_threads(snakemake.threads)
    train = open_rollouts(i.train)
    model = outcome.train_outcome(
        train, OutcomeConfig.model_validate(p.outcome), int(snakemake.wildcards.seed)
    )
    outcome.save(model, o.model, env=train.attrs["env"])
    scores = outcome.score_true_frames(model, open_rollouts(i.test))
    print("on the test split's true frames:", scores)
    with open(o.scores, "w") as f:
        json.dump(scores, f, indent=2)


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
