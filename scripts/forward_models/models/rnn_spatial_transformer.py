"""RNN spatial transformer: the RNN moves features of the current frame instead of drawing them.

Every step, the frame the model reads (the truth under teacher forcing, its own prediction
otherwise) passes dropout and unpadded convs to a small feature map; the RNN output gives one
affine transform per feature channel (initialised to the identity) that warps it with
``affine_grid``/``grid_sample``; transposed convs decode the warped map into the next frame.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from forward_models.model_config import FrameFedConfig, RecurrentConfig
from forward_models.models.base import register
from forward_models.models.frame_fed import FrameFed
from forward_models.models.layers import ACT, ConvEncoder, RecurrentCore


class RNNSpatialTransformerConfig(FrameFedConfig, RecurrentConfig):
    TINY = {"hidden": 8, "convs": 2}

    arch: Literal["rnn_spatial_transformer"] = "rnn_spatial_transformer"
    teacher_forcing: bool = True
    """Feed the true previous frame in training (the thesis did); open loop in evaluation."""
    features: int = Field(3, ge=1)
    """Channels of the warped feature map (the thesis used 3, one affine transform each)."""
    convs: int = Field(4, ge=1)
    """Unpadded 5x5 convs from the frame to the feature map (each shrinks it by 4 pixels)."""
    dropout: float = Field(0.6, ge=0, lt=1)
    """Dropout on the input frame (training only)."""

    def frame_problem(self, size: int) -> str | None:
        least = 4 * self.convs + 4  # each unpadded 5x5 conv takes 4 pixels off a side
        return None if size >= least else f"needs size >= {least} for convs={self.convs}"


@register
class RNNSpatialTransformer(FrameFed):
    Config = RNNSpatialTransformerConfig

    def __init__(
        self, cfg: RNNSpatialTransformerConfig, frame_shape, n_actions, action_dim: int = 0
    ):
        super().__init__(cfg, frame_shape, n_actions, action_dim)
        c, h, w = frame_shape
        self.encoder = ConvEncoder(c * cfg.precondition, (h, w), cfg.hidden)
        self.core = RecurrentCore(cfg, n_actions, action_dim)
        chans = [c] + [max(cfg.features, 16)] * (cfg.convs - 1) + [cfg.features]
        down, up = [nn.Dropout(cfg.dropout)], []
        for i, (a, b) in enumerate(zip(chans, chans[1:], strict=False)):
            down += [nn.Conv2d(a, b, 5)] + ([nn.LeakyReLU(ACT)] if i < cfg.convs - 1 else [])
        for i, (a, b) in enumerate(zip(chans[::-1], chans[::-1][1:], strict=False)):
            up += [nn.ConvTranspose2d(a, b, 5)] + ([nn.LeakyReLU(ACT)] if i < cfg.convs - 1 else [])
        self.down, self.up = nn.Sequential(*down), nn.Sequential(*up)
        self.theta = nn.Linear(cfg.hidden, cfg.features * 6)
        # Near-zero, not zero as in the thesis: zero weights pass no gradient back to the RNN.
        nn.init.normal_(self.theta.weight, std=1e-3)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(cfg.features))

    def init_state(self, context):
        return {
            "core": self.core.init_state(self.encoder(context.flatten(1, 2))),
            "frame": context[:, -1],
        }

    def step(self, state, action):
        y, core = self.core.step(state["core"], action)
        feat = self.down(state["frame"])
        b, f, h, w = feat.shape
        theta = self.theta(y).view(b * f, 2, 3)
        grid = F.affine_grid(theta, (b * f, 1, h, w), align_corners=False)
        warped = F.grid_sample(feat.reshape(b * f, 1, h, w), grid, align_corners=False).view(
            b, f, h, w
        )
        frame = torch.sigmoid(self.up(warped))
        return frame, {"core": core, "frame": frame, "theta": theta.view(b, f, 2, 3)}
