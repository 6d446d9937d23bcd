"""Frame transformer dense: no recurrence; the last P frames and the action give the next frame.

An MLP reads the last P frames (after dropout), its code is joined with the action embedding,
and a second MLP draws the next frame. Autoregressive over the horizon, in training too.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from forward_models.model_config import FrameFedConfig
from forward_models.models.base import ActionEncoder, register
from forward_models.models.frame_fed import FrameFed
from forward_models.models.layers import ACT


class FrameTransformerDenseConfig(FrameFedConfig):
    draws_pixels = True
    TINY = {"hidden": 16}

    arch: Literal["frame_transformer_dense"] = "frame_transformer_dense"
    hidden: int = Field(256, ge=1)
    """Size of the frame code and of the decoder's hidden layer."""
    embed: int = Field(32, ge=1)
    """Action embedding size E."""
    dropout: float = Field(0.65, ge=0, lt=1)
    """Dropout on the input frames in training (the thesis used 0.65)."""


@register
class FrameTransformerDense(FrameFed):
    Config = FrameTransformerDenseConfig

    def __init__(
        self, cfg: FrameTransformerDenseConfig, frame_shape, n_actions, action_dim: int = 0
    ):
        super().__init__(cfg, frame_shape, n_actions, action_dim)
        pixels = math.prod(frame_shape)
        self.encoder = nn.Sequential(
            nn.Dropout(cfg.dropout),
            nn.Linear(pixels * cfg.precondition, cfg.hidden),
            nn.LeakyReLU(ACT),
        )
        self.embed = ActionEncoder(n_actions, cfg.embed, action_dim)
        self.decoder = nn.Sequential(
            nn.Linear(cfg.hidden + cfg.embed, cfg.hidden),
            nn.LeakyReLU(ACT),
            nn.Linear(cfg.hidden, pixels),
        )

    def init_state(self, context):
        return {"frames": context[:, :-1], "frame": context[:, -1]}

    def step(self, state, action):
        frames = torch.cat([state["frames"], state["frame"][:, None]], 1)
        code = self.encoder(frames.flatten(1))
        frame = torch.sigmoid(self.decoder(torch.cat([code, self.embed(action)], 1))).view(
            -1, *self.frame_shape
        )
        return frame, {"frames": frames[:, 1:], "frame": frame}
