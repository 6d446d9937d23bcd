"""The one interface every forward model implements, its config base and the arch registry.

Alignment (one code path for training, evaluation and play): a window holds rows ``o[0..L-1]``
and actions ``a[0..L-1]``, where ``a[t]`` is taken at ``o[t]`` and leads to ``o[t+1]``. A model
is conditioned on the precondition ``o[0..P-1]``, then fed ``a[P-1..L-2]`` and predicts
``o[P..L-1]``: prediction ``i`` is the frame that follows action ``i``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from forward_models.families import arch_of
from forward_models.model_config import ModelConfig, TrainConfig


class ForwardModel(nn.Module):
    """Action-conditioned video predictor.

    Subclasses set ``Config`` and implement :meth:`init_state` and :meth:`step`; the default
    :meth:`rollout` and :meth:`loss` are written in terms of them, and families override them
    where a whole-sequence pass is faster (it must agree with stepping; a test checks).
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    replays_env: ClassVar[bool] = False
    """Predicts by replaying the rollouts' env (the floor): only whole windows from an
    episode's start (:meth:`rollout_window`), no stepping."""

    def __init__(
        self,
        cfg: ModelConfig,
        frame_shape: tuple[int, int, int],
        n_actions: int,
        action_dim: int = 0,
    ):
        super().__init__()
        _, h, w = frame_shape
        if why := cfg.frame_problem(h) or cfg.frame_problem(w):  # the config's own check
            raise ValueError(f"{cfg.arch} {why}, got a {h}x{w} frame")
        self.cfg, self.frame_shape = cfg, tuple(frame_shape)
        self.n_actions, self.action_dim = n_actions, action_dim

    # --- the interface ---------------------------------------------------------------------
    def init_state(self, context: torch.Tensor):
        """State after the precondition ``context`` (B, P, C, H, W) in [0, 1]."""
        raise NotImplementedError

    def step(self, state, action: torch.Tensor):
        """Apply ``action`` (B,) and return ``(next_frame (B, C, H, W), next_state)``."""
        raise NotImplementedError

    def rollout(self, context: torch.Tensor, actions: torch.Tensor, generator=None):
        """Open-loop prediction: one frame per action, (B, T, C, H, W). A stochastic family
        (``Config.stochastic``) draws one future with ``generator``; the others take none."""
        draw = self.draw(generator)
        state, frames = self.init_state(context, **draw), []
        for t in range(actions.shape[1]):
            frame, state = self.step(state, actions[:, t], **draw)
            frames.append(frame)
        return torch.stack(frames, 1)

    def draw(self, generator) -> dict:
        """The keyword arguments that pass ``generator`` to :meth:`init_state`, :meth:`step`
        and :meth:`rollout`: none for a deterministic family, whose signatures take none."""
        return {"generator": generator} if type(self.cfg).stochastic else {}

    def rollout_window(
        self, batch: dict[str, torch.Tensor], precondition: int, generator=None
    ) -> torch.Tensor:
        """Open-loop predictions of a window's frames after its precondition (evaluation's
        entry point); a model that needs more of the window than :meth:`rollout` gets (the
        floor: the precondition's actions) overrides it."""
        context, actions, _, _ = split_window(batch, precondition)
        return self.rollout(context, actions, **self.draw(generator))

    def sample_window(
        self, batch: dict[str, torch.Tensor], precondition: int, k: int, generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(point, samples)``: ``k`` futures per window, (B, k, T, C, H, W) in [0, 1], drawn
        with ``generator`` as one batch of B x k rollouts, and the point prediction scored by
        MSE, their mean (the floor: its exact posterior mean)."""
        rows = {key: v.repeat_interleave(k, 0) for key, v in batch.items()}
        out = self.rollout_window(rows, precondition, generator).float().clamp(0, 1)
        out = out.view(len(batch["obs"]), k, *out.shape[1:])
        return out.mean(1), out

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, logs)``: the logs are detached tensors, read on the host only when the
        training loop logs (a ``.item()`` per step would wait for the device every step)."""
        context, actions, target, mask = split_window(batch, self.cfg.precondition)
        pred = self.rollout(context, actions)
        loss = window_loss(pred, context, target, mask, self.cfg.train)
        return loss, {"loss": loss.detach()}

    def one_step(self, context, actions, target) -> torch.Tensor | None:
        """Teacher-forced predictions (every step reads the true previous frame), for families
        that read frames; None for the others, which have no one-step error."""
        return None

    def prepare(self, rollouts) -> None:
        """Hook: see the training rollouts (a :class:`~forward_models.data.zarr_store.Rollouts`)
        once before training (references: the mean frame, the floor's env)."""

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())


def split_window(batch: dict[str, torch.Tensor], precondition: int):
    """(context, actions, targets, target mask) of a window, aligned as in the module doc."""
    obs, action, mask = batch["obs"], batch["action"], batch["mask"]
    p = precondition
    return obs[:, :p], action[:, p - 1 : -1], obs[:, p:], mask[:, p:]


def window_loss(pred, context, target, mask, cfg: TrainConfig) -> torch.Tensor:
    """The training loss of a window's predictions, as ``cfg`` (``loss``, ``step_weights``) says."""
    weights = copy_last_weights(context, target, mask) if cfg.step_weights == "copy_last" else None
    return masked_loss(pred, target, mask, cfg.loss, weights)


# A step's weight is 1 / (copy-last's MSE there + COPY_FLOOR x its mean over the steps): a step
# that copying gets (nearly) right cannot take all the weight. Chosen on a Pendulum dev split
# (h=1 MSE / copy-last's, 2 seeds: 0.02 -> 0.87, 0.1 -> 0.91, 0.005 -> 0.95; uniform 1.13).
COPY_FLOOR = 0.02


def copy_last_weights(context, target, mask) -> torch.Tensor:
    """Per-step loss weights (T,), inversely proportional to copy-last-frame's MSE at each step
    of the batch, with mean 1 over the steps that have a real target. Computed on the device
    without a host sync; a window where nothing moves gets equal weights."""
    with torch.no_grad():
        copy = (target.float() - context[:, -1:].float()).pow(2).flatten(2).mean(-1)  # (B, T)
        m = mask.to(copy.dtype)
        real = (m.sum(0) > 0).to(copy.dtype)
        per_step = (copy * m).sum(0) / m.sum(0).clamp_min(1.0)
        mean = (per_step * real).sum() / real.sum().clamp_min(1.0)
        w = 1.0 / (per_step + COPY_FLOOR * mean + 1e-8)
        return w / ((w * real).sum() / real.sum().clamp_min(1.0)).clamp_min(1e-12)


def masked_loss(pred, target, mask, kind: str = "bce", weights=None) -> torch.Tensor:
    """Per-pixel loss averaged over the steps where ``mask`` (B, T) is true, each step scaled by
    ``weights`` (T,) when given."""
    if kind == "bce":
        # Written out rather than F.binary_cross_entropy, which stops on a NaN input (a device
        # assert on CUDA): a non-finite step must reach the training loop's divergence check.
        p = pred.float().clamp(1e-6, 1 - 1e-6)
        per_px = -(target * torch.log(p) + (1 - target) * torch.log1p(-p))
    else:
        per_px = (pred.float() - target) ** 2
    per_step = per_px.flatten(2).mean(-1)
    w = mask.to(per_step.dtype)
    scaled = per_step if weights is None else per_step * weights
    return (scaled * w).sum() / w.sum().clamp_min(1.0)


class ActionEncoder(nn.Module):
    """Embedding for discrete actions, a linear layer for continuous action vectors."""

    def __init__(self, n_actions: int, dim: int, action_dim: int = 0):
        super().__init__()
        self.discrete = n_actions > 0
        self.net = nn.Embedding(n_actions, dim) if self.discrete else nn.Linear(action_dim, dim)

    def forward(self, action: torch.Tensor) -> torch.Tensor:
        return self.net(action.long() if self.discrete else action.float())


REGISTRY: dict[str, type[ForwardModel]] = {}


def register(cls: type[ForwardModel]) -> type[ForwardModel]:
    """Class decorator: make a family buildable by its config's ``arch`` literal."""
    arch = arch_of(cls.Config)
    if arch in REGISTRY:
        raise ValueError(f"model arch {arch!r} is registered twice")
    REGISTRY[arch] = cls
    return cls
