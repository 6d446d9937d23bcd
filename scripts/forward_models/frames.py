"""Frame conversions and the truth | prediction | |difference| picture. Numpy only.

One rounding rule for every consumer (evaluation examples, figures, play, GIFs): a [0, 1] float
becomes ``round(255 * x)``.
"""

from __future__ import annotations

import numpy as np

GAP = 128  # grey of the separator between panels


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (clipped) -> uint8, rounded to the nearest level."""
    return np.rint(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255).astype(np.uint8)


def uint8_frames(x) -> np.ndarray:
    """A torch tensor of (..., C, H, W) floats in [0, 1] -> (..., H, W, C) uint8 (torch is not
    imported here: anything with ``.detach().float().cpu()`` will do)."""
    return to_uint8(channels_last(x.detach().float().cpu().numpy()))


def channels_last(x: np.ndarray) -> np.ndarray:
    """(..., C, H, W) -> (..., H, W, C), as torch lays frames out and images are drawn."""
    return np.moveaxis(np.asarray(x), -3, -1)


def difference(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """|truth - prediction| of uint8 frames, as uint8."""
    return np.abs(truth.astype(np.int16) - pred.astype(np.int16)).astype(np.uint8)


def side_by_side(truth: np.ndarray, pred: np.ndarray, scale: int = 4) -> np.ndarray:
    """(T, H, W, C) uint8 pair -> (T, sH, s(3W + 4), C): truth | prediction | |difference|."""
    return panels([truth, pred, difference(truth, pred)], scale)


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (..., H, W, C) frames."""
    return frames.repeat(scale, axis=-3).repeat(scale, axis=-2)


def panels(rows: list[np.ndarray], scale: int = 4) -> np.ndarray:
    """(T, H, W, C) uint8 clips side by side with grey gaps -> (T, sH, s(nW + 2(n-1)), C)."""
    t, h, _, c = rows[0].shape
    gap = np.full((t, h, 2, c), GAP, np.uint8)
    parts = [part for clip in rows for part in (clip, gap)][:-1]
    return upscale(np.concatenate(parts, axis=2), scale)
