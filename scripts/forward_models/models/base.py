"""The one interface every forward model implements, its config base and the arch registry.

Alignment (one code path for training, evaluation and play): a window holds rows ``o[0..L-1]``
and actions ``a[0..L-1]``, where ``a[t]`` is taken at ``o[t]`` and leads to ``o[t+1]``. A model
is conditioned on the precondition ``o[0..P-1]``, then fed ``a[P-1..L-2]`` and predicts
``o[P..L-1]``: prediction ``i`` is the frame that follows action ``i``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class Strict(BaseModel):
    """Config base: unknown keys are errors; attribute docstrings become schema descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class TrainConfig(Strict):
    steps: int = Field(2000, ge=0)
    """Optimiser steps."""
    batch_size: int = Field(32, ge=1)
    """Windows per batch."""
    seq_len: int = Field(32, ge=2)
    """Rows per training window: the precondition plus the frames predicted after it."""
    lr: float = Field(1e-3, gt=0)
    """Adam learning rate."""
    lr_decay_every: int = Field(15000, ge=1)
    """Step decay as in the thesis: lr / (step // lr_decay_every + 1)."""
    grad_clip: float = Field(1.0, gt=0)
    """Clip the global gradient norm to this value."""
    loss: Literal["bce", "mse"] = "bce"
    """Per-pixel loss on [0, 1] frames, averaged over the real (unmasked) predicted steps."""
    val_fraction: float = Field(0.1, ge=0, lt=1)
    """Fraction of the train split's episodes held out for the validation loss."""
    val_every: int = Field(250, ge=1)
    """Steps between validation losses."""
    val_batches: int = Field(4, ge=1)
    """Batches per validation loss (fixed windows, the same every time)."""
    log_every: int = Field(25, ge=1)
    """Steps between logged training losses."""
    checkpoint_every: int = Field(250, ge=1)
    """Steps between resume checkpoints (a killed job continues from the last one)."""


class ModelConfig(Strict):
    """Fields every family shares. A family subclasses it with ``arch: Literal[...]``."""

    arch: str
    """Model family, a key of the registry (see ``forward_models.models.REGISTRY``)."""
    precondition: int = Field(3, ge=1)
    """P: frames the model sees before predicting open loop."""
    train: TrainConfig = TrainConfig()
    """Training budget and optimiser."""


class ForwardModel(nn.Module):
    """Action-conditioned video predictor.

    Subclasses set ``Config`` and implement :meth:`init_state` and :meth:`step`; the default
    :meth:`rollout` and :meth:`loss` are written in terms of them, and families override them
    where a whole-sequence pass is faster (it must agree with stepping; a test checks).
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(
        self,
        cfg: ModelConfig,
        frame_shape: tuple[int, int, int],
        n_actions: int,
        action_dim: int = 0,
    ):
        super().__init__()
        self.cfg, self.frame_shape = cfg, tuple(frame_shape)
        self.n_actions, self.action_dim = n_actions, action_dim

    # --- the interface ---------------------------------------------------------------------
    def init_state(self, context: torch.Tensor):
        """State after the precondition ``context`` (B, P, C, H, W) in [0, 1]."""
        raise NotImplementedError

    def step(self, state, action: torch.Tensor):
        """Apply ``action`` (B,) and return ``(next_frame (B, C, H, W), next_state)``."""
        raise NotImplementedError

    def rollout(self, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Open-loop prediction: one frame per action, (B, T, C, H, W)."""
        state, frames = self.init_state(context), []
        for t in range(actions.shape[1]):
            frame, state = self.step(state, actions[:, t])
            frames.append(frame)
        return torch.stack(frames, 1)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        context, actions, target, mask = split_window(batch, self.cfg.precondition)
        pred = self.rollout(context, actions)
        loss = masked_loss(pred, target, mask, self.cfg.train.loss)
        return loss, {"loss": loss.item()}

    def prepare(self, obs) -> None:
        """Hook: see the training frames ((N, H, W, C) uint8) once before training (baselines)."""

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())


def split_window(batch: dict[str, torch.Tensor], precondition: int):
    """(context, actions, targets, target mask) of a window, aligned as in the module doc."""
    obs, action, mask = batch["obs"], batch["action"], batch["mask"]
    p = precondition
    return obs[:, :p], action[:, p - 1 : -1], obs[:, p:], mask[:, p:]


def masked_loss(pred, target, mask, kind: str = "bce") -> torch.Tensor:
    """Per-pixel loss averaged over the steps where ``mask`` (B, T) is true."""
    if kind == "bce":
        per_px = F.binary_cross_entropy(
            pred.float().clamp(1e-6, 1 - 1e-6), target, reduction="none"
        )
    else:
        per_px = (pred.float() - target) ** 2
    per_step = per_px.flatten(2).mean(-1)
    w = mask.to(per_step.dtype)
    return (per_step * w).sum() / w.sum().clamp_min(1.0)


class ActionEncoder(nn.Module):
    """Embedding for discrete actions, a linear layer for continuous action vectors."""

    def __init__(self, n_actions: int, dim: int, action_dim: int = 0):
        super().__init__()
        self.discrete = n_actions > 0
        self.net = nn.Embedding(n_actions, dim) if self.discrete else nn.Linear(action_dim, dim)

    def forward(self, action: torch.Tensor) -> torch.Tensor:
        return self.net(action.long() if self.discrete else action.float())


REGISTRY: dict[str, type[ForwardModel]] = {}


def register(arch: str):
    """Class decorator: make a family buildable by its config's ``arch``."""

    def wrap(cls: type[ForwardModel]) -> type[ForwardModel]:
        if arch in REGISTRY:
            raise ValueError(f"model arch {arch!r} is registered twice")
        REGISTRY[arch] = cls
        return cls

    return wrap
