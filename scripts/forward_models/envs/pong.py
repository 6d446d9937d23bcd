"""Two-player Pong rendered with numpy, after the thesis' environment.

The board is a square of ``size`` pixels. Two paddles (``paddle_width`` x ``paddle_height``)
sit against the left and right walls and a ``ball_size`` square ball starts at the centre with
a heading drawn uniformly from [0, 2pi) (or fixed, for the deterministic variant). Paddles and
ball move ``speed`` pixels per tick. The ball bounces off the top and bottom walls and off the
paddles; the episode terminates when the ball reaches a side wall without touching that
side's paddle. Reward is 1 for every step the rally survives.

Actions are ``Discrete(9)``: ``index = (right + 1) * 3 + (left + 1)`` with each paddle's move in
{-1: up, 0: stay, +1: down}, so 4 keeps both paddles still. With ``multidiscrete=True`` they are
``MultiDiscrete([3, 3])`` = (right + 1, left + 1), which flattens to the same index.

The info dict carries the state (ball position and velocity, paddle centres) for scripted agents
and the heading as ``(sin, cos)``, the thesis' alternative precondition.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

NOOP = 4


def decode_action(action: int) -> tuple[int, int]:
    """Split a flat action into (left, right) paddle moves in {-1, 0, +1}."""
    action = int(action)
    return action % 3 - 1, action // 3 - 1


def encode_action(left: int, right: int) -> int:
    """Inverse of :func:`decode_action`."""
    return (right + 1) * 3 + (left + 1)


class TwoPlayerPong(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        size: int = 32,
        render_mode: str | None = "rgb_array",
        heading: float | None = None,
        paddle_width: int = 5,
        paddle_height: int = 15,
        ball_size: int = 4,
        speed: float = 1.0,
        multidiscrete: bool = False,
    ):
        if size < max(2 * paddle_width + 2 * ball_size, paddle_height + 1):
            raise ValueError(
                f"Pong size={size} is too small for paddles {paddle_width}x{paddle_height} "
                f"and a {ball_size}px ball"
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: TwoPlayerPong renders 'rgb_array' only")
        self.size = size
        self.render_mode = render_mode
        self.fixed_heading = heading
        self.pw, self.ph, self.bs, self.speed = paddle_width, paddle_height, ball_size, speed
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        # MultiDiscrete([3, 3]) components are (right + 1, left + 1): flattened in C order they
        # give exactly the Discrete(9) index.
        self.action_space = spaces.MultiDiscrete([3, 3]) if multidiscrete else spaces.Discrete(9)
        self._frame = np.zeros((size, size, 3), np.uint8)

    # -- dynamics -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        centre = (self.size - self.bs) / 2
        self.ball = np.array([centre, centre], dtype=np.float64)  # top-left corner (x, y)
        if self.fixed_heading is None:
            self.heading = float(self.np_random.uniform(0.0, 2.0 * math.pi))
        else:
            self.heading = float(self.fixed_heading)
        self.vel = self.speed * np.array([math.cos(self.heading), math.sin(self.heading)])
        # A whole-pixel start: from a half-pixel one (an odd paddle on an even board) a paddle
        # moving 1 px per tick was drawn with round-half-to-even, jumping 2 px every other move,
        # a sub-pixel position the frames could not show.
        top = float((self.size - self.ph) // 2)
        self.paddles = np.array([top, top], dtype=np.float64)  # left, right top edges
        return self._observe(), self._info()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        if isinstance(self.action_space, spaces.MultiDiscrete):
            action = encode_action(int(action[1]) - 1, int(action[0]) - 1)
        left, right = decode_action(action)
        lim = self.size - self.ph
        self.paddles = np.clip(self.paddles + self.speed * np.array([left, right]), 0, lim)

        x, y = self.ball + self.vel
        vx, vy = self.vel
        if y < 0 or y > self.size - self.bs:  # top/bottom walls reflect
            y = -y if y < 0 else 2 * (self.size - self.bs) - y
            vy = -vy
        terminated = False
        if x < self.pw and vx < 0:  # at the left paddle's face
            if self._touches(y, self.paddles[0]):
                x, vx = 2 * self.pw - x, -vx
            elif x <= 0:
                x, terminated = 0.0, True
        elif x > self.size - self.pw - self.bs and vx > 0:
            if self._touches(y, self.paddles[1]):
                x, vx = 2 * (self.size - self.pw - self.bs) - x, -vx
            elif x >= self.size - self.bs:
                x, terminated = float(self.size - self.bs), True
        self.ball = np.array([x, y])
        self.vel = np.array([vx, vy])
        return self._observe(), 1.0, terminated, False, self._info()

    def _touches(self, ball_y: float, paddle_top: float) -> bool:
        return ball_y + self.bs > paddle_top and ball_y < paddle_top + self.ph

    # -- observation ----------------------------------------------------------------------
    def _observe(self) -> np.ndarray:
        f = self._frame
        f[:] = 0
        s, pw, ph, bs = self.size, self.pw, self.ph, self.bs
        lt, rt = (int(round(p)) for p in self.paddles)
        f[lt : lt + ph, :pw] = 255
        f[rt : rt + ph, s - pw :] = 255
        bx, by = (int(round(c)) for c in self.ball)
        f[by : by + bs, bx : bx + bs] = 255
        return f.copy()

    def _info(self) -> dict:
        half = self.ph / 2
        return {
            "ball": self.ball + self.bs / 2,  # centre (x, y)
            "ball_velocity": self.vel.copy(),
            "paddles": self.paddles + half,  # centres (left, right)
            "heading": np.array([math.sin(self.heading), math.cos(self.heading)]),
        }

    def render(self):
        if self.render_mode == "rgb_array":
            return self._observe()
        return None
