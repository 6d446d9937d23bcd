"""Reference predictors with the forward-model interface; they have nothing to learn."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from forward_models.model_config import ModelConfig
from forward_models.models.base import ForwardModel, register


class CopyLastConfig(ModelConfig):
    reference = True

    arch: Literal["copy_last"] = "copy_last"


@register
class CopyLast(ForwardModel):
    """Predicts that nothing moves: every future frame is the last precondition frame."""

    Config = CopyLastConfig

    def __init__(self, cfg, frame_shape, n_actions, action_dim: int = 0):
        super().__init__(cfg, frame_shape, n_actions, action_dim)

    def init_state(self, context):
        return context[:, -1]

    def step(self, state, action):
        return state, state

    def rollout(self, context, actions):
        return context[:, -1:].expand(-1, actions.shape[1], *context.shape[2:])


class MeanFrameConfig(ModelConfig):
    reference = True

    arch: Literal["mean_frame"] = "mean_frame"


@register
class MeanFrame(ForwardModel):
    """Predicts the mean training frame at every step, whatever happens."""

    Config = MeanFrameConfig

    def __init__(self, cfg, frame_shape, n_actions, action_dim: int = 0):
        super().__init__(cfg, frame_shape, n_actions, action_dim)
        self.register_buffer("mean", torch.full(tuple(frame_shape), 0.5))

    def prepare(self, rollouts) -> None:
        obs = rollouts.array("obs")
        mean = torch.zeros(self.frame_shape, dtype=torch.float64)
        n = obs.shape[0]
        for i in range(0, n, 4096):  # in blocks: a store may not fit in memory as floats
            block = torch.from_numpy(np.asarray(obs[i : i + 4096])).permute(0, 3, 1, 2)
            mean += block.double().sum(0) / 255.0
        self.mean.copy_((mean / n).float())

    def init_state(self, context):
        return context.shape[0]

    def step(self, state, action):
        return self.mean.expand(state, *self.frame_shape), state

    def rollout(self, context, actions):
        return self.mean.expand(context.shape[0], actions.shape[1], *self.frame_shape)
