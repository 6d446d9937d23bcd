"""CubeCrash: the thesis' second environment (gym once shipped it as a unit-test env).

A 3x3 green cube falls one pixel per step from near the top of a 40 (high) x 32 (wide) black
field towards a white wall, 5 pixels thick, at the bottom. The wall has a hole ``hole_width``
pixels wide. Actions are ``Discrete(3)``: 0 stays, 1 moves the cube left, 2 right. The episode
ends with reward -1 when the cube hits a side or the wall, and +1 when it passes through the
hole; with ``shaped=True`` each step also pays the change in closeness to the hole.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

H, W, WALL = 40, 32, 5
GREEN = np.array([0, 255, 0], np.uint8)


class CubeCrash(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self, render_mode: str | None = "rgb_array", hole_width: int = 8, shaped: bool = True
    ):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: CubeCrash renders 'rgb_array' only")
        self.render_mode, self.hole_width, self.shaped = render_mode, hole_width, shaped
        self.observation_space = spaces.Box(0, 255, (H, W, 3), np.uint8)
        self.action_space = spaces.Discrete(3)

    def get_keys_to_action(self) -> dict[tuple[str, ...], int]:
        """The arrow keys steer the cube (key names as pygame spells them)."""
        return {(): 0, ("left",): 1, ("right",): 2}

    def start_ranges(self) -> dict[str, tuple[int, int]]:
        """The reset's draws, in the order it draws them: each uniform on ``[lo, hi)``."""
        half = self.hole_width // 2
        return {"x": (3, W - 3), "y": (3, H // 6), "hole": (half + 1, W - half - 1)}

    def set_state(self, x: int, y: int, hole: int) -> None:
        """Put the cube at column ``x``, row ``y`` and the hole at ``hole`` (a reset's state)."""
        self.x, self.y, self.hole = x, y, hole
        self.potential = -abs(self.x - self.hole)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        draws = {k: int(self.np_random.integers(*r)) for k, r in self.start_ranges().items()}
        self.set_state(**draws)
        return self._observe(), {"cube": (self.x, self.y), "hole": self.hole}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        self.x += (0, -1, 1)[int(action)]
        self.y += 1
        reward, terminated = 0.0, False
        if self.shaped:
            potential = -abs(self.x - self.hole)
            reward, self.potential = float(potential - self.potential) * 0.1, potential
        lo, hi = self.hole - self.hole_width // 2, self.hole + self.hole_width // 2
        in_hole = self.x - 1 >= lo and self.x + 2 <= hi  # the whole 3-px cube fits the hole
        if self.x - 1 < 0 or self.x + 1 >= W:
            reward, terminated = -1.0, True
        elif self.y + 1 >= H - WALL and not in_hole:
            reward, terminated = -1.0, True
        elif self.y + 1 >= H - 1:
            reward, terminated = 1.0, True
        return (
            self._observe(),
            reward,
            terminated,
            False,
            {"cube": (self.x, self.y), "hole": self.hole},
        )

    def _observe(self) -> np.ndarray:
        f = np.zeros((H, W, 3), np.uint8)
        f[H - WALL :] = 255
        half = self.hole_width // 2
        f[H - WALL :, self.hole - half : self.hole + half] = 0
        y0, x0 = max(self.y - 1, 0), max(self.x - 1, 0)
        f[y0 : self.y + 2, x0 : self.x + 2] = GREEN
        return f

    def render(self):
        return self._observe() if self.render_mode == "rgb_array" else None
