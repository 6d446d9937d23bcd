"""One training loop for every family: models return ``(loss, logs)`` from ``loss(batch)``.

Resumable: every ``checkpoint_every`` steps the model, optimiser, samplers' and torch's RNG
states and the log so far go to ``progress.pt``; a rerun continues from there and ends with
the same weights as an uninterrupted run on the CPU. A non-finite loss stops training with an
error that names the step and keeps the last good progress checkpoint.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

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
from forward_models.model_config import ModelConfig, TrainConfig
from forward_models.models.base import ForwardModel

PROGRESS = "progress.pt"


class TrainingDiverged(RuntimeError):
    """Training stopped: the loss, a gradient, a parameter or a normalisation statistic became
    non-finite, or the gradient stayed exactly 0 while the loss did not."""


NonFiniteLossError = TrainingDiverged  # the name it had when only the loss was checked
STUCK_STEPS = 50  # consecutive steps of an exactly-zero gradient (loss not ~0) that stop training


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str = "auto"):
    """The training step's arithmetic (:attr:`TrainConfig.precision`) as a context manager."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_matmul_precision(device: torch.device, precision: str) -> None:
    """TF32 for CUDA matmuls and convs with ``tf32``; exact fp32 otherwise."""
    if device.type == "cuda":
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def compiled_loss(model: ForwardModel, mode: str):
    """``model.loss``, through ``torch.compile`` unless ``mode`` is ``none``."""
    return model.loss if mode == "none" else torch.compile(model.loss, mode=mode)


@torch.no_grad()
def validation_loss(model: ForwardModel, batches: list[dict], device, precision="auto") -> float:
    was_training = model.training
    model.eval()  # the thesis validated in train mode (BN/dropout live): not here
    losses = []
    for batch in batches:
        with autocast(device, precision):
            loss, _ = model.loss(_to(batch, device))
        losses.append(loss.item())
    model.train(was_training)
    return sum(losses) / len(losses)


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train(
    model: ForwardModel,
    train_data: WindowSampler,
    val_data: WindowSampler | None,
    cfg: TrainConfig,
    out_dir: str | Path,
    seed: int = 0,
    device: str = "auto",
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    probe: dict | None = None,
) -> pd.DataFrame:
    """Train ``model`` for ``cfg.steps`` steps (resuming from ``out_dir/progress.pt``); returns the log.

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
        return pd.DataFrame(columns=["step", "split", "metric", "value"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cfg.lr_factor(s))
    val_batches = _fixed_batches(val_data, cfg) if val_data is not None else []
    rows, step, clock = [], 0, [0.0, 0]  # clock: seconds and frames spent training
    ckpt_path = out_dir / PROGRESS
    run_config = progress_identity(model.cfg, seed)
    set_aside_stale_progress(out_dir, run_config)
    if ckpt_path.exists():
        step, rows, clock = _resume(ckpt_path, model, opt, sched, train_data, dev)

    def diverged(what: str, at: int) -> TrainingDiverged:
        last = torch.load(ckpt_path, weights_only=True)["step"] if ckpt_path.exists() else 0
        kept = (
            f"The last good checkpoint (step {last}) is kept in {ckpt_path}"
            if last
            else "No progress checkpoint had been written yet"
        )
        return TrainingDiverged(
            f"training diverged: {what} at step {at}, with lr {cfg.lr * cfg.lr_factor(at - 1):g} "
            f"in force; stopped. {kept}. Try a lower lr (now {cfg.lr:g}) or grad_clip (now "
            f"{cfg.grad_clip:g}); a changed config does not resume it (it is moved aside)."
        )

    def log(split: str, logs: dict[str, float]):
        rows.extend(
            {"step": step, "split": split, "metric": k, "value": v} for k, v in logs.items()
        )
        if on_log:
            on_log(step, {f"{split}/{k}": v for k, v in logs.items()})

    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, unit="step", mininterval=2)
    health, p = Health(dev), model.cfg.precondition
    set_matmul_precision(dev, cfg.precision)
    loss_fn = compiled_loss(model, cfg.compile)
    # Training time excludes validation and checkpoints (``aside``): error against compute.
    t0, aside, resumed = time.perf_counter(), 0.0, list(clock)
    frames = torch.zeros((), dtype=torch.long, device=dev)  # since this (re)start
    while step < cfg.steps:
        batch = _to(train_data.sample(cfg.batch_size), dev)
        with autocast(dev, cfg.precision):
            loss, logs = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        health.update(step + 1, loss.detach(), grad_norm)  # on the device: no wait here
        opt.step()
        sched.step()
        step += 1
        frames += batch["mask"][:, p:].sum()
        bar.update(1)
        due = step == cfg.steps or step % cfg.checkpoint_every == 0
        if step % cfg.log_every == 0 or due or (val_batches and step % cfg.val_every == 0):
            if why := health.problem():  # the one host sync, every log_every steps
                raise diverged(*why)
            seen, busy = int(frames), time.perf_counter() - t0 - aside
            clock = [resumed[0] + busy, resumed[1] + seen]
        if step % cfg.log_every == 0 or step == cfg.steps:
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
        tick = time.perf_counter()
        if val_batches and (step % cfg.val_every == 0 or step == cfg.steps):
            logs = {"loss": validation_loss(model, val_batches, dev, cfg.precision)}
            if probe is not None:
                logs |= {"open_loop_mse": open_loop_mse(model, probe, dev)}
                logs |= {"seconds": clock[0], "frames": float(clock[1])}
            log("val", logs)
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            if bad := non_finite(model):
                raise diverged(f"{bad} became non-finite", step)
            _save_progress(ckpt_path, model, opt, sched, train_data, step, rows, clock, run_config)
        aside += time.perf_counter() - tick
    bar.close()
    if bad := non_finite(model):
        raise diverged(f"{bad} became non-finite", step)
    model.eval()
    return pd.DataFrame(rows, columns=["step", "split", "metric", "value"])


def sampler(
    data, length: int, episodes, seed: int, device: torch.device, from_start: float = 0.0
) -> WindowSampler:
    """Training windows: gathered on the device when the store fits there (half its free
    memory, :func:`~forward_models.data.windows.fits_on_device`), else on the host and copied
    per batch. Both draw the same windows for the same seed."""
    if fits_on_device(data, device):
        return DeviceWindows(data, length, episodes, seed, device, from_start)
    return WindowSampler(data, length, episodes, seed, from_start)


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


def train_job(
    rollouts: str | Path,
    cfg: ModelConfig,
    seed: int,
    out: dict[str, str],
    mlflow: MlflowConfig,
    run_name: str,
    device: str = "auto",
    progress: bool = True,
    horizon: int = 32,
    verify: bool = False,
) -> None:
    """The train job: one model on one store and seed, tracked in MLflow; writes ``out``'s
    ``checkpoint``, ``config`` (the resolved config), ``train_log`` and ``run_id``. The
    open-loop error over ``horizon`` steps on a few validation episodes is logged as it trains;
    ``verify`` decodes the whole store first (:func:`~forward_models.data.zarr_store.verify_store`)."""
    out_dir = Path(out["checkpoint"]).parent
    data = open_rollouts(rollouts, verify)
    tcfg = cfg.train
    train_ids, val_ids = split_episodes(data.n_episodes, tcfg.val_fraction, seed)
    train_data = sampler(data, tcfg.seq_len, train_ids, seed, pick_device(device), tcfg.from_start)
    val_data = (
        WindowSampler(data, tcfg.seq_len, val_ids, seed, tcfg.from_start) if len(val_ids) else None
    )
    probe = probe_windows(data, val_ids, cfg.precondition, horizon)
    torch.manual_seed(seed)
    model = models.build(cfg, data.frame_shape, data.n_actions, data.action_dim)
    model.prepare(data)  # references see the training rollouts (mean frame, the floor's env)
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
        mlflow.tracking_uri, mlflow.experiment, run_name, out_dir, resumes, params, tags
    ) as run:
        Path(out["run_id"]).write_text(run.info.run_id)
        log = train(
            model,
            train_data,
            val_data,
            tcfg,
            out_dir,
            seed,
            device,
            on_log=lambda step, m: tracking.log_metrics(m, step),
            progress=progress,
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
    pred = predict(model, _to(probe, device), p)
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


class Health:
    """What would stop training, tracked on the device so that no step waits for it: the first
    step whose loss or gradient norm was non-finite, and runs of exactly-zero gradients while
    the loss is not ~0. :meth:`problem` reads it (one host sync) when the loop logs."""

    def __init__(self, device):
        zero = torch.zeros((), dtype=torch.long, device=device)
        self.bad_loss, self.bad_grad, self.zero_run, self.stuck = zero, zero, zero, zero
        self.loss = torch.zeros((), device=device)

    def update(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        loss, grad_norm = loss.float(), grad_norm.float()

        def first(at: torch.Tensor, now: torch.Tensor) -> torch.Tensor:
            return torch.where((at == 0) & now, step, at)

        self.bad_loss = first(self.bad_loss, ~torch.isfinite(loss))
        self.bad_grad = first(self.bad_grad, ~torch.isfinite(grad_norm))
        zero = (grad_norm == 0) & (loss > 1e-6)
        self.zero_run = torch.where(zero, self.zero_run + 1, 0)
        self.stuck = first(self.stuck, self.zero_run >= STUCK_STEPS)
        self.loss = torch.where(self.stuck == step, loss, self.loss)

    def problem(self) -> tuple[str, int] | None:
        """(what went wrong first, its step), or None."""
        bad_loss, bad_grad, stuck = (int(t) for t in (self.bad_loss, self.bad_grad, self.stuck))
        if bad_loss and (not bad_grad or bad_loss <= bad_grad):
            return "the training loss became non-finite", bad_loss
        if bad_grad:
            return "the gradient norm became non-finite", bad_grad
        if stuck:
            return (
                f"the gradient had been exactly 0 for {STUCK_STEPS} steps while the loss was "
                f"{float(self.loss):.4g} (saturated outputs or dead units learn nothing)",
                stuck,
            )
        return None


def non_finite(model: ForwardModel) -> str | None:
    """The first parameter or floating buffer (e.g. a BatchNorm running variance) holding a
    non-finite value, as ``"parameter NAME"``, or None."""
    for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in named:
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"{kind} {name}"
    return None


def progress_identity(cfg: ModelConfig, seed: int) -> dict:
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


def _save_progress(
    path: Path,
    model,
    opt,
    sched,
    data: WindowSampler,
    step: int,
    rows: list,
    clock: list,
    run_config: dict,
) -> None:
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


def _resume(path: Path, model, opt, sched, data: WindowSampler, dev) -> tuple[int, list, list]:
    ckpt = torch.load(path, map_location=dev, weights_only=True)
    model.load_state_dict(ckpt["state_dict"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["torch_rng"].cpu())
    data.rng.bit_generator.state = ckpt["sampler_rng"]
    rows = pd.DataFrame(ckpt["log"]).to_dict(orient="records") if ckpt["log"] else []
    print(f"resuming from {path} at step {ckpt['step']}")
    return int(ckpt["step"]), rows, list(ckpt.get("clock", [0.0, 0]))
