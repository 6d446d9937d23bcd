"""Every score the project reports, in one place (OpenSTL keeps one metrics module too).

Per episode and horizon step: MSE on [0, 1] pixels, PSNR and SSIM of a point prediction
(:func:`step_errors`); for K sampled futures, the energy score, the spread and best-of-K MSE
(:func:`sample_scores`); and a model's standing against the floor (the MSE-optimal prediction,
:mod:`forward_models.floor`) on the same frames: ``x floor`` (:func:`x_floor`), dB above it
(:func:`db_above_floor`), and the same ratio for the energy score against the floor's posterior
samples. Evaluation, the leaderboard and the benchmarks all score through here.

Distances between frames are RMS over pixels and channels, ``d(a, b) = sqrt(mean((a - b)^2))``
(a frame's Euclidean norm over sqrt(C H W)), so a point prediction's energy score is its RMSE.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP = 100.0  # dB: a step predicted exactly (MSE clamped at 1e-10)


SSIM_FRAMES = 32
"""Frames per SSIM call: the grouped convolution's temporaries grow with the batch; over a whole
evaluation at once (3,000 Pong frames) it ran ~9x slower on a CPU than in slices of 32, with the
same values (most of the time went to the kernel paging the temporaries in)."""


def _mse(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    return ((pred - truth) ** 2).flatten(2).mean(-1).clamp_min(1e-10)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM of each of ``(N, C, H, W)`` frames on [0, 1] (Wang et al. 2004: an 11x11 Gaussian
    window of sigma 1.5, K1 0.01, K2 0.03, frames reflect-padded by 5 and the map averaged over
    every pixel and channel): torchmetrics' ``structural_similarity_index_measure`` with
    ``data_range=1``, to float rounding (a test holds them equal), here so that an evaluation
    does not import torchmetrics (~2.5 s per job)."""
    c, half = a.shape[1], 5
    x = torch.arange(-half, half + 1, dtype=a.dtype, device=a.device)
    g = torch.exp(-((x / 1.5) ** 2) / 2)
    g = g / g.sum()
    kernel = torch.outer(g, g).expand(c, 1, 2 * half + 1, 2 * half + 1)
    a, b = (F.pad(t, (half,) * 4, mode="reflect") for t in (a, b))
    stats = F.conv2d(torch.cat([a, b, a * a, b * b, a * b]), kernel, groups=c)
    mu_a, mu_b, aa, bb, ab = stats.split(len(a))
    var_a, var_b = (aa - mu_a**2).clamp_min(0), (bb - mu_b**2).clamp_min(0)
    cov = ab - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return s.flatten(1).mean(-1)


def step_errors(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, np.ndarray]:
    """Per episode and step (E, T) of ``(E, T, C, H, W)`` frames: MSE on [0, 1] pixels, PSNR in
    dB (capped at :data:`PSNR_CAP`) and SSIM (:func:`ssim`)."""
    mse = _mse(pred, truth)
    e, t = mse.shape
    a, b = pred.flatten(0, 1).float(), truth.flatten(0, 1).float()
    s = torch.cat(
        [
            ssim(a[i : i + SSIM_FRAMES], b[i : i + SSIM_FRAMES])
            for i in range(0, len(a), SSIM_FRAMES)
        ]
    )
    return {
        "mse": mse.numpy(),
        "psnr": (10 * torch.log10(1.0 / mse)).numpy(),
        "ssim": s.view(e, t).numpy(),
    }


def horizon_mse(pred: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """MSE at each horizon step, averaged over the episodes: ``(T,)`` (as :func:`step_errors`'
    ``mse``, without its SSIM)."""
    return _mse(pred, truth).mean(0).numpy()


EXACT = 1e-9
"""A floor's score at or below this is an exact prediction (CubeCrash's floor replays the whole
state its reset frame shows: MSE, ES and spread 0 up to float rounding, ~1e-10): no multiple of
it means anything. One grey level wrong in one pixel of one frame is an MSE of ~5e-9."""


def _over_floor(value, floor):
    """``value / floor``, NaN where the floor is exact (arrays, series or floats)."""
    exact = np.asarray(floor) <= EXACT
    if not exact.any():
        return value / floor
    if hasattr(floor, "where"):  # pandas keeps its index
        return value / floor.where(~exact)
    return value / np.where(exact, np.nan, floor)


def x_floor(mse, floor_mse):
    """A model's MSE as a multiple of the floor's on the same frames (arrays, series or floats,
    broadcast as numpy or pandas do); 1 is the best any predictor can do in expectation. NaN
    where the floor is exact (:data:`EXACT`), as on CubeCrash."""
    return _over_floor(mse, floor_mse)


def db_above_floor(ratio):
    """An ``x floor`` ratio in dB: ``10 log10(ratio)``."""
    return 10 * np.log10(ratio)


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``d(a, b)`` over the trailing (C, H, W) dims of broadcastable frame tensors."""
    return (a.float() - b.float()).pow(2).flatten(-3).mean(-1).sqrt()


def sample_scores(samples: torch.Tensor, truth: torch.Tensor) -> dict[str, np.ndarray]:
    """Scores of K sampled futures per episode and step (E, T), from ``samples``
    (E, K, T, C, H, W) and ``truth`` (E, T, C, H, W):

    * ``es``: the energy score ``E d(S, y) - 1/2 E d(S, S')`` with the unbiased pair term
      (mean over the K (K - 1) ordered pairs of distinct samples); proper, lowest in
      expectation for a sampler of the true distribution, and a point prediction's RMSE.
    * ``spread``: ``E d(S, S')`` over those pairs; 0 for K equal samples (a point predictor).
    * ``mse_best``: the lowest MSE among the K samples (best-of-K, as SVG and SV2P report it);
      not proper: it rewards spread for its own sake.

    A few lines rather than ``scoringrules``' ensemble energy score: the distance here is the
    RMS over pixels (a norm over sqrt(D)), the spread comes out of the same pair distances, and
    the evaluate env needs no extra dependency. K = 1 gives a spread of 0 and ES = RMSE.
    """
    e, k, t = samples.shape[:3]
    s = samples.float().transpose(1, 2).flatten(3)  # (E, T, K, D)
    y = truth.float().flatten(2)  # (E, T, D)
    to_truth = (s - y[:, :, None]).pow(2).mean(-1)  # (E, T, K) squared distances
    if k > 1:
        pair = torch.cdist(s, s).pow(2) / s.shape[-1]  # squared RMS distances, (E, T, K, K)
        spread = pair.clamp_min(0).sqrt().sum((-1, -2)) / (k * (k - 1))
    else:
        spread = torch.zeros(e, t)
    es = to_truth.sqrt().mean(-1) - 0.5 * spread
    return {
        "es": es.numpy(),
        "spread": spread.numpy(),
        "mse_best": to_truth.min(-1).values.clamp_min(1e-10).numpy(),
    }


def spread_ratio(spread, floor_spread):
    """A model's mean spread over the posterior's on the same frames: 1 is calibrated, below 1
    under-dispersed, 0 a point predictor (arrays, series or floats). NaN where the posterior
    is one point (no spread to match, as on CubeCrash)."""
    return _over_floor(spread, floor_spread)
