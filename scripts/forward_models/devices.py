"""Where and in what arithmetic a model trains: the device, autocast, TF32 and compilation."""

from __future__ import annotations

import contextlib

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when there is a GPU, else the CPU; any other name as torch spells it."""
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


def compiled_loss(model, mode: str):
    """``model.loss``, through ``torch.compile`` unless ``mode`` is ``none``."""
    return model.loss if mode == "none" else torch.compile(model.loss, mode=mode)


def to_device(batch: dict, device) -> dict:
    """A batch of tensors on ``device`` (copies from pinned memory overlap the step)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
