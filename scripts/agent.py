"""Rule `agent`: PPO trained in one model's dreams (its env's reward and end model giving them
rewards and ends), then scored on the real env's scoring episodes, and normalised against the
same seed's references, ``(R - R_random) / (R_real - R_random)``; the first scoring episode as
a GIF beside the model's dream of it under the same actions. MLflow: ``agent/return``,
``agent/normalised`` on the model's training run.

Standalone: python scripts/agent.py --env pong --model conv_gru_residual --seed 0 [--configfile ...]
"""

import json
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from _rule import run
from forward_models import policies, tracking
from forward_models.config import MlflowConfig, PolicyConfig
from forward_models.dream import Dreams, DreamVector, env_spec


def main(snakemake):
    i, o, p, wc = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards
    torch.set_num_threads(snakemake.threads)
    cfg = PolicyConfig.model_validate(p.ppo)
    seed, spec = int(wc.seed), env_spec(i.checkpoint)
    start = time.process_time()
    ppo = policies.train_ppo(DreamVector(i.checkpoint, cfg.n_envs, i.outcome), cfg, seed)
    seconds = time.process_time() - start
    returns = policies.score_ppo(ppo, spec, cfg)
    scores = policies.scores_record(returns, cfg, seconds, wc.env, wc.model, seed)
    refs = {name: json.loads(Path(i[name]).read_text())["returns"] for name in ("random", "real")}
    scores["normalised"] = policies.normalised(returns, refs["random"], refs["real"])
    print(json.dumps(scores))
    Path(o.scores).write_text(json.dumps(scores, indent=2))
    clip = policies.record(ppo, spec, cfg, Dreams(i.checkpoint, 1, i.outcome))
    imageio.mimsave(o.gif, list(clip), duration=1000 / 15, loop=0)
    metrics = {
        "agent/return": float(np.mean(returns)),
        "agent/normalised": scores["normalised"],
        "agent/train_seconds": seconds,
    }
    uri = MlflowConfig.model_validate(p.mlflow).tracking_uri
    run_id = Path(i.run_id).read_text().strip()
    tracking.log_to_run(uri, run_id, metrics, [o.scores, o.gif], "agent")


if __name__ == "__main__":
    run(main, globals().get("snakemake"))
