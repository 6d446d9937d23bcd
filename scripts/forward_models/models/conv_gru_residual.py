"""Residual convolutional GRU: this project's own family, built to beat the thesis' models.

Why: in a pixel world most of the next frame *is* the current frame; the thesis' RNN models
redraw everything from a small vector, so open-loop errors grow as the drawing blurs. Here a
convolutional GRU keeps a spatial state (where things are and how they move) at a quarter of the
frame's resolution, conditioned on the action broadcast over the map, and predicts a correction
in logit space to the frame it reads: ``next = sigmoid(gain * (2 * frame - 1) + delta)``. Copying
is free, so capacity goes to what moves. It is fed its own predictions (open loop) in training
too, so training matches evaluation and play.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from forward_models.models.base import ActionEncoder, register
from forward_models.models.frame_fed import FrameFed, FrameFedConfig
from forward_models.models.layers import ACT


class ConvGRUCell(nn.Module):
    def __init__(self, c_in: int, hidden: int, k: int = 3):
        super().__init__()
        self.gates = nn.Conv2d(c_in + hidden, 2 * hidden, k, padding=k // 2)
        self.cand = nn.Conv2d(c_in + hidden, hidden, k, padding=k // 2)

    def forward(self, x, h):
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        n = torch.tanh(self.cand(torch.cat([x, r * h], 1)))
        return (1 - z) * h + z * n


class ConvGRUResidualConfig(FrameFedConfig):
    arch: Literal["conv_gru_residual"] = "conv_gru_residual"
    channels: int = Field(32, ge=1)
    """Channels of the encoder/decoder feature maps."""
    hidden: int = Field(64, ge=1)
    """Channels of the convolutional GRU state (at a quarter of the frame's resolution)."""
    embed: int = Field(16, ge=1)
    """Action embedding size, broadcast over the state map."""


@register("conv_gru_residual")
class ConvGRUResidual(FrameFed):
    Config = ConvGRUResidualConfig

    def __init__(self, cfg: ConvGRUResidualConfig, frame_shape, n_actions, action_dim: int = 0):
        super().__init__(cfg, frame_shape, n_actions, action_dim)
        c, h, w = frame_shape
        if h % 4 or w % 4:
            raise ValueError(f"conv_gru_residual needs frame sides divisible by 4, got {h}x{w}")
        ch = cfg.channels

        def down(c_in):
            return nn.Sequential(
                nn.Conv2d(c_in, ch, 4, 2, 1),
                nn.LeakyReLU(ACT),
                nn.Conv2d(ch, ch, 4, 2, 1),
                nn.LeakyReLU(ACT),
            )

        self.context = nn.Sequential(
            down(c * cfg.precondition), nn.Conv2d(ch, cfg.hidden, 3, padding=1), nn.Tanh()
        )
        self.encode = down(c)
        self.embed = ActionEncoder(n_actions, cfg.embed, action_dim)
        self.cell = ConvGRUCell(ch + cfg.embed, cfg.hidden)
        self.decode = nn.Sequential(
            nn.ConvTranspose2d(cfg.hidden + ch, ch, 4, 2, 1),
            nn.LeakyReLU(ACT),
            nn.ConvTranspose2d(ch, ch, 4, 2, 1),
            nn.LeakyReLU(ACT),
            nn.Conv2d(ch + c, c, 3, padding=1),
        )
        self.gain = nn.Parameter(torch.tensor(4.0))

    def init_state(self, context):
        return {"h": self.context(context.flatten(1, 2)), "frame": context[:, -1]}

    def step(self, state, action):
        frame = state["frame"]
        feat = self.encode(frame)
        a = self.embed(action)[:, :, None, None].expand(-1, -1, *feat.shape[2:])
        h = self.cell(torch.cat([feat, a], 1), state["h"])
        up = self.decode[:-1](torch.cat([h, feat], 1))
        delta = self.decode[-1](torch.cat([up, frame], 1))
        nxt = torch.sigmoid(self.gain * (2 * frame - 1) + delta)
        return nxt, {"h": h, "frame": nxt}
