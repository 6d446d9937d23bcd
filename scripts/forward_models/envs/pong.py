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

The rules (:class:`PongRules`) are written once, for a batch of balls and paddles stepped at
once: the env steps a batch of one, the floor (:mod:`forward_models.floor.pong`) thousands of
candidate headings. :data:`DEFAULTS` is the one place the board's default geometry lives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

NOOP = 4

DEFAULTS = {"size": 32, "paddle_width": 5, "paddle_height": 15, "ball_size": 4, "speed": 1.0}
"""The board's geometry when an env kwarg does not say otherwise (read at construction)."""


def decode_actions(actions) -> np.ndarray:
    """Flat actions (any shape) -> paddle moves ``(..., 2)`` (left, right) in {-1, 0, +1}."""
    a = np.asarray(actions, dtype=np.int64)
    return np.stack([a % 3 - 1, a // 3 - 1], axis=-1)


def decode_action(action: int) -> tuple[int, int]:
    """Split a flat action into (left, right) paddle moves in {-1, 0, +1}."""
    left, right = decode_actions(int(action)).tolist()
    return left, right


def encode_action(left: int, right: int) -> int:
    """Inverse of :func:`decode_action`."""
    return (right + 1) * 3 + (left + 1)


def flatten_pairs(pairs) -> np.ndarray:
    """``MultiDiscrete([3, 3])`` actions ``(..., 2)`` = (right + 1, left + 1) -> flat indices."""
    a = np.asarray(pairs, dtype=np.int64)
    return a[..., 0] * 3 + a[..., 1]


@dataclass(frozen=True)
class PongRules:
    """The board's geometry and its physics, vectorised: every method takes arrays of balls
    (positions are top-left corners, float64, as the env holds them) and paddles (top edges,
    ``(..., 2)`` for left and right) and applies the env's arithmetic element-wise, the same
    float64 operations in the same order for one ball or a million."""

    size: int
    paddle_width: int
    paddle_height: int
    ball_size: int
    speed: float

    @classmethod
    def of(cls, **kwargs) -> PongRules:
        """The rules for env kwargs, :data:`DEFAULTS` filling in the rest."""
        unknown = set(kwargs) - set(DEFAULTS)
        if unknown:
            raise TypeError(
                f"TwoPlayerPong has no setting {sorted(unknown)}; it has {list(DEFAULTS)}"
            )
        kw = {**DEFAULTS, **kwargs}
        return cls(
            int(kw["size"]),
            int(kw["paddle_width"]),
            int(kw["paddle_height"]),
            int(kw["ball_size"]),
            float(kw["speed"]),
        )

    def __post_init__(self):
        s, pw, ph, bs = self.size, self.paddle_width, self.paddle_height, self.ball_size
        if s < max(2 * pw + 2 * bs, ph + 1):
            raise ValueError(f"Pong size={s} is too small for paddles {pw}x{ph} and a {bs}px ball")

    @property
    def span(self) -> int:
        """The largest ball corner coordinate; rounded corners lie in [0, span]."""
        return self.size - self.ball_size

    # -- the start ----------------------------------------------------------------------------
    @property
    def ball_start(self) -> float:
        """Both coordinates of the ball's corner at the reset (the centre)."""
        return (self.size - self.ball_size) / 2

    @property
    def paddle_start(self) -> float:
        # A whole-pixel start: from a half-pixel one (an odd paddle on an even board) a paddle
        # moving 1 px per tick was drawn with round-half-to-even, jumping 2 px every other
        # move, a sub-pixel position the frames could not show.
        return float((self.size - self.paddle_height) // 2)

    def velocity(self, headings, exact: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``speed * (cos h, sin h)``: with ``exact``, ``math``'s per heading (the env's, bit for
        bit); else numpy's vectorised cos/sin, faster and possibly a last bit off libm's on
        some CPUs (harmless where the headings only sample a prior)."""
        h = np.atleast_1d(np.asarray(headings, np.float64))
        if not exact:
            return self.speed * np.cos(h), self.speed * np.sin(h)
        values = h.tolist()
        cos = np.fromiter(map(math.cos, values), np.float64, count=len(values))
        sin = np.fromiter(map(math.sin, values), np.float64, count=len(values))
        return self.speed * cos, self.speed * sin

    # -- one tick ----------------------------------------------------------------------------
    def move_paddles(self, tops: np.ndarray, moves: np.ndarray) -> np.ndarray:
        """Paddle tops after ``moves`` (``(..., 2)`` in {-1, 0, 1}), clamped to the board."""
        return np.clip(tops + self.speed * moves, 0, self.size - self.paddle_height)

    def move_balls(self, x, y, vx, vy, tops, which=None):
        """One tick of every ball against the paddles (already moved this tick).

        ``tops`` are the paddle tops, ``(N, 2)`` (one board per ball) or, with ``which``
        (``(N,)``), ``(E, 2)`` with ``which`` the row each ball plays against, gathered only once
        some ball is at a paddle's face. Returns ``(x, y, vx, vy, ended, faced)``: ``ended`` marks the balls that
        passed a paddle (clamped at the side wall, where the env stops them) and ``faced``
        whether any ball reached a paddle's face (until then no path depends on the paddles).
        """
        s, pw, ph, bs, span = (
            self.size,
            self.paddle_width,
            self.paddle_height,
            self.ball_size,
            self.span,
        )
        x, y = x + vx, y + vy
        lo, hi = y < 0, y > span  # top/bottom walls reflect
        y = np.where(lo, -y, np.where(hi, 2 * span - y, y))
        vy = np.where(lo | hi, -vy, vy)
        at_l = (x < pw) & (vx < 0)  # at the left paddle's face
        at_r = (x > s - pw - bs) & (vx > 0)
        faced = bool((at_l | at_r).any())
        ended = np.zeros(np.shape(x), bool)
        if faced:
            rows = tops if which is None else tops[which]
            pl, pr = rows[..., 0], rows[..., 1]
            touch_l = (y + bs > pl) & (y < pl + ph)
            touch_r = (y + bs > pr) & (y < pr + ph)
            hit_l, hit_r = at_l & touch_l, at_r & touch_r
            end_l, end_r = at_l & ~touch_l & (x <= 0), at_r & ~touch_r & (x >= span)
            x = np.where(hit_l, 2 * pw - x, x)
            x = np.where(hit_r, 2 * (s - pw - bs) - x, x)
            x = np.where(end_l, 0.0, np.where(end_r, float(span), x))
            vx = np.where(hit_l | hit_r, -vx, vx)
            ended = end_l | end_r
        return x, y, vx, vy, ended, faced

    # -- drawing -----------------------------------------------------------------------------
    @staticmethod
    def pixel(values) -> np.ndarray:
        """Rendered positions: Python's round() of the float, i.e. half to even."""
        return np.rint(values).astype(np.intp)

    def paddle_mask(self, tops: np.ndarray) -> np.ndarray:
        """Pixels the paddles cover: ``(..., 2)`` tops -> ``(..., size, size)`` bool."""
        s, pw, ph = self.size, self.paddle_width, self.paddle_height
        top = self.pixel(tops)
        rows = np.arange(s)
        on_l = (rows >= top[..., 0:1]) & (rows < top[..., 0:1] + ph)  # (..., S)
        on_r = (rows >= top[..., 1:2]) & (rows < top[..., 1:2] + ph)
        cols = np.arange(s)
        return (on_l[..., None] & (cols < pw)) | (on_r[..., None] & (cols >= s - pw))

    def frame(self, tops: np.ndarray, x: float, y: float) -> np.ndarray:
        """The ``(size, size, 3)`` uint8 frame of one board: paddles and ball white on black."""
        mask = self.paddle_mask(tops)
        bx, by, bs = int(self.pixel(x)), int(self.pixel(y)), self.ball_size
        mask[by : by + bs, bx : bx + bs] = True
        return np.repeat((mask * np.uint8(255))[..., None], 3, axis=-1)


class TwoPlayerPong(gym.Env):
    """The env: :class:`PongRules` stepped for one board. ``rules`` are the board's geometry
    (``size``, ``paddle_width``, ``paddle_height``, ``ball_size``, ``speed``; see
    :data:`DEFAULTS`)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        render_mode: str | None = "rgb_array",
        heading: float | None = None,
        multidiscrete: bool = False,
        **rules,
    ):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: TwoPlayerPong renders 'rgb_array' only")
        self.rules = PongRules.of(**rules)
        self.size = self.rules.size
        self.render_mode = render_mode
        self.fixed_heading = heading
        size = self.size
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        # MultiDiscrete([3, 3]) components are (right + 1, left + 1): flattened in C order they
        # give exactly the Discrete(9) index.
        self.action_space = spaces.MultiDiscrete([3, 3]) if multidiscrete else spaces.Discrete(9)

    def get_keys_to_action(self) -> dict[tuple[str, ...], int]:
        """w/s move the left paddle, up/down the right one; any combination of the two (key
        names as pygame spells them). With ``multidiscrete`` the values are still flat indices."""
        left = {(): 0, ("w",): -1, ("s",): 1}
        right = {(): 0, ("up",): -1, ("down",): 1}
        return {
            lk + rk: encode_action(lv, rv) for lk, lv in left.items() for rk, rv in right.items()
        }

    # -- dynamics -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        r = self.rules
        self.ball = np.array([r.ball_start, r.ball_start], dtype=np.float64)  # corner (x, y)
        if self.fixed_heading is None:
            self.heading = float(self.np_random.uniform(0.0, 2.0 * math.pi))
        else:
            self.heading = float(self.fixed_heading)
        self.vel = np.concatenate(r.velocity(self.heading))
        self.paddles = np.array([r.paddle_start, r.paddle_start], dtype=np.float64)  # tops
        return self._observe(), self._info()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        if isinstance(self.action_space, spaces.MultiDiscrete):
            action = flatten_pairs(action)
        r = self.rules
        self.paddles = r.move_paddles(self.paddles, decode_actions(action))
        x, y, vx, vy, ended, _ = r.move_balls(
            *self.ball[:, None], *self.vel[:, None], self.paddles[None]
        )
        self.ball = np.concatenate([x, y])
        self.vel = np.concatenate([vx, vy])
        return self._observe(), 1.0, bool(ended[0]), False, self._info()

    # -- observation ----------------------------------------------------------------------
    def _observe(self) -> np.ndarray:
        return self.rules.frame(self.paddles, *self.ball)

    def _info(self) -> dict:
        r = self.rules
        return {
            "ball": self.ball + r.ball_size / 2,  # centre (x, y)
            "ball_velocity": self.vel.copy(),
            "paddles": self.paddles + r.paddle_height / 2,  # centres (left, right)
            "heading": np.array([math.sin(self.heading), math.cos(self.heading)]),
        }

    def render(self):
        if self.render_mode == "rgb_array":
            return self._observe()
        return None
