"""Environments: the built-in Pong, and one constructor for any Gymnasium id that renders pixels.

Every environment made here observes ``(size, size, 3)`` uint8 frames: built-in envs draw at
that size, any other id is rendered with ``render_mode="rgb_array"`` and resized.
"""

from __future__ import annotations

import difflib

import gymnasium as gym
import numpy as np
from PIL import Image

PONG_ID = "forward_models/TwoPlayerPong-v0"
PONG_FIXED_ID = "forward_models/TwoPlayerPongFixed-v0"
CUBE_CRASH_ID = "forward_models/CubeCrash-v0"
DREAM_ID = "forward_models/Dream-v0"
BUILTIN = {PONG_ID, PONG_FIXED_ID}  # these draw at any size; all others are rendered and resized


def register() -> None:
    """Register the built-in envs with Gymnasium (ALE's are registered when an ``ALE/`` id is
    first asked for: importing ale-py costs every config validation otherwise).

    Idempotent; runs on package import.
    """
    if DREAM_ID not in gym.registry:  # a trained checkpoint's dynamics (imports torch when made)
        gym.register(DREAM_ID, entry_point="forward_models.play:Dream", max_episode_steps=1000)
    if CUBE_CRASH_ID not in gym.registry:
        gym.register(CUBE_CRASH_ID, entry_point="forward_models.envs.cube_crash:CubeCrash")
    if PONG_ID not in gym.registry:
        gym.register(PONG_ID, entry_point="forward_models.envs.pong:TwoPlayerPong")
    if PONG_FIXED_ID not in gym.registry:
        gym.register(
            PONG_FIXED_ID,
            entry_point="forward_models.envs.pong:TwoPlayerPong",
            kwargs={"heading": 0.3},
        )


register()


class UnknownEnvError(ValueError):
    pass


def is_pong(env_id: str) -> bool:
    """Whether ``env_id`` is the built-in two-player Pong (any registered variant)."""
    spec = gym.registry.get(env_id)
    return spec is not None and spec.entry_point == "forward_models.envs.pong:TwoPlayerPong"


def check_env_installed(env_id: str) -> None:
    """Raise a clear error if ``env_id``'s package is missing (e.g. box2d for CarRacing)."""
    entry = gym.registry[env_id].entry_point
    if not isinstance(entry, str) or entry.startswith("forward_models."):
        return  # ours are here (and Dream's would import torch)
    try:
        gym.envs.registration.load_env_creator(entry)
    except (ImportError, gym.error.DependencyNotInstalled) as exc:
        raise UnknownEnvError(f"{env_id!r} cannot be built here: {exc}") from None


def _register_ale() -> None:
    try:
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:  # ALE ids then fail as unknown
        pass


def check_env_id(env_id: str) -> None:
    """Raise :class:`UnknownEnvError`, with close matches, if Gymnasium does not know ``env_id``."""
    if env_id.startswith("ALE/"):
        _register_ale()
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise UnknownEnvError(f"unknown Gymnasium env id {env_id!r}{hint}")


def make(env_id: str, size: int, kwargs: dict | None = None, max_episode_steps: int | None = None):
    """Create ``env_id`` observing ``(size, size, 3)`` uint8 frames."""
    check_env_id(env_id)
    if size <= 0:
        raise ValueError(f"frame size must be a positive number of pixels, got {size}")
    kwargs = dict(kwargs or {})
    if env_id in BUILTIN:
        env = gym.make(env_id, size=size, max_episode_steps=max_episode_steps, **kwargs)
    else:
        env = gym.make(
            env_id, render_mode="rgb_array", max_episode_steps=max_episode_steps, **kwargs
        )
        env = RenderedFrames(env, size)
    if isinstance(env.action_space, gym.spaces.MultiDiscrete):
        env = FlatMultiDiscrete(env)
    if not isinstance(env.action_space, gym.spaces.Discrete | gym.spaces.Box):
        raise ValueError(
            f"{env_id}: action space {env.action_space} is not Discrete, MultiDiscrete or Box"
        )
    return env


class FlatMultiDiscrete(gym.ActionWrapper):
    """``MultiDiscrete(nvec)`` as ``Discrete(prod(nvec))``: index = ``np.ravel_multi_index(a, nvec)``
    (C order: the last component varies fastest)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.nvec = tuple(int(n) for n in env.action_space.nvec.ravel())
        self.action_space = gym.spaces.Discrete(int(np.prod(self.nvec)))

    def action(self, action):
        return np.array(np.unravel_index(int(action), self.nvec), dtype=np.int64)


class RenderedFrames(gym.ObservationWrapper):
    """Observe the env's ``rgb_array`` rendering, area-resized (antialiased) to ``size`` x ``size``."""

    def __init__(self, env: gym.Env, size: int):
        super().__init__(env)
        if env.render_mode != "rgb_array" or "rgb_array" not in env.metadata.get(
            "render_modes", []
        ):
            raise ValueError(
                f"{env.spec.id if env.spec else env} does not render rgb_array frames "
                f"(its render modes: {env.metadata.get('render_modes', [])}); forward models learn from pixels"
            )
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def observation(self, _obs) -> np.ndarray:
        frame = np.asarray(self.env.render())[..., :3]
        if frame.shape[:2] != (self.size, self.size):
            img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
            frame = np.asarray(img.resize((self.size, self.size), Image.Resampling.BOX))
        return frame
