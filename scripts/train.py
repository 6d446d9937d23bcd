"""Rule `train`: train one (env, model, seed), log it to MLflow, write checkpoint, config and log.

A killed job resumes from ``progress.pt`` in its output folder (and continues its MLflow run).
Standalone: python scripts/train.py --config config/config.yaml --env pong --model rnn_deconv --seed 0
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from forward_models import figures, models, tracking
from forward_models.data.windows import WindowSampler, split_episodes
from forward_models.data.zarr_store import open_rollouts
from forward_models.evaluation import predict
from forward_models.training import PROGRESS, train


def main(rollouts, model_cfg, mlflow, run_name, seed, out, threads=2, device="auto", progress=True):
    torch.set_num_threads(threads)
    out_dir = Path(out["checkpoint"]).parent
    data = open_rollouts(rollouts)
    cfg = models.parse_config(model_cfg)
    tcfg = cfg.train
    train_ids, val_ids = split_episodes(data.n_episodes, tcfg.val_fraction, seed)
    train_data = WindowSampler(data, tcfg.seq_len, train_ids, seed=seed)
    val_data = WindowSampler(data, tcfg.seq_len, val_ids, seed=seed) if len(val_ids) else None
    torch.manual_seed(seed)
    model = models.build(cfg, data.frame_shape, data.n_actions, data.action_dim)
    model.prepare(data.array("obs"))  # baselines such as mean_frame see the training frames
    resolved = {
        "model": cfg.model_dump(mode="json"),
        "seed": seed,
        "rollouts": str(rollouts),
        "env": data.attrs["env"],
    }
    # Snakemake deletes a failed job's outputs, so the id a resumed job continues is kept beside
    # progress.pt in a file that is not an output.
    resume_file = out_dir / ".mlflow_run_id"
    run_id = (
        resume_file.read_text().strip()
        if resume_file.exists() and (out_dir / PROGRESS).exists()
        else None
    )
    tags = {"git_commit": tracking.git_commit(), "config_hash": tracking.config_hash(resolved)}
    with tracking.start_run(
        mlflow["tracking_uri"], mlflow["experiment"], run_name, run_id, tags
    ) as run:
        resume_file.write_text(run.info.run_id)
        Path(out["run_id"]).write_text(run.info.run_id)
        import mlflow as mlf

        if run_id is None:
            mlf.log_params(tracking.flatten(resolved))
            mlf.log_param("parameters", sum(p.numel() for p in model.parameters()))
        log = train(
            model,
            train_data,
            val_data,
            tcfg,
            out_dir,
            seed,
            device,
            on_log=lambda step, m: mlf.log_metrics(m, step=step),
            progress=progress,
        )
        models.save(model.cpu(), out["checkpoint"], step=tcfg.steps, env=data.attrs["env"])
        Path(out["config"]).write_text(yaml.safe_dump(resolved, sort_keys=False))
        log.to_csv(out["train_log"], index=False)
        sample = (val_data or train_data).gather(np.array([0]), np.array([0]))
        pred = predict(model, sample, cfg.precondition)
        to_u8 = lambda x: (x[0].clamp(0, 1) * 255).byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
        figures.rollout_gif(to_u8(sample["obs"][:, cfg.precondition :]), to_u8(pred), out["gif"])
        for key in ("checkpoint", "config", "train_log", "gif"):
            mlf.log_artifact(out[key])
    (out_dir / PROGRESS).unlink(missing_ok=True)
    resume_file.unlink(missing_ok=True)


if "snakemake" in globals():
    with open(snakemake.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        p = snakemake.params
        main(
            snakemake.input.rollouts,
            p.model,
            p.mlflow,
            p.run_name,
            int(snakemake.wildcards.seed),
            dict(snakemake.output.items()),
            snakemake.threads,
            p.device,
            p.progress,
        )
elif __name__ == "__main__":
    from forward_models.cli import load_yaml_config

    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--env", "--model"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cfg = load_yaml_config(a.config)
    d = Path(f"results/models/{a.env}/{a.model}/seed{a.seed}")
    d.mkdir(parents=True, exist_ok=True)
    out = {
        k: str(d / f)
        for k, f in [
            ("checkpoint", "checkpoint.pt"),
            ("config", "config.yaml"),
            ("train_log", "train_log.csv"),
            ("gif", "rollout.gif"),
            ("run_id", "mlflow_run_id"),
        ]
    }
    main(
        f"results/rollouts/{a.env}/train.zarr",
        cfg.models[a.model].model_dump(mode="json"),
        cfg.mlflow.model_dump(),
        f"{a.env}/{a.model}/seed{a.seed}",
        a.seed,
        out,
        device=cfg.device,
    )
