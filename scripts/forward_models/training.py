"""One training loop for every family: models return ``(loss, logs)`` from ``loss(batch)``.

:func:`train` reads top to bottom: a step, then :func:`due` decides what happens after it (log,
validate, checkpoint, stop) from the step count and the training clock. It stops at
``cfg.steps`` or, given a :class:`Budget`, after that many seconds of training (wall or CPU),
whichever comes first. Resumable (:mod:`forward_models.progress`): a rerun continues from the
last progress checkpoint and ends with the same weights as an uninterrupted run on the CPU. A
non-finite loss stops training (:mod:`forward_models.health`) with an error that names the
step and keeps the last good progress checkpoint. :func:`train_job` is the workflow's job
around it: the store, the samplers, MLflow and the outputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from forward_models import models, tracking
from forward_models.config import MlflowConfig
from forward_models.data.windows import (
    DeviceWindows,
    WindowSampler,
    fits_on_device,
    split_episodes,
)
from forward_models.data.zarr_store import open_rollouts
from forward_models.devices import (
    autocast,
    compiled_loss,
    pick_device,
    set_matmul_precision,
    to_device,
)
from forward_models.health import Health, TrainingDiverged, non_finite
from forward_models.model_config import ModelConfig, TrainConfig
from forward_models.models.base import ForwardModel
from forward_models.progress import (
    PROGRESS,
    last_step,
    progress_identity,
    resume,
    save_progress,
    set_aside_stale_progress,
)

COLUMNS = ["step", "split", "metric", "value"]


@dataclass(frozen=True)
class Budget:
    """Stop after ``seconds`` of training (validation and checkpoints excluded), counted on the
    ``wall`` clock or in this process's ``cpu`` seconds (all its threads: fair when runs share
    a machine). With a budget the cosine schedule runs over the seconds, not the steps.
    ``every`` (seconds) and ``on_clock`` add a hook called once the training clock has passed
    each multiple of ``every``, and when training stops: ``on_clock(model, step, seconds, frames)``,
    its time excluded too (the benchmarks' evaluations against compute)."""

    seconds: float = math.inf
    clock: Literal["wall", "cpu"] = "wall"
    every: float = math.inf
    on_clock: Callable[[ForwardModel, int, float, int], None] | None = None

    def now(self) -> float:
        return time.process_time() if self.clock == "cpu" else time.perf_counter()

    def next_hook(self, seconds: float) -> float:
        """The first multiple of ``every`` after ``seconds``."""
        return self.every * (math.floor(seconds / self.every) + 1)


@dataclass(frozen=True)
class Due:
    """What happens after a step."""

    log: bool
    validate: bool
    checkpoint: bool
    stop: bool
    hook: bool

    @property
    def sync(self) -> bool:  # the only host syncs: health check and clock read
        return self.log or self.validate or self.checkpoint


def due(
    step: int, seconds: float, cfg: TrainConfig, budget: Budget, validates: bool, hook_at: float
) -> Due:
    """The one place that decides, after ``step`` steps and ``seconds`` of training, whether to
    log, validate, write a progress checkpoint, call the budget's hook (due at ``hook_at``
    seconds) and stop."""
    stop = step >= cfg.steps or seconds >= budget.seconds
    return Due(
        log=step % cfg.log_every == 0 or stop,
        validate=validates and (step % cfg.val_every == 0 or stop),
        checkpoint=step % cfg.checkpoint_every == 0 and not stop,
        stop=stop,
        hook=budget.on_clock is not None and (stop or seconds >= hook_at),
    )


@torch.no_grad()
def validation_loss(model: ForwardModel, batches: list[dict], device, precision="auto") -> float:
    was_training = model.training
    model.eval()  # the thesis validated in train mode (BN/dropout live): not here
    losses = []
    for batch in batches:
        with autocast(device, precision):
            loss, _ = model.loss(to_device(batch, device))
        losses.append(loss.item())
    model.train(was_training)
    return sum(losses) / len(losses)


def train(
    model: ForwardModel,
    train_data: WindowSampler | None,
    val_data: WindowSampler | None,
    cfg: TrainConfig,
    out_dir: str | Path,
    seed: int = 0,
    device: str = "auto",
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    probe: dict | None = None,
    budget: Budget = Budget(),
) -> pd.DataFrame:
    """Train ``model`` for ``cfg.steps`` steps or ``budget`` (resuming from
    ``out_dir/progress.pt``); returns the log.

    With ``probe`` (fixed validation windows from episode starts, as evaluation picks them),
    every validation also logs the open-loop MSE on them against the training time and frames
    spent so far (``val/open_loop_mse``, ``val/seconds``, ``val/frames``): error against compute.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    torch.manual_seed(seed)
    model.to(dev).train()
    if not model.trainable:
        return pd.DataFrame(columns=COLUMNS)
    ckpt_path, run_config = out_dir / PROGRESS, progress_identity(model.cfg, seed)
    rows, step, clock = [], 0, [0.0, 0]  # clock: seconds and frames spent training
    spent = [0.0]  # training seconds so far, read by the schedule (a time budget's cosine)

    def lr_factor(s: int) -> float:
        if cfg.lr_schedule == "cosine" and math.isfinite(budget.seconds):
            return cfg.lr_factor(s, fraction=spent[0] / budget.seconds)
        return cfg.lr_factor(s)

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    val_batches = _fixed_batches(val_data, cfg) if val_data is not None else []
    set_aside_stale_progress(out_dir, run_config)
    if ckpt_path.exists():
        step, rows, clock = resume(ckpt_path, model, opt, sched, train_data, dev)

    def diverged(what: str, at: int) -> TrainingDiverged:
        last = last_step(ckpt_path)
        kept = (
            f"The last good checkpoint (step {last}) is kept in {ckpt_path}"
            if last
            else "No progress checkpoint had been written yet"
        )
        return TrainingDiverged(
            f"training diverged: {what} at step {at}, with lr {cfg.lr * lr_factor(at - 1):g} "
            f"in force; stopped. {kept}. Try a lower lr (now {cfg.lr:g}) or grad_clip (now "
            f"{cfg.grad_clip:g}); a changed config does not resume it (it is moved aside)."
        )

    def log(split: str, logs: dict[str, float]):
        rows.extend(
            {"step": step, "split": split, "metric": k, "value": v} for k, v in logs.items()
        )
        if on_log:
            on_log(step, {f"{split}/{k}": v for k, v in logs.items()})

    total = cfg.steps if not math.isfinite(budget.seconds) else None
    bar = tqdm(total=total, initial=step, disable=not progress, unit="step", mininterval=2)
    health, p = Health(dev), model.cfg.precondition
    set_matmul_precision(dev, cfg.precision)
    loss_fn = compiled_loss(model, cfg.compile)
    # Training time excludes validation, checkpoints and hooks (``aside``): error against compute.
    t0, aside, resumed, hook_at = budget.now(), 0.0, list(clock), budget.next_hook(clock[0])
    frames = torch.zeros((), dtype=torch.long, device=dev)  # since this (re)start
    stop = step >= cfg.steps
    while not stop:
        batch = to_device(train_data.sample(cfg.batch_size), dev)
        with autocast(dev, cfg.precision):
            loss, logs = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        health.update(step + 1, loss.detach(), grad_norm)  # on the device: no wait here
        opt.step()
        busy = budget.now() - t0 - aside
        spent[0] = resumed[0] + busy
        sched.step()
        step += 1
        frames += batch["mask"][:, p:].sum()
        bar.update(1)
        now = due(step, spent[0], cfg, budget, bool(val_batches), hook_at)
        stop = now.stop
        if now.sync:
            if why := health.problem():  # the one host sync, every log_every steps
                raise diverged(*why)
            seen = int(frames)
            clock = [spent[0], resumed[1] + seen]
        if now.log:
            fps = seen / busy
            train_logs = {k: float(v) for k, v in logs.items()}
            log(
                "train",
                {
                    **train_logs,
                    "grad_norm": float(grad_norm),
                    "lr": sched.get_last_lr()[0],
                    "frames_per_s": fps,
                },
            )
            bar.set_postfix(loss=f"{train_logs['loss']:.4f}", fps=f"{fps:.0f}")
        tick = budget.now()
        if now.validate:
            logs = {"loss": validation_loss(model, val_batches, dev, cfg.precision)}
            if probe is not None:
                logs |= {"open_loop_mse": open_loop_mse(model, probe, dev)}
                logs |= {"seconds": clock[0], "frames": float(clock[1])}
            log("val", logs)
        if now.checkpoint:
            if bad := non_finite(model):
                raise diverged(f"{bad} became non-finite", step)
            save_progress(ckpt_path, model, opt, sched, train_data, step, rows, clock, run_config)
        if now.hook:
            hook_at = budget.next_hook(spent[0])
            budget.on_clock(model, step, spent[0], resumed[1] + int(frames))
        aside += budget.now() - tick
    bar.close()
    if bad := non_finite(model):
        raise diverged(f"{bad} became non-finite", step)
    model.eval()
    return pd.DataFrame(rows, columns=COLUMNS)


def sampler(
    data,
    length: int,
    episodes,
    seed: int,
    device: torch.device,
    from_start: float = 0.0,
    to_end: float = 0.0,
) -> WindowSampler:
    """Training windows: gathered on the device when the store fits there (half its free
    memory, :func:`~forward_models.data.windows.fits_on_device`), else on the host and copied
    per batch. Both draw the same windows for the same seed."""
    if fits_on_device(data, device):
        return DeviceWindows(data, length, episodes, seed, device, from_start, to_end)
    return WindowSampler(data, length, episodes, seed, from_start, to_end)


PROBE_EPISODES = 16  # validation episodes whose open-loop error is tracked during training


def probe_windows(data, val_ids, precondition: int, horizon: int) -> dict | None:
    """Up to :data:`PROBE_EPISODES` validation episodes from their start, as evaluation uses
    test episodes (None when no validation episode is long enough)."""
    from forward_models.evaluation import eval_windows

    need = precondition + horizon
    long_enough = [i for i in val_ids if data.lengths[i] >= need]
    if not long_enough:
        return None
    return eval_windows(data, precondition, horizon, PROBE_EPISODES, among=long_enough)


@dataclass(frozen=True)
class TrainJob:
    """One train job of the workflow: which model and seed, and how it is run and tracked."""

    model: ModelConfig
    seed: int
    mlflow: MlflowConfig
    run_name: str
    device: str = "auto"
    progress: bool = True
    horizon: int = 32
    """Open-loop steps of the validation probe (the evaluation's horizon)."""
    verify: bool = False
    """Decode the whole store first (:func:`~forward_models.data.zarr_store.verify_store`)."""


def train_job(rollouts: str | Path, job: TrainJob, out: dict[str, str]) -> None:
    """The train job: one model on one store and seed, tracked in MLflow; writes ``out``'s
    ``checkpoint``, ``config`` (the resolved config), ``train_log`` and ``run_id``. The
    open-loop error over ``job.horizon`` steps on a few validation episodes is logged as it
    trains."""
    cfg, seed, out_dir = job.model, job.seed, Path(out["checkpoint"]).parent
    data = open_rollouts(rollouts, job.verify)
    tcfg = cfg.train
    train_ids, val_ids = split_episodes(data.n_episodes, tcfg.val_fraction, seed)
    dev = pick_device(job.device)
    torch.manual_seed(seed)
    model = models.build(cfg, data.frame_shape, data.n_actions, data.action_dim)
    model.prepare(data)  # references see the training rollouts (mean frame, the floor's env)
    train_data = val_data = probe = None  # a reference learns nothing: no windows to read
    if model.trainable:
        shares = tcfg.from_start, tcfg.to_end
        train_data = sampler(data, tcfg.seq_len, train_ids, seed, dev, *shares)
        if len(val_ids):
            val_data = WindowSampler(data, tcfg.seq_len, val_ids, seed, *shares)
        probe = probe_windows(data, val_ids, cfg.precondition, job.horizon)
    resolved = {
        "model": cfg.model_dump(mode="json"),
        "seed": seed,
        "rollouts": str(rollouts),
        "env": data.attrs["env"],
    }
    params = {**resolved, "parameters": sum(p.numel() for p in model.parameters())}
    # Before the MLflow run is chosen: a stale progress.pt must not resume the old run either.
    set_aside_stale_progress(out_dir, progress_identity(cfg, seed))
    tags = {"git_commit": tracking.git_commit(), "config_hash": tracking.config_hash(resolved)}
    resumes = (out_dir / PROGRESS).exists()
    with tracking.training_run(
        job.mlflow.tracking_uri, job.mlflow.experiment, job.run_name, out_dir, resumes, params, tags
    ) as run:
        Path(out["run_id"]).write_text(run.info.run_id)
        log = train(
            model,
            train_data,
            val_data,
            tcfg,
            out_dir,
            seed,
            job.device,
            on_log=lambda step, m: tracking.log_metrics(m, step),
            progress=job.progress,
            probe=probe,
        )
        models.save(model.cpu(), out["checkpoint"], step=tcfg.steps, env=data.attrs["env"])
        Path(out["config"]).write_text(yaml.safe_dump(resolved, sort_keys=False))
        log.to_csv(out["train_log"], index=False)
        tracking.log_artifacts([out["checkpoint"], out["config"], out["train_log"]])
    (out_dir / PROGRESS).unlink(missing_ok=True)


@torch.no_grad()
def open_loop_mse(model: ForwardModel, probe: dict, device) -> float:
    """Mean per-pixel MSE of the open-loop predictions on ``probe`` (all horizons)."""
    from forward_models.evaluation import predict

    was_training = model.training
    p = model.cfg.precondition
    pred = predict(model, to_device(probe, device), p)
    model.train(was_training)
    return float(((pred - probe["obs"][:, p:].to(pred.device)) ** 2).mean())


def _fixed_batches(data: WindowSampler, cfg: TrainConfig) -> list[dict]:
    """The same validation windows every time, drawn with their own generator."""
    keep = data.rng
    data.rng = np.random.default_rng(12345)
    try:
        return [data.sample(cfg.batch_size) for _ in range(cfg.val_batches)]
    finally:
        data.rng = keep
