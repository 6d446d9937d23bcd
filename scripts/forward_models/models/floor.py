"""The floor as a reference model: the MSE-optimal open-loop prediction on the built-in envs.

No model can beat it in expectation: on Pong the ball's start heading is hidden, and the best
prediction is the average, over the headings consistent with the precondition, of the frames the
env renders when replayed with the episode's actions (:mod:`forward_models.floor`, numpy). It
replays the env the rollouts came from (recorded by :meth:`prepare`), so it predicts whole
windows from an episode's start (:meth:`rollout_window`, as evaluation uses them) and cannot be
stepped or played. Envs without a known floor get no floor run (the workflow skips them).
"""

from __future__ import annotations

import json
from typing import Literal

import torch
from pydantic import Field

from forward_models.model_config import ModelConfig
from forward_models.models.base import ForwardModel, register


class FloorConfig(ModelConfig):
    reference = True
    floor = True

    arch: Literal["floor"] = "floor"
    headings: int = Field(4096, ge=16)
    """Pong: fine headings per episode over the region consistent with the precondition (the
    default changes the mean floor by < 3e-5 relative against 8x as many)."""


@register
class Floor(ForwardModel):
    Config = FloorConfig
    replays_env = True

    def __init__(self, cfg: FloorConfig, frame_shape, n_actions, action_dim: int = 0):
        super().__init__(cfg, frame_shape, n_actions, action_dim)
        self.env: dict | None = None

    def prepare(self, rollouts) -> None:
        env = rollouts.attrs["env"]
        self.env = {"id": env["id"], "size": env["size"], "kwargs": env.get("kwargs") or {}}

    def get_extra_state(self):
        return {"env": json.dumps(self.env)}  # a string: checkpoints load with weights_only

    def set_extra_state(self, state) -> None:
        self.env = json.loads(state["env"])

    @torch.no_grad()
    def rollout_window(self, batch, precondition: int) -> torch.Tensor:
        from forward_models import floor, frames

        if self.env is None:
            raise RuntimeError("the floor needs prepare(rollouts) first: it replays their env")
        obs, p = batch["obs"], precondition
        context = frames.uint8_frames(obs[:, :p])
        actions = batch["action"][:, :-1].cpu().numpy()  # a[0..L-2]: replayed from the reset
        pred = floor.floor_for_env(
            self.env["id"],
            self.env["kwargs"],
            self.env["size"],
            context,
            actions,
            obs.shape[1] - p,
            n_headings=self.cfg.headings,
        )
        return torch.from_numpy(pred).permute(0, 1, 4, 2, 3)

    def init_state(self, context):
        raise NotImplementedError(
            "the floor replays whole windows (rollout_window); it cannot step"
        )

    def rollout(self, context, actions):
        raise NotImplementedError("the floor needs the window's earlier actions: rollout_window")
