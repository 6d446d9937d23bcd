"""Agents that drive rollouts. Each episode gets its own generator, so rollouts are reproducible.

An agent is reset with the episode's ``numpy.random.Generator`` and then asked for one action
per step from the observation and the env's info dict.
"""

from __future__ import annotations

import inspect
import math
from typing import ClassVar, Protocol

import numpy as np
from gymnasium import spaces

from forward_models.envs.pong import encode_action


class Agent(Protocol):
    def reset(self, rng: np.random.Generator) -> None: ...

    def act(self, obs: np.ndarray, info: dict): ...


class RandomAgent:
    """Uniform random actions from the action space."""

    any_env: ClassVar[bool] = True

    @staticmethod
    def check() -> dict:
        """The options (none), or a ValueError."""
        return {}

    def __init__(self, action_space: spaces.Space, size: int | None = None):
        self.space = action_space

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.space.seed(int(rng.integers(2**31)))

    def act(self, obs, info):
        return self.space.sample()


class StickyRandomAgent(RandomAgent):
    """Repeats its last action with probability ``stickiness``: smoother, wider-ranging motion."""

    def __init__(self, action_space: spaces.Space, size: int | None = None, stickiness=0.8):
        super().__init__(action_space)
        self.stickiness = self.check(stickiness=stickiness)["stickiness"]

    @staticmethod
    def check(stickiness=0.8) -> dict:
        """The options, or a ValueError naming the bad one and its range."""
        if not (isinstance(stickiness, int | float) and 0 <= stickiness <= 1):
            raise ValueError(f"stickiness must be a probability in [0, 1], got {stickiness!r}")
        return {"stickiness": float(stickiness)}

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

    any_env: ClassVar[bool] = False

    def __init__(self, action_space: spaces.Space, size: int, stochasticity=(0.5, 1.0)):
        if not (isinstance(action_space, spaces.Discrete) and action_space.n == 9):
            raise ValueError(f"the Pong agent needs Discrete(9) actions, got {action_space}")
        self.range, self.size = self.check(stochasticity=stochasticity)["stochasticity"], size

    @staticmethod
    def check(stochasticity=(0.5, 1.0)) -> dict:
        """The options, or a ValueError naming the bad one and its range."""
        pair = [stochasticity] * 2 if np.isscalar(stochasticity) else list(stochasticity)
        if not (
            len(pair) == 2
            and all(isinstance(v, int | float) for v in pair)
            and 0 <= pair[0] <= pair[1] <= 1
        ):
            raise ValueError(
                f"stochasticity must be a probability in [0, 1] or a range [low, high] within "
                f"it, got {stochasticity!r}"
            )
        return {"stochasticity": (float(pair[0]), float(pair[1]))}

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


class KeyboardAgent:
    """A person at the keyboard: the caller reports held keys with :meth:`hold`; ``act`` maps them.

    ``keymap`` maps a sorted tuple of key names (pygame's ``key.name`` spelling) to an action;
    the longest combination whose keys are all held wins, else ``default``.
    """

    def __init__(self, keymap: dict[tuple[str, ...], object], default):
        self.keymap = {tuple(sorted(k)): v for k, v in keymap.items()}
        self.default, self.held = default, frozenset()

    def reset(self, rng=None) -> None:
        self.held = frozenset()

    def hold(self, keys) -> None:
        self.held = frozenset(keys)

    def act(self, obs=None, info=None):
        best = max((k for k in self.keymap if set(k) <= self.held), key=len, default=None)
        return self.default if best is None else self.keymap[best]


def keyboard_agent(env) -> KeyboardAgent:
    """A keyboard agent for ``env``: its own ``get_keys_to_action`` (the built-in envs and
    ALE's), else the digit keys pick a discrete action."""
    space, inner = env.action_space, env.unwrapped
    if hasattr(inner, "get_keys_to_action"):
        keys = {
            tuple(chr(c) if isinstance(c, int) else c for c in k): v
            for k, v in inner.get_keys_to_action().items()
        }
        return KeyboardAgent(keys, keys.get((), 0))
    if isinstance(space, spaces.Discrete):
        return KeyboardAgent({(str(i),): i for i in range(min(space.n, 10))}, 0)
    raise ValueError(f"no keyboard map for {env.spec.id if env.spec else env} with actions {space}")


AGENTS = {"random": RandomAgent, "sticky": StickyRandomAgent, "pong": PongAgent}
"""Every agent kind a config can name. Those with ``any_env`` False were written for particular
envs, which list them in the env table (:attr:`forward_models.envs.EnvKind.agents`)."""


def make_agent(kind: str, action_space: spaces.Space, size: int, **kwargs) -> Agent:
    """Build an agent by its config name."""
    if kind not in AGENTS:
        raise ValueError(f"unknown agent {kind!r}; expected one of {', '.join(map(repr, AGENTS))}")
    return AGENTS[kind](action_space, size, **kwargs)


def check_options(kind: str, kwargs: dict) -> None:
    """A ValueError, before any episode runs, if agent ``kind`` has no such option or a value out
    of its range (each agent's own ``check``, which its constructor applies too)."""
    check = AGENTS[kind].check
    known = list(inspect.signature(check).parameters)
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        has = f"its options are {', '.join(known)}" if known else "it takes no options"
        raise ValueError(f"agent kind {kind!r} has no option {', '.join(unknown)}: {has}")
    check(**kwargs)


def fits(kind: str, env_id: str) -> bool:
    """Whether agent ``kind`` can drive ``env_id``: a generic agent any env, a scripted one the
    envs whose table entry lists it."""
    from forward_models import envs

    if AGENTS[kind].any_env:
        return True
    env_kind = envs.kind_of(env_id)
    return env_kind is not None and kind in env_kind.agents
