"""CubeCrash's floor: nothing is hidden after the reset, so it is the exact replay by the env."""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

from forward_models.floor.common import FloorError


def cube_crash_floor(
    context: np.ndarray,
    actions: np.ndarray,
    horizon: int,
    *,
    size: int | None = None,
    condition_on_survival: bool = True,
    **env_kwargs,
):
    """Posterior-mean frames of CubeCrash episodes (as made by :func:`forward_models.envs.make`,
    i.e. rendered 40x32 and box-resized to ``size`` x ``size``).

    The reset draws the cube's column and row and the hole's position, and the first frame
    shows all three; the dynamics are deterministic given the actions. The posterior over reset
    states is uniform over those whose replay reproduces every context frame, so the floor is
    the exact replay, error 0, as long as the (resized) reset frames of different states differ;
    they do at the sizes checked (16, 32, 64 with the default hole). Should two states ever
    render the same context, their replays are averaged. ``condition_on_survival`` is as for
    :func:`~forward_models.floor.pong.pong_floor` (a terminated candidate otherwise stays on its
    last frame); ``env_kwargs`` are the env's own (``hole_width``, ``shaped``).

    Args and return as :func:`~forward_models.floor.pong.pong_floor` (actions: ``Discrete(3)``
    indices); ``size`` defaults to the context's frame size. Raises :class:`FloorError` for a
    context that no reset reproduces (windows must start at an episode's start: mid-episode,
    the cube could have been anywhere, which this does not model).
    """
    context = np.asarray(context)
    if context.ndim != 5 or context.shape[-1] != 3:
        raise ValueError(f"context must be (E, P, H, W, 3) frames, got shape {context.shape}")
    e, p = context.shape[:2]
    size = int(size or context.shape[2])
    if context.shape[2:4] != (size, size):
        raise ValueError(f"context frames are {context.shape[2:4]}, not {size}x{size}")
    steps = p - 1 + horizon
    a = np.asarray(actions)
    if a.ndim != 2 or a.shape[0] != e or a.shape[1] < steps:
        raise ValueError(f"actions must be (E={e}, >= {steps}), got shape {a.shape}")
    env, resets = _resets(size, tuple(sorted(env_kwargs.items())))
    out = np.zeros((e, horizon, size, size, 3), np.float64)
    for i in range(e):
        states = resets.get(context[i, 0].tobytes())
        if not states:
            raise FloorError(
                f"context frame 0 of episode {i} is no CubeCrash reset frame at size {size} "
                f"({env_kwargs or 'default settings'}): the floor is defined for episode-start "
                f"windows"
            )
        kept, frozen = [], []
        for state in states:
            frames, ended = _replay(env, state, a[i, :steps])
            if ended < p - 1 or not np.array_equal(frames[1:p], context[i, 1:p]):
                continue  # a candidate that ended inside the context cannot have shown it
            (frozen if ended < steps else kept).append(frames[p:])
        if not condition_on_survival or not kept:
            kept += frozen
        if not kept:
            raise FloorError(f"episode {i}: no CubeCrash reset state reproduces the context")
        out[i] = np.mean(kept, axis=0) / 255.0
    return out.astype(np.float32)


@lru_cache(maxsize=8)
def _resets(size: int, env_kwargs: tuple):
    """The env (wrapped as :func:`forward_models.envs.make` wraps it) and every reset state
    (the env's own :meth:`~forward_models.envs.cube_crash.CubeCrash.start_ranges`) by the bytes
    of its first frame."""
    from forward_models.envs import CUBE_CRASH_ID, make

    env = make(CUBE_CRASH_ID, size, dict(env_kwargs))
    env.reset(seed=0)
    u = env.unwrapped
    table: dict[bytes, list[tuple[int, ...]]] = {}
    ranges = u.start_ranges()
    for state in itertools.product(*(range(*r) for r in ranges.values())):
        u.set_state(*state)
        table.setdefault(env.observation(None).tobytes(), []).append(state)
    return env, table


def _replay(env, state, actions) -> tuple[np.ndarray, int]:
    """Frames 0..T of the replay from ``state`` (after a termination the last frame repeats)
    and the frame at which it terminated (``T + 1`` if it did not)."""
    u = env.unwrapped
    u.set_state(*state)
    frames = [env.observation(None)]
    ended = len(actions) + 1
    for t, act in enumerate(actions):
        if ended <= t:
            frames.append(frames[-1])
            continue
        _, _, terminated, _, _ = u.step(int(act))
        frames.append(env.observation(None))
        if terminated:
            ended = t + 1
    return np.stack(frames), ended
