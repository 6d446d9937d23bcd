"""Diffusion world model after DIAMOND (Alonso et al. 2024, eloialonso/diamond
``src/models/diffusion/`` and ``config/``), at a small scale: each next frame is sampled by
denoising Gaussian noise, conditioned on the last P frames and the action.

An EDM-preconditioned U-Net (Karras et al. 2022) denoises the next frame, in [-1, 1], given the
last P frames stacked in channels (rescaled by ``1 / sigma_data``) and the action: the action's
embedding is added to the Fourier features of the noise level, projected by a 2-layer MLP, and
applied in every residual block through adaptive group norm (a per-channel scale and shift of
the normalised features). Training: DIAMOND's denoising loss, with training noise levels drawn
log-normal and offset noise; along a window each denoised estimate (one denoising step, under
no gradient) replaces its frame in the next position's conditioning, as DIAMOND's
``Denoiser.forward`` does. Sampling: the Euler sampler over Karras' sigma schedule from
``sample_sigma_max`` to ``sample_sigma_min`` and then 0, its noise drawn with the caller's
generator; each denoised estimate is quantised to 256 levels (``wrap_model_output``).

Values followed from the public code and configs: ``sigma_data: 0.5``,
``sigma_offset_noise: 0.3``, training noise ``loc: -0.4, scale: 1.2`` clipped to
``[2e-3, 20]``; sampler ``sigma_min: 2e-3, sigma_max: 5, rho: 7, order: 1`` with
``num_steps_denoising: 3``; ``c_noise = log(sigma) / 4``; residual blocks of two 3x3 convs with adaptive group norm and SiLU, a 1x1 projection where the
width changes. Smaller than DIAMOND's ``channels: [64, 64, 64, 64]``, ``depths: [2, 2, 2, 2]``,
``cond_channels: 256``, without attention (its ``attn_depths`` are 0 too). Changed: the output
conv starts near zero rather than at zero (a zero layer passes no gradient back at the first
step and leaves an untrained model deaf to its inputs). Simplified: only
the action leading to the next frame conditions it (DIAMOND embeds the last P actions; the
models here are given no actions inside the precondition).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from forward_models.model_config import ModelConfig
from forward_models.models.base import ActionEncoder, ForwardModel, register


class DiffusionConfig(ModelConfig):
    stochastic = True
    draws_pixels = True
    TINY = {"channels": [4, 8], "cond_channels": 8}

    arch: Literal["diffusion"] = "diffusion"
    channels: list[int] = Field([32, 32, 64], min_length=1)
    """U-Net widths per level; each level after the first halves the resolution."""
    depth: int = Field(1, ge=1)
    """Residual blocks per level and direction (DIAMOND: 2)."""
    cond_channels: int = Field(64, ge=2)
    """Size of the noise-level and action conditioning vector (DIAMOND: 256). Even."""
    sigma_data: float = Field(0.5, gt=0)
    """EDM's data standard deviation, for frames in [-1, 1]."""
    sigma_offset_noise: float = Field(0.3, ge=0)
    """Standard deviation of per-channel offset noise added in training."""
    train_sigma_loc: float = -0.4
    """Mean of log(sigma) of the training noise levels."""
    train_sigma_scale: float = Field(1.2, gt=0)
    """Standard deviation of log(sigma) of the training noise levels."""
    train_sigma_min: float = Field(2e-3, gt=0)
    """Training noise levels are clipped below at this."""
    train_sigma_max: float = Field(20.0, gt=0)
    """Training noise levels are clipped above at this."""
    sample_steps: int = Field(3, ge=1)
    """Euler steps per sampled frame (DIAMOND: 3)."""
    sample_sigma_min: float = Field(2e-3, gt=0)
    """The sampler's last noise level before 0."""
    sample_sigma_max: float = Field(5.0, gt=0)
    """The sampler's first noise level."""
    rho: float = Field(7.0, gt=0)
    """Karras' schedule exponent."""

    def frame_problem(self, size: int) -> str | None:
        factor = 2 ** (len(self.channels) - 1)
        return None if size % factor == 0 else f"needs a size divisible by {factor} (its U-Net)"


def norm_groups(c: int) -> int:
    return max(1, c // 16)


class FourierFeatures(nn.Module):
    """cos and sin of the input times fixed random frequencies (DIAMOND's ``FourierFeatures``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("weight", torch.randn(1, channels // 2))

    def forward(self, x):
        f = 2 * math.pi * x[:, None] * self.weight
        return torch.cat([f.cos(), f.sin()], -1)


class AdaGroupNorm(nn.Module):
    """Group norm whose per-channel scale and shift come from the conditioning vector."""

    def __init__(self, channels: int, cond: int):
        super().__init__()
        self.groups = norm_groups(channels)
        self.linear = nn.Linear(cond, 2 * channels)

    def forward(self, x, cond):
        x = F.group_norm(x, self.groups, eps=1e-5)
        scale, shift = self.linear(cond)[:, :, None, None].chunk(2, 1)
        return x * (1 + scale) + shift


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond: int):
        super().__init__()
        self.proj = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.norm1, self.conv1 = AdaGroupNorm(c_in, cond), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = AdaGroupNorm(c_out, cond), nn.Conv2d(c_out, c_out, 3, padding=1)

    def forward(self, x, cond):
        r = self.proj(x)
        x = self.conv1(F.silu(self.norm1(x, cond)))
        x = self.conv2(F.silu(self.norm2(x, cond)))
        return x + r


class UNet(nn.Module):
    """Levels of residual blocks, strided-conv down and nearest-up between them, skip
    connections concatenated on the way up."""

    def __init__(self, channels: list[int], depth: int, cond: int):
        super().__init__()
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        self.downsample, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, c in enumerate(channels):
            c_prev = channels[max(i - 1, 0)]
            self.down.append(
                nn.ModuleList(ResBlock(c_prev if j == 0 else c, c, cond) for j in range(depth))
            )
            self.up.append(
                nn.ModuleList(ResBlock((2 * c if j == 0 else c), c, cond) for j in range(depth))
            )
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, 2, 1))
                self.upsample.append(nn.Conv2d(channels[i + 1], c, 3, padding=1))

    def forward(self, x, cond):
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                x = block(x, cond)
            skips.append(x)
            if i < len(self.downsample):
                x = self.downsample[i](x)
        for i in reversed(range(len(self.up))):
            if i < len(self.upsample):
                x = self.upsample[i](F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = torch.cat([x, skips[i]], 1)
            for block in self.up[i]:
                x = block(x, cond)
        return x


def quantise(x: torch.Tensor) -> torch.Tensor:
    """A denoised estimate clamped to [-1, 1] and rounded to 256 levels (DIAMOND's
    ``wrap_model_output``)."""
    return x.clamp(-1, 1).add(1).mul(127.5).round().div(127.5).sub(1)


def karras_sigmas(steps: int, lo: float, hi: float, rho: float) -> torch.Tensor:
    """DIAMOND's ``build_sigmas``: ``steps`` levels from ``hi`` to ``lo``, then 0."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    sigmas = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


@register
class Diffusion(ForwardModel):
    Config = DiffusionConfig

    def __init__(self, cfg: DiffusionConfig, frame_shape, n_actions, action_dim: int = 0):
        super().__init__(cfg, frame_shape, n_actions, action_dim)
        c = frame_shape[0]
        k = cfg.cond_channels
        self.noise_emb = FourierFeatures(k)
        self.act_emb = ActionEncoder(n_actions, k, action_dim)
        self.cond_proj = nn.Sequential(nn.Linear(k, k), nn.SiLU(), nn.Linear(k, k))
        self.conv_in = nn.Conv2d((cfg.precondition + 1) * c, cfg.channels[0], 3, padding=1)
        self.unet = UNet(cfg.channels, cfg.depth, k)
        self.norm_out = nn.GroupNorm(norm_groups(cfg.channels[0]), cfg.channels[0])
        self.conv_out = nn.Conv2d(cfg.channels[0], c, 3, padding=1)
        with torch.no_grad():  # near zero: the denoiser starts at EDM's skip path
            self.conv_out.weight.mul_(0.01)
        self.register_buffer(
            "sigmas",
            karras_sigmas(cfg.sample_steps, cfg.sample_sigma_min, cfg.sample_sigma_max, cfg.rho),
            persistent=False,
        )

    # --- EDM --------------------------------------------------------------------------------
    def _conditioners(self, sigma: torch.Tensor):
        cfg = self.cfg
        sigma = (sigma**2 + cfg.sigma_offset_noise**2).sqrt()
        c_in = 1 / (sigma**2 + cfg.sigma_data**2).sqrt()
        c_skip = cfg.sigma_data**2 / (sigma**2 + cfg.sigma_data**2)
        c_out = sigma * c_skip.sqrt()
        c_noise = sigma.log() / 4
        shape = (-1, 1, 1, 1)
        return c_in.view(shape), c_out.view(shape), c_skip.view(shape), c_noise

    def _inner(self, noisy, c_noise, past, action):
        """The U-Net's output for ``noisy`` (B, C, H, W), ``past`` (B, P * C, H, W) in [-1, 1]."""
        cond = self.cond_proj(self.noise_emb(c_noise) + self.act_emb(action))
        x = self.conv_in(torch.cat([past / self.cfg.sigma_data, noisy], 1))
        x = self.unet(x, cond)
        return self.conv_out(F.silu(self.norm_out(x)))

    def _denoise(self, noisy, sigma, past, action):
        """The denoised estimate, quantised to 256 levels in [-1, 1] (DIAMOND's wrap)."""
        c_in, c_out, c_skip, c_noise = self._conditioners(sigma)
        return quantise(c_skip * noisy + c_out * self._inner(noisy * c_in, c_noise, past, action))

    # --- the interface ----------------------------------------------------------------------
    def init_state(self, context, generator=None):
        return {"past": context * 2 - 1}  # (B, P, C, H, W) in [-1, 1]

    def step(self, state, action, generator=None):
        past = state["past"]
        b, _, c, h, w = past.shape
        flat = past.flatten(1, 2)
        x = (
            torch.randn(b, c, h, w, generator=generator, device=past.device, dtype=past.dtype)
            * self.sigmas[0]
        )
        for sigma, nxt in zip(self.sigmas[:-1], self.sigmas[1:], strict=True):  # Euler
            s = sigma.expand(b)
            denoised = self._denoise(x, s, flat, action)
            x = x + (x - denoised) / sigma * (nxt - sigma)
        frame = x.clamp(-1, 1)
        past = torch.cat([past[:, 1:], frame[:, None]], 1)
        return (frame + 1) / 2, {"past": past}

    def loss(self, batch):
        cfg, p = self.cfg, self.cfg.precondition
        obs = batch["obs"] * 2 - 1
        b, L = obs.shape[:2]
        frames, total, count = obs.clone(), obs.new_zeros(()), obs.new_zeros(())
        for i in range(L - p):
            past, target = frames[:, i : i + p].flatten(1, 2), obs[:, i + p]
            action = batch["action"][:, i + p - 1]  # a[t - 1] leads to frame t
            mask = batch["mask"][:, i + p].to(obs.dtype)
            sigma = (
                (torch.randn(b, device=obs.device) * cfg.train_sigma_scale + cfg.train_sigma_loc)
                .exp()
                .clamp(cfg.train_sigma_min, cfg.train_sigma_max)
            )
            offset = cfg.sigma_offset_noise * torch.randn(b, obs.shape[2], 1, 1, device=obs.device)
            noisy = target + offset + torch.randn_like(target) * sigma.view(-1, 1, 1, 1)
            c_in, c_out, c_skip, c_noise = self._conditioners(sigma)
            out = self._inner(noisy * c_in, c_noise, past, action)
            want = (target - c_skip * noisy) / c_out
            per = (out - want).pow(2).flatten(1).mean(-1)
            total = total + (per * mask).sum()
            count = count + mask.sum()
            with torch.no_grad():  # the next position conditions on this estimate
                frames[:, i + p] = quantise(c_skip * noisy + c_out * out)
        loss = total / count.clamp_min(1.0)
        return loss, {"loss": loss.detach()}
