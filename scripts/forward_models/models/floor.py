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

import numpy as np
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
    samples: int = Field(64, ge=2)
    """Futures drawn per episode from the posterior, in place of ``evaluation.samples``: its
    energy score is the ES floor every model's is divided by, and its spread the calibrated
    one. Both estimates are unbiased at any K, but at K = 16 the h=1 ES floor of the default
    test split moved by ~12% between draws (0.0093 against 0.0106-0.0109 at K = 64-128); the
    pair distances cost K^2 per episode and step."""


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

    def _replay_args(self, batch, precondition: int) -> tuple:
        from forward_models import frames

        if self.env is None:
            raise RuntimeError("the floor needs prepare(rollouts) first: it replays their env")
        obs, p = batch["obs"], precondition
        context = frames.uint8_frames(obs[:, :p])
        actions = batch["action"][:, :-1].cpu().numpy()  # a[0..L-2]: replayed from the reset
        env = self.env
        return env["id"], env["kwargs"], env["size"], context, actions, obs.shape[1] - p

    def _options(self) -> dict:
        """The heading grid, for an env whose start hides state (CubeCrash's floor takes none:
        passed on, it reached the env as a kwarg and every CubeCrash evaluation failed)."""
        from forward_models import floor

        return {"n_headings": self.cfg.headings} if floor.hides_state(self.env["id"]) else {}

    @torch.no_grad()
    def rollout_window(self, batch, precondition: int, generator=None) -> torch.Tensor:
        from forward_models import floor

        pred = floor.floor_for_env(*self._replay_args(batch, precondition), **self._options())
        return channels_first(torch.from_numpy(pred))

    @torch.no_grad()
    def sample_window(self, batch, precondition: int, k: int, generator):
        """The exact posterior mean and ``k`` futures drawn from the posterior (the headings
        drawn with a numpy generator seeded from ``generator``)."""
        from forward_models import floor

        seed = int(torch.randint(2**62, (1,), generator=generator))
        mean, samples = floor.floor_samples_for_env(
            *self._replay_args(batch, precondition),
            k,
            np.random.default_rng(seed),
            **self._options(),
        )
        return channels_first(torch.from_numpy(mean)), channels_first(torch.from_numpy(samples))

    def init_state(self, context):
        raise NotImplementedError(
            "the floor replays whole windows (rollout_window); it cannot step"
        )

    def rollout(self, context, actions):
        raise NotImplementedError("the floor needs the window's earlier actions: rollout_window")


def channels_first(frames: torch.Tensor) -> torch.Tensor:
    """(..., H, W, C) -> (..., C, H, W)."""
    return frames.movedim(-1, -3)
