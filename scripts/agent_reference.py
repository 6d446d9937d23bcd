"""Rule `agent_reference`: a reference agent on the real env's scoring episodes: ``random``,
``real`` (the same PPO, trained for the same steps in the real env: the ceiling) or
``scripted`` (the env's scripted agent).

Standalone: python scripts/agent_reference.py --env pong --reference real --seed 0 [--configfile ...]
"""

import json
import time
from pathlib import Path

import torch
from _rule import run
from forward_models import envs, policies
from forward_models.config import PolicyConfig


def main(snakemake):
    o, p, wc = snakemake.output, snakemake.params, snakemake.wildcards
    torch.set_num_threads(snakemake.threads)
    cfg, seed = PolicyConfig.model_validate(p.ppo), int(wc.seed)
    spec = {k: p.env[k] for k in ("id", "size", "kwargs", "max_episode_steps")}
    start = time.process_time()
    if wc.reference == "real":
        ppo = policies.train_ppo(policies.real_vector(spec, cfg.n_envs), cfg, seed)
        returns = policies.score_ppo(ppo, spec, cfg)
    elif wc.reference == "scripted":
        kind, options = envs.scripted_agent(spec["id"])
        returns = policies.score_agent(kind, spec, cfg, **options)
    else:
        returns = policies.score_agent("random", spec, cfg)
    seconds = time.process_time() - start
    scores = policies.scores_record(
        returns, cfg, seconds, wc.env, f"reference-{wc.reference}", seed
    )
    print(json.dumps(scores))
    Path(o.scores).write_text(json.dumps(scores, indent=2))


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
