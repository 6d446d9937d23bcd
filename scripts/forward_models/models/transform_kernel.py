"""Transformation-kernel model: learn how frames change instead of compressing the state.

The precondition and the action give a transformation vector T (tanh); T parameterises
per-sample 5x5 convolution kernels applied (one grouped conv for the batch) to a feature map of
the current frame; transposed convs decode the transformed features into the next frame.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from forward_models.model_config import FrameFedConfig, TrainConfig
from forward_models.models.base import ActionEncoder, register
from forward_models.models.frame_fed import FrameFed
from forward_models.models.layers import ACT, ConvEncoder


class TransformKernelConfig(FrameFedConfig):
    draws_pixels = True
    TINY = {"features": 4, "transform": 8}

    arch: Literal["transform_kernel"] = "transform_kernel"
    train: TrainConfig = TrainConfig(loss="mse")
    """Training settings (the thesis trained this family with MSE)."""
    features: int = Field(16, ge=1)
    """Channels of the feature map the kernels transform."""
    kernel: int = Field(5, ge=1)
    """Side of the per-sample kernels (odd)."""
    transform: int = Field(64, ge=1)
    """Size of the transformation vector T."""
    embed: int = Field(32, ge=1)
    """Action embedding size E."""


@register
class TransformKernel(FrameFed):
    Config = TransformKernelConfig

    def __init__(self, cfg: TransformKernelConfig, frame_shape, n_actions, action_dim: int = 0):
        super().__init__(cfg, frame_shape, n_actions, action_dim)
        c, h, w = frame_shape
        f, k = cfg.features, cfg.kernel
        self.context = ConvEncoder(c * cfg.precondition, (h, w), cfg.transform)
        self.embed = ActionEncoder(n_actions, cfg.embed, action_dim)
        self.to_t = nn.Sequential(nn.Linear(cfg.transform + cfg.embed, cfg.transform), nn.Tanh())
        self.to_kernels = nn.Linear(cfg.transform, f * f * k * k)
        self.features = nn.Sequential(nn.Conv2d(c, f, 4, 2, 1), nn.LeakyReLU(ACT))
        self.decode = nn.Sequential(
            nn.ConvTranspose2d(f, f, 4, 2, 1), nn.LeakyReLU(ACT), nn.Conv2d(f, c, 3, padding=1)
        )

    def init_state(self, context):
        return {"code": self.context(context.flatten(1, 2)), "frame": context[:, -1]}

    def step(self, state, action):
        b = action.shape[0]
        f, k = self.cfg.features, self.cfg.kernel
        t = self.to_t(torch.cat([state["code"], self.embed(action)], 1))
        kernels = self.to_kernels(t).view(b * f, f, k, k) / (f * k)
        feat = self.features(state["frame"])
        moved = F.conv2d(feat.reshape(1, b * f, *feat.shape[2:]), kernels, padding=k // 2, groups=b)
        out = self.decode(F.leaky_relu(moved.view_as(feat), ACT))
        if out.shape[-2:] != self.frame_shape[1:]:
            out = F.interpolate(
                out, size=self.frame_shape[1:], mode="bilinear", align_corners=False
            )
        frame = torch.sigmoid(out)
        return frame, {"code": state["code"], "frame": frame}
