"""RNN with a deconvolutional renderer: the thesis' baseline family.

The precondition frames, stacked on channels, are encoded by two conv blocks into the initial
state of a GRU over action embeddings (optionally followed by dilated GRU layers); every GRU
output is drawn by a deconvolutional renderer. Open loop: after the precondition only actions.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from forward_models.model_config import RecurrentConfig
from forward_models.models.base import ForwardModel, register
from forward_models.models.layers import ConvEncoder, DeconvRenderer, RecurrentCore


class RNNDeconvConfig(RecurrentConfig):
    draws_pixels = True
    # Longer than the others in the tiny run, so it passes a resume checkpoint and validation.
    TINY = {
        "hidden": 16,
        "embed": 8,
        "encoder_width": 8,
        "decoder_channels": [16, 16, 8, 8],
        "train": {
            "steps": 20,
            "seq_len": 12,
            "val_every": 10,
            "log_every": 5,
            "checkpoint_every": 10,
        },
    }
    FIT = {"hidden": 32, "decoder_channels": [32, 16, 16, 8]}  # its TINY cannot fit a batch

    arch: Literal["rnn_deconv"] = "rnn_deconv"
    hidden: int = Field(32, ge=1)
    """GRU state size H (the thesis used 32 for Pong)."""
    encoder_width: int = Field(64, ge=1)
    """Channels of the precondition encoder's conv blocks."""
    decoder_channels: list[int] = [128, 128, 64, 32]
    """Input channels of the renderer's transposed convs, from the 2x2 map up."""


@register
class RNNDeconv(ForwardModel):
    Config = RNNDeconvConfig

    def __init__(self, cfg: RNNDeconvConfig, frame_shape, n_actions, action_dim: int = 0):
        super().__init__(cfg, frame_shape, n_actions, action_dim)
        c, h, w = frame_shape
        self.encoder = ConvEncoder(c * cfg.precondition, (h, w), cfg.hidden, cfg.encoder_width)
        self.core = RecurrentCore(cfg, n_actions, action_dim)
        self.renderer = DeconvRenderer(cfg.hidden, frame_shape, cfg.decoder_channels)

    def _encode(self, context: torch.Tensor) -> torch.Tensor:
        return self.encoder(context.flatten(1, 2))

    def rollout(self, context, actions):
        y = self.core(self._encode(context), actions)
        b, t = y.shape[:2]
        return self.renderer(y.reshape(b * t, -1)).view(b, t, *self.frame_shape)

    def init_state(self, context):
        return self.core.init_state(self._encode(context))

    def step(self, state, action):
        y, state = self.core.step(state, action)
        return self.renderer(y), state
