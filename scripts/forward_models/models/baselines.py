"""Baselines with the forward-model interface; they have nothing to learn."""

from __future__ import annotations

from typing import Literal

from forward_models.models.base import ForwardModel, ModelConfig, register


class CopyLastConfig(ModelConfig):
    arch: Literal["copy_last"] = "copy_last"


@register("copy_last")
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
