"""Every score the project reports, in one place (OpenSTL keeps one metrics module too).

Per episode and horizon step: MSE on [0, 1] pixels, PSNR and SSIM (:func:`step_errors`); and a
model's standing against the floor (the MSE-optimal prediction, :mod:`forward_models.floor`) on
the same frames: ``x floor`` (:func:`x_floor`) and dB above it (:func:`db_above_floor`).
Evaluation, the leaderboard and the benchmarks all score through here.
"""

from __future__ import annotations

import numpy as np
import torch

PSNR_CAP = 100.0  # dB: a step predicted exactly (MSE clamped at 1e-10)


def step_errors(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, np.ndarray]:
    """Per episode and step (E, T) of ``(E, T, C, H, W)`` frames: MSE on [0, 1] pixels, PSNR in
    dB (capped at :data:`PSNR_CAP`) and SSIM."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    mse = ((pred - truth) ** 2).flatten(2).mean(-1).clamp_min(1e-10)
    e, t = mse.shape
    s = ssim(
        pred.flatten(0, 1).float(), truth.flatten(0, 1).float(), data_range=1.0, reduction="none"
    )
    return {
        "mse": mse.numpy(),
        "psnr": (10 * torch.log10(1.0 / mse)).numpy(),
        "ssim": s.view(e, t).numpy(),
    }


def horizon_mse(pred: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """MSE at each horizon step, averaged over the episodes: ``(T,)``."""
    return step_errors(pred, truth)["mse"].mean(0)


def x_floor(mse, floor_mse):
    """A model's MSE as a multiple of the floor's on the same frames (arrays, series or floats,
    broadcast as numpy or pandas do); 1 is the best any predictor can do in expectation."""
    return mse / floor_mse


def db_above_floor(ratio):
    """An ``x floor`` ratio in dB: ``10 log10(ratio)``."""
    return 10 * np.log10(ratio)
