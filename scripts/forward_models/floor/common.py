"""What every env's floor shares: its error and the box sums its renderings are made of."""

from __future__ import annotations

import numpy as np


class FloorError(ValueError):
    """The context cannot come from the env's reset: not an episode-start window, other env
    settings than those given, or actions misaligned with the frames."""


def box_sums(a: np.ndarray, b: int) -> np.ndarray:
    """Sums over every ``b`` x ``b`` square of the last two axes (corners in [0, S - b]); bool
    and integer inputs are summed as int32, floats as float64."""
    dtype = np.float64 if np.issubdtype(a.dtype, np.floating) else np.int32
    ii = np.zeros((*a.shape[:-2], a.shape[-2] + 1, a.shape[-1] + 1), dtype)
    ii[..., 1:, 1:] = a.astype(dtype).cumsum(-2).cumsum(-1)
    return ii[..., b:, b:] - ii[..., :-b, b:] - ii[..., b:, :-b] + ii[..., :-b, :-b]
