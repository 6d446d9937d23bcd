"""Resumable training: the progress checkpoint (model, optimiser, scheduler, RNG states, the log
and the clock so far), written atomically, and set aside when the config it was made with
changed."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from forward_models import models, tracking

PROGRESS = "progress.pt"


def progress_identity(cfg, seed: int) -> dict:
    """What a progress checkpoint must have been made with to be resumed."""
    return {"model": cfg.model_dump(mode="json"), "seed": seed}


def set_aside_stale_progress(out_dir: str | Path, run_config: dict) -> Path | None:
    """A progress checkpoint made with another config is not resumed: it is moved aside (kept,
    renamed) and the log says which keys changed. Returns where it went, or None."""
    path = Path(out_dir) / PROGRESS
    if not path.exists():
        return None
    old = torch.load(path, map_location="cpu", weights_only=True).get("run_config")
    if old == run_config:
        return None
    before, now = tracking.flatten(old or {}), tracking.flatten(run_config)
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    aside = path.with_name(f"progress.stale-{time.strftime('%Y%m%dT%H%M%S')}.pt")
    path.replace(aside)
    print(
        f"{path} was made with another config (changed: {', '.join(changed)}); "
        f"moved it aside to {aside.name} and training starts from step 0"
    )
    return aside


def save_progress(path: Path, model, opt, sched, data, step: int, rows, clock, run_config) -> None:
    tmp = path.with_suffix(".tmp")
    models.save(
        model,
        tmp,
        step=step,
        optimizer=opt.state_dict(),
        scheduler=sched.state_dict(),
        torch_rng=torch.get_rng_state(),
        sampler_rng=data.rng.bit_generator.state,
        log=pd.DataFrame(rows).to_dict(orient="list") if rows else {},
        clock=clock,
        run_config=run_config,
    )
    tmp.replace(path)  # atomic: a kill mid-write leaves the previous checkpoint intact


def resume(path: Path, model, opt, sched, data, dev) -> tuple[int, list, list]:
    """Restore a progress checkpoint; returns its step, log rows and clock."""
    ckpt = torch.load(path, map_location=dev, weights_only=True)
    model.load_state_dict(ckpt["state_dict"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["torch_rng"].cpu())
    data.rng.bit_generator.state = ckpt["sampler_rng"]
    rows = pd.DataFrame(ckpt["log"]).to_dict(orient="records") if ckpt["log"] else []
    print(f"resuming from {path} at step {ckpt['step']}")
    return int(ckpt["step"]), rows, list(ckpt.get("clock", [0.0, 0]))


def last_step(path: Path) -> int:
    """The step a progress checkpoint holds, 0 if there is none."""
    return torch.load(path, weights_only=True)["step"] if path.exists() else 0
