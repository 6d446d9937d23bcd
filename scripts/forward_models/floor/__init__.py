"""The floor: the MSE-optimal open-loop prediction, for the built-in envs whose dynamics are known.

Open-loop evaluation (:mod:`forward_models.evaluation`) shows a model the first ``P`` frames of
an episode and the actions, and scores its next ``horizon`` frames by per-pixel MSE. Where part
of the env's state is hidden from those frames, no predictor can be exact; the best any can do,
in expectation, is the posterior-mean frame given what it was shown. That prediction and its
error are computed here, exactly up to a documented numerical resolution, by replaying the env
with its own rules (one module per env: :mod:`.pong`, :mod:`.cube_crash`; which env has which
floor is the env table's :attr:`~forward_models.envs.EnvKind.floor`).

Conventions (those of :func:`forward_models.models.base.split_window`): a window holds frames
``o[0..L-1]`` and actions ``a[0..L-1]``, where ``a[t]`` is taken at ``o[t]`` and leads to
``o[t+1]``. The floor is given the context ``o[0..P-1]`` and the actions ``a[0..P-2+horizon]``
and returns its predictions of ``o[P..P-1+horizon]`` (models see only ``a[P-1..]``; the floor
may use the earlier actions too, since it replays from the reset: with rounding to pixels the
paddles' sub-pixel positions cannot be read from frames alone).

What the floor conditions on, and what it does not:

* The context frames (exactly, pixel for pixel) and the fact that the episode lasted long enough
  to be evaluated: by default a candidate hidden state under which the env would have terminated
  before the last predicted frame is dropped (``condition_on_survival``), because evaluation only
  uses episodes with at least ``P + horizon`` rows. That makes it the Bayes predictor on exactly
  the evaluated episodes, so no predictor of the frames from (context, actions) beats it in
  expectation there. With ``condition_on_survival=False`` a candidate that terminates is instead
  frozen as the env leaves it (the ball clamped at the side wall, where the env stops it; the
  paddles, which do not depend on the hidden state, keep following the actions).
* The actions are treated as exogenous: their likelihood is not used. The rollout agents react
  to the ball (``PongAgent`` tracks it), so the actions themselves carry a little information
  about the hidden heading that a model could in principle exploit; the floor ignores it.
* Windows must start at an episode's start: after the reset the only hidden quantity is the
  heading (Pong) or nothing (CubeCrash). A window starting mid-episode also hides the ball's
  sub-pixel position and velocity and the paddles' sub-pixel positions, which the posterior here
  does not model. The reset frame is recognisable, so such windows raise :class:`FloorError`
  (unless they happen to show exactly the reset frame, and the replay then reproduces their
  context, in which case the floor is the floor of that replayed episode).

This package needs numpy and gymnasium (Pillow for CubeCrash's resized frames); it never
imports torch.
"""

from __future__ import annotations

import numpy as np

from forward_models.floor.common import FloorError

__all__ = ["FloorError", "floor_for_env", "floor_samples_for_env", "has_floor", "hides_state"]


def has_floor(env_id: str) -> bool:
    """Whether ``env_id``'s kind has a floor in the env table (built-in Pong, CubeCrash)."""
    from forward_models import envs

    kind = envs.kind_of(env_id)
    return kind is not None and kind.floor is not None


def hides_state(env_id: str) -> bool:
    """Whether ``env_id``'s floor has a posterior of more than one point (a hidden start state,
    Pong's heading, drawn by its sampler): only such a floor takes a grid over that state
    (``n_headings``); CubeCrash's reset frame shows its whole state."""
    from forward_models import envs

    kind = envs.kind_of(env_id)
    return kind is not None and kind.floor_sampler is not None


def _floor_call(env_id: str, env_kwargs: dict | None, size: int):
    from forward_models import envs

    kind = envs.kind_of(env_id)
    if kind is None or kind.floor is None:
        raise ValueError(f"no floor for {env_id!r}: only the built-in Pong and CubeCrash have one")
    kwargs = envs.env_kwargs(env_id, env_kwargs)
    if kwargs.pop("size", size) != size:
        raise ValueError(f"env_kwargs size={env_kwargs['size']} disagrees with size={size}")
    return kind, {"size": size, **kwargs}


def floor_for_env(
    env_id: str,
    env_kwargs: dict | None,
    size: int,
    context: np.ndarray,
    actions: np.ndarray,
    horizon: int,
    **options,
) -> np.ndarray:
    """The floor's predictions, float32 ``(E, horizon, size, size, 3)``, for an env id.

    ``env_kwargs`` are the config's kwargs for the env; the id's registered kwargs (e.g. the
    fixed ``heading`` of ``forward_models/TwoPlayerPongFixed-v0``) come first and are
    overridden by them, as in ``gymnasium.make``. ``options`` go to the env's floor function
    (:func:`.pong.pong_floor`, :func:`.cube_crash.cube_crash_floor`). Defined for episode-start
    windows only (see the module docstring).
    """
    kind, kwargs = _floor_call(env_id, env_kwargs, size)
    return kind.floor_function()(context, actions, horizon, **kwargs, **options)


def floor_samples_for_env(
    env_id: str,
    env_kwargs: dict | None,
    size: int,
    context: np.ndarray,
    actions: np.ndarray,
    horizon: int,
    k: int,
    rng: np.random.Generator,
    **options,
) -> tuple[np.ndarray, np.ndarray]:
    """The floor's predictions (as :func:`floor_for_env`) and ``k`` futures drawn from its
    posterior, ``(E, k, horizon, size, size, 3)``: on Pong uniform over the consistent
    headings (:func:`.pong.pong_floor_samples`); where the posterior is one point (CubeCrash,
    whose reset frame shows its whole state) every sample is the floor's prediction."""
    kind, kwargs = _floor_call(env_id, env_kwargs, size)
    sampler = kind.floor_sampler_function()
    if sampler is not None:
        return sampler(context, actions, horizon, k, rng, **kwargs, **options)
    mean = kind.floor_function()(context, actions, horizon, **kwargs, **options)
    return mean, np.repeat(mean[:, None], k, axis=1)
