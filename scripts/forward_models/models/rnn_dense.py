"""RNN dense: the thesis' RNN core with an MLP encoder and an MLP renderer straight to pixels."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field
from torch import nn

from forward_models.model_config import RecurrentConfig
from forward_models.models.base import ForwardModel, register
from forward_models.models.layers import ACT, RecurrentCore


class RNNDenseConfig(RecurrentConfig):
    draws_pixels = True
    TINY = {"hidden": 8, "width": 16}

    arch: Literal["rnn_dense"] = "rnn_dense"
    width: int = Field(128, ge=1)
    """Hidden units of the MLP encoder and renderer."""


@register
class RNNDense(ForwardModel):
    Config = RNNDenseConfig

    def __init__(self, cfg: RNNDenseConfig, frame_shape, n_actions, action_dim: int = 0):
        super().__init__(cfg, frame_shape, n_actions, action_dim)
        pixels = math.prod(frame_shape)
        self.encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(pixels * cfg.precondition, cfg.width),
            nn.BatchNorm1d(cfg.width),
            nn.LeakyReLU(ACT),
            nn.Linear(cfg.width, cfg.hidden),
        )
        self.core = RecurrentCore(cfg, n_actions, action_dim)
        self.renderer = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.width),
            nn.LeakyReLU(ACT),
            nn.Linear(cfg.width, pixels),
            nn.Sigmoid(),
        )

    def rollout(self, context, actions):
        y = self.core(self.encoder(context), actions)
        return self.renderer(y).view(*y.shape[:2], *self.frame_shape)

    def init_state(self, context):
        return self.core.init_state(self.encoder(context))

    def step(self, state, action):
        y, state = self.core.step(state, action)
        return self.renderer(y).view(-1, *self.frame_shape), state
