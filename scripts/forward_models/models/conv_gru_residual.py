"""Residual convolutional GRU: this project's own family, built to beat the thesis' models.

Why: in a pixel world most of the next frame *is* the current frame; the thesis' RNN models
redraw everything from a small vector, so open-loop errors grow as the drawing blurs. Here a
convolutional GRU keeps a spatial state (where things are and how they move) at a quarter of the
frame's resolution, conditioned on the action broadcast over the map, and predicts a correction
in logit space to the frame it reads: ``next = sigmoid(gain * (2 * frame - 1) + delta)``. Copying
is free, so capacity goes to what moves. It is fed its own predictions (open loop) in training
too, so training matches evaluation and play.

Cost is what decides a comparison on a fixed budget, so everything runs at a quarter resolution
except one 3x3 conv: the GRU's gates are 1x1 convs (only its candidate mixes neighbours), and
the state is lifted to full resolution by a pixel shuffle rather than transposed convs: 3.9 M
multiply-adds per 32x32 step (torch's FlopCounterMode), against about 14 M (by hand) for its first
design (3x3 gates at 64 channels, two transposed convs), which trained too few steps to win.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from forward_models.model_config import FrameFedConfig
from forward_models.models.base import ActionEncoder, register
from forward_models.models.frame_fed import FrameFed
from forward_models.models.layers import ACT

SCALE = 4  # the recurrent state's resolution is 1/SCALE of the frame's


class ConvGRUCell(nn.Module):
    """GRU over feature maps: 1x1-conv gates, a 3x3-conv candidate (the only spatial mixing)."""

    def __init__(self, c_in: int, hidden: int):
        super().__init__()
        self.gates = nn.Conv2d(c_in + hidden, 2 * hidden, 1)
        self.cand = nn.Conv2d(c_in + hidden, hidden, 3, padding=1)

    def forward(self, x, h):
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        n = torch.tanh(self.cand(torch.cat([x, r * h], 1)))
        return (1 - z) * h + z * n


class ConvGRUResidualConfig(FrameFedConfig):
    draws_pixels = True
    TINY = {"channels": 4, "hidden": 4}

    arch: Literal["conv_gru_residual"] = "conv_gru_residual"
    channels: int = Field(16, ge=1)
    """Channels of the frame encoder's feature maps (at 1/4 resolution)."""
    hidden: int = Field(32, ge=1)
    """Channels of the convolutional GRU state (at 1/4 resolution)."""
    embed: int = Field(16, ge=1)
    """Action embedding size, broadcast over the state map."""
    up: int = Field(4, ge=1)
    """Channels per full-resolution pixel after the pixel shuffle, read by the output conv."""
    head: Literal["logit", "transport"] = "logit"
    """How the next frame is made from the one read. ``logit``: a correction in logit space,
    ``sigmoid(gain * (2 * frame - 1) + delta)`` (a copy only for pixels at 0 or 1).
    ``transport``: every pixel is a softmax-weighted mix of its ``kernel`` x ``kernel``
    neighbourhood in the frame (motion), blended by a predicted mask with newly drawn pixels;
    the copy is exact for any pixel value, and the head also reads the last frame's change."""
    kernel: int = Field(3, ge=1)
    """Neighbourhood of the ``transport`` head: the largest motion per step it can carry is
    ``kernel // 2`` pixels. Odd."""

    @model_validator(mode="after")
    def _odd_kernel(self):
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (a centred neighbourhood), got {self.kernel}")
        return self

    def frame_problem(self, size: int) -> str | None:
        return None if size % 4 == 0 else "needs a size divisible by 4 (its state is at 1/4)"


@register
class ConvGRUResidual(FrameFed):
    Config = ConvGRUResidualConfig

    def __init__(self, cfg: ConvGRUResidualConfig, frame_shape, n_actions, action_dim: int = 0):
        super().__init__(cfg, frame_shape, n_actions, action_dim)
        c, h, w = frame_shape
        ch = cfg.channels

        def down(c_in):  # two stride-2 convs: full -> 1/4 resolution
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
        self.lift = nn.Sequential(
            nn.Conv2d(cfg.hidden + ch, SCALE * SCALE * cfg.up, 3, padding=1),
            nn.PixelShuffle(SCALE),
            nn.LeakyReLU(ACT),
        )
        if cfg.head == "logit":
            self.head = nn.Conv2d(cfg.up + c, c, 3, padding=1)
            self.gain = nn.Parameter(torch.tensor(4.0))
        else:
            self.head = TransportHead(cfg.up, c, cfg.kernel)

    def init_state(self, context):
        prev = context[:, -2] if context.shape[1] > 1 else context[:, -1]
        return {"h": self.context(context.flatten(1, 2)), "frame": context[:, -1], "prev": prev}

    def step(self, state, action):
        frame = state["frame"]
        feat = self.encode(frame)
        a = self.embed(action)[:, :, None, None].expand(-1, -1, *feat.shape[2:])
        h = self.cell(torch.cat([feat, a], 1), state["h"])
        up = self.lift(torch.cat([h, feat], 1))
        if self.cfg.head == "logit":
            delta = self.head(torch.cat([up, frame], 1))
            nxt = torch.sigmoid(self.gain * (2 * frame - 1) + delta)
        else:
            nxt = self.head(up, frame, state["prev"])
        return nxt, {"h": h, "frame": nxt, "prev": frame}


class TransportHead(nn.Module):
    """Next frame = (1 - m) * (each pixel's softmax-weighted neighbourhood) + m * drawn pixels.

    A convex mix of the frame's own pixels, so the copy (the centre weight 1, m 0) is exact for
    any pixel value and open-loop rollouts stay in [0, 1]; it starts near that copy. It reads
    the features, the frame and the frame's last change (where things move, at full resolution).
    """

    def __init__(self, features: int, c: int, kernel: int):
        super().__init__()
        self.k, self.c = kernel, c
        self.net = nn.Conv2d(features + 2 * c, kernel * kernel + 1 + c, 3, padding=1)
        with torch.no_grad():
            self.net.weight.mul_(0.1)
            self.net.bias.zero_()
            self.net.bias[kernel * kernel // 2] = 6.0  # the centre: start close to a copy
            self.net.bias[kernel * kernel] = -6.0  # the mask: start drawing little

    def forward(self, features, frame, prev):
        b, c, h, w = frame.shape
        out = self.net(torch.cat([features, frame, frame - prev], 1))
        weights = out[:, : self.k**2].softmax(1)
        mask = torch.sigmoid(out[:, self.k**2 : self.k**2 + 1])
        drawn = torch.sigmoid(out[:, self.k**2 + 1 :])
        patches = F.unfold(frame, self.k, padding=self.k // 2).view(b, c, self.k**2, h, w)
        moved = (patches * weights[:, None]).sum(2)
        return (1 - mask) * moved + mask * drawn
