"""Environments: the table of the envs this project ships (:data:`KINDS`), and one constructor
for any Gymnasium id that renders pixels.

Every environment made here observes ``(size, size, 3)`` uint8 frames: built-in envs that draw
at any size do so, any other id is rendered with ``render_mode="rgb_array"`` and resized. What
the project knows about a built-in env lives in its :class:`EnvKind` row (how it is made, its
ids, its floor, the scripted agents written for it); its key map is the env's own
``get_keys_to_action``, as ALE's envs have one.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image

PONG_ID = "forward_models/TwoPlayerPong-v0"
PONG_FIXED_ID = "forward_models/TwoPlayerPongFixed-v0"
CUBE_CRASH_ID = "forward_models/CubeCrash-v0"
DREAM_ID = "forward_models/Dream-v0"


@dataclass(frozen=True)
class EnvKind:
    """What the project knows about one kind of env it ships (DreamerV3's ``make_env`` table)."""

    name: str
    entry_point: str
    """Gymnasium entry point of its class."""
    ids: dict[str, dict[str, Any]]
    """The ids it is registered under, each with its registered kwargs."""
    draws_at_size: bool = False
    """Draws at the config's frame size (``size`` kwarg); otherwise rendered and resized."""
    floor: str | None = None
    """``module:function`` of its floor (:mod:`forward_models.floor`), or None."""
    floor_sampler: str | None = None
    """``module:function`` drawing futures from the floor's posterior; None where the posterior
    is one point (the floor's frames are then every sample)."""
    agents: tuple[str, ...] = ()
    """Scripted agents written for it (:data:`forward_models.agents.AGENTS`); the generic ones
    fit every env."""
    max_episode_steps: int | None = None
    """The step limit it is registered with (None: only the config's ``max_episode_steps``)."""
    scripted: tuple[str, dict[str, Any]] | None = None
    """The scripted agent that plays it well and its options: the agents' ``scripted``
    reference (:mod:`forward_models.policies`)."""

    def floor_function(self):
        return _load(self.floor)

    def floor_sampler_function(self):
        return _load(self.floor_sampler) if self.floor_sampler else None


def _load(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


KINDS = (
    EnvKind(
        "pong",
        "forward_models.envs.pong:TwoPlayerPong",
        {PONG_ID: {}, PONG_FIXED_ID: {"heading": 0.3}},
        draws_at_size=True,
        floor="forward_models.floor.pong:pong_floor",
        floor_sampler="forward_models.floor.pong:pong_floor_samples",
        agents=("pong",),
        scripted=("pong", {"stochasticity": 0.0}),
    ),
    EnvKind(
        "cube_crash",
        "forward_models.envs.cube_crash:CubeCrash",
        {CUBE_CRASH_ID: {}},
        floor="forward_models.floor.cube_crash:cube_crash_floor",
    ),
    # A trained checkpoint's dynamics (imports torch when made); it truncates itself at the
    # true env's step limit.
    EnvKind("dream", "forward_models.dream:Dream", {DREAM_ID: {}}),
)


def register() -> None:
    """Register the built-in envs with Gymnasium (ALE's are registered when an ``ALE/`` id is
    first asked for: importing ale-py costs every config validation otherwise).

    Idempotent; runs on package import.
    """
    for kind in KINDS:
        for env_id, kwargs in kind.ids.items():
            if env_id not in gym.registry:
                gym.register(
                    env_id,
                    entry_point=kind.entry_point,
                    kwargs=kwargs,
                    max_episode_steps=kind.max_episode_steps,
                )


register()


def kind_of(env_id: str) -> EnvKind | None:
    """The built-in kind ``env_id`` is registered as (any id with its entry point), or None."""
    spec = gym.registry.get(env_id)
    return next((k for k in KINDS if spec is not None and spec.entry_point == k.entry_point), None)


def scripted_agent(env_id: str) -> tuple[str, dict[str, Any]] | None:
    """The scripted agent that plays ``env_id`` well (kind, options), if it has one."""
    kind = kind_of(env_id)
    return kind.scripted if kind is not None else None


def env_kwargs(env_id: str, kwargs: dict | None) -> dict:
    """The kwargs ``gymnasium.make`` builds ``env_id`` with: its registered ones, then ``kwargs``."""
    return {**gym.registry[env_id].kwargs, **(kwargs or {})}


class UnknownEnvError(ValueError):
    pass


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
    kind = kind_of(env_id)
    if kind is not None and kind.draws_at_size:
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
