"""Agents that drive rollouts. Each episode gets its own generator, so rollouts are reproducible.

An agent is reset with the episode's ``numpy.random.Generator`` and then asked for one action
per step from the observation and the env's info dict.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from gymnasium import spaces

from forward_models.envs.pong import encode_action


class Agent(Protocol):
    def reset(self, rng: np.random.Generator) -> None: ...

    def act(self, obs: np.ndarray, info: dict): ...


class RandomAgent:
    """Uniform random actions from the action space."""

    def __init__(self, action_space: spaces.Space):
        self.space = action_space

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.space.seed(int(rng.integers(2**31)))

    def act(self, obs, info):
        return self.space.sample()


class StickyRandomAgent(RandomAgent):
    """Repeats its last action with probability ``stickiness``: smoother, wider-ranging motion."""

    def __init__(self, action_space: spaces.Space, stickiness: float = 0.8):
        super().__init__(action_space)
        self.stickiness = stickiness

    def reset(self, rng):
        super().reset(rng)
        self.last = None

    def act(self, obs, info):
        if self.last is None or self.rng.random() >= self.stickiness:
            self.last = self.space.sample()
        return self.last


class PongAgent:
    """Scripted two-player Pong agent (the thesis' rollout agent).

    Each paddle tracks the ball while the ball is in its half and drifts sinusoidally
    otherwise; with probability ``stochasticity`` (drawn per episode from ``stochasticity``
    when a range is given) it moves at random instead.
    """

    def __init__(self, action_space: spaces.Space, size: int, stochasticity=(0.5, 1.0)):
        if not (isinstance(action_space, spaces.Discrete) and action_space.n == 9):
            raise ValueError(f"the Pong agent needs Discrete(9) actions, got {action_space}")
        lo, hi = (stochasticity, stochasticity) if np.isscalar(stochasticity) else stochasticity
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"stochasticity must lie in [0, 1], got {stochasticity}")
        self.range, self.size = (float(lo), float(hi)), size

    def reset(self, rng):
        self.rng = rng
        self.p = rng.uniform(*self.range)
        self.t = 0
        self.phase = rng.uniform(0, 2 * math.pi, size=2)

    def act(self, obs, info):
        self.t += 1
        ball_x, ball_y = info["ball"]
        moves = []
        for side, centre in enumerate(info["paddles"]):
            if self.rng.random() < self.p:
                moves.append(int(self.rng.integers(-1, 2)))
                continue
            in_half = ball_x < self.size / 2 if side == 0 else ball_x >= self.size / 2
            if in_half:
                target = ball_y
            else:
                target = self.size / 2 + self.size / 4 * math.sin(0.05 * self.t + self.phase[side])
            moves.append(int(np.sign(round(target - centre))))
        return encode_action(*moves)


def make_agent(kind: str, action_space: spaces.Space, size: int, **kwargs) -> Agent:
    """Build an agent by its config name."""
    if kind == "random":
        return RandomAgent(action_space, **kwargs)
    if kind == "sticky":
        return StickyRandomAgent(action_space, **kwargs)
    if kind == "pong":
        return PongAgent(action_space, size, **kwargs)
    raise ValueError(f"unknown agent {kind!r}; expected one of 'random', 'sticky', 'pong'")
