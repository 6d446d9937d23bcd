"""RSSM after DreamerV3 (Hafner et al. 2023, danijar/dreamerv3 ``rssm.py`` and ``configs.yaml``),
at a small scale: a world model that samples futures.

The state is a deterministic GRU state ``deter`` and a stochastic state of ``stoch`` categorical
variables of ``classes`` classes each. The prior over the stochastic state comes from ``deter``
alone; the posterior from ``deter`` and an encoding of the frame. A decoder draws the frame from
both. Training is DreamerV3's world-model loss on windows, with the posterior at every frame:
reconstruction (squared error summed over the pixels, as its MSE head with ``Agg(..., sum)``)
plus the KL balancing terms ``dyn * KL(sg(post) || prior) + rep * KL(post || sg(prior))``, each
KL summed over the variables and clipped below at ``free_nats``. Open loop (evaluation, play):
the posterior over the precondition frames, then the prior, sampled with the caller's generator
at every step; each call draws one future.

Followed from the public code (``configs.yaml``, ``rssm.py``): categorical latents with a 1%
uniform mix (``unimix: 0.01``) and straight-through gradients; free bits 1 nat over the sum
(``free_nats: 1.0``); ``rep`` 0.1; two prior layers and one posterior layer (``imglayers: 2``,
``obslayers: 1``); RMS norm and SiLU after every hidden layer (``norm: rms, act: silu``);
encoder and decoder of 5x5 convs with max-pool / nearest up-sampling between stages (``kernel:
5, strided: False``), channels ``depth * mults``; a sigmoid image output; the update gate's
bias of -1 (``update - 1``). ``dyn`` is 0.5 as in the paper (the current ``configs.yaml`` has
1.0). At 32x32 the conv stack has 3 stages (``mults`` of length 3): 4 would leave 2x2, which
DreamerV3's own check (``3 <= minres <= 16``) refuses. Smaller than its smallest preset
(``size1m``: deter 512, hidden 64, classes 4, depth 4) in depth, larger in hidden size.
Simplified: the GRU is one ``nn.GRUCell`` over the normed inputs (DreamerV3 uses 8 block-diagonal
groups), and the first P - 1 steps of a window see no action (the models here are given only
the actions from the last precondition frame on, in training as in evaluation).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from forward_models.model_config import ModelConfig
from forward_models.models.base import ActionEncoder, ForwardModel, register, split_window


class RssmConfig(ModelConfig):
    stochastic = True
    draws_pixels = True
    TINY = {"deter": 16, "hidden": 16, "stoch": 4, "classes": 4, "depth": 2, "mults": [2, 3]}

    arch: Literal["rssm"] = "rssm"
    deter: int = Field(256, ge=1)
    """Size of the deterministic (GRU) state."""
    hidden: int = Field(256, ge=1)
    """Width of the hidden layers (GRU input, prior and posterior MLPs)."""
    stoch: int = Field(32, ge=1)
    """Categorical variables of the stochastic state (DreamerV3: 32)."""
    classes: int = Field(16, ge=2)
    """Classes per categorical variable."""
    depth: int = Field(16, ge=1)
    """Conv channels of the first stage; stage i has ``depth * mults[i]``."""
    mults: list[int] = Field([2, 3, 4], min_length=1)
    """Channel multiples per conv stage; each stage halves the resolution (3 at 32x32)."""
    kernel: int = Field(5, ge=1)
    """Conv kernel size (DreamerV3: 5). Odd."""
    embed: int = Field(32, ge=1)
    """Action embedding size."""
    unimix: float = Field(0.01, ge=0, lt=1)
    """Share of the uniform distribution mixed into every categorical (DreamerV3: 0.01)."""
    free_nats: float = Field(1.0, ge=0)
    """Free bits: each KL term (summed over the variables) is clipped below at this."""
    dyn: float = Field(0.5, ge=0)
    """Weight of the dynamics KL, KL(sg(posterior) || prior): trains the prior."""
    rep: float = Field(0.1, ge=0)
    """Weight of the representation KL, KL(posterior || sg(prior)): regularises the posterior."""

    def frame_problem(self, size: int) -> str | None:
        factor = 2 ** len(self.mults)
        if size % factor or not 3 <= size // factor <= 16:
            return (
                f"needs a size divisible by {factor} ({len(self.mults)} conv stages) whose "
                f"1/{factor} is 3-16 (DreamerV3's check)"
            )
        return None


class RMSNorm2d(nn.Module):
    """RMS norm over the channels of every pixel, DreamerV3's ``norm: rms`` for conv maps."""

    def __init__(self, channels: int, eps: float = 1e-4):
        super().__init__()
        self.scale, self.eps = nn.Parameter(torch.ones(channels)), eps

    def forward(self, x):
        x = x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + self.eps)
        return x * self.scale[:, None, None]


def dense(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, o), nn.RMSNorm(o, eps=1e-4), nn.SiLU())


@register
class Rssm(ForwardModel):
    Config = RssmConfig

    def __init__(self, cfg: RssmConfig, frame_shape, n_actions, action_dim: int = 0):
        super().__init__(cfg, frame_shape, n_actions, action_dim)
        c, h, w = frame_shape
        chans = [cfg.depth * m for m in cfg.mults]
        self.minres = (h // 2 ** len(chans), w // 2 ** len(chans))
        layers, c_in = [], c
        for ch in chans:  # conv, max-pool, norm, act (strided: False)
            layers += [
                nn.Conv2d(c_in, ch, cfg.kernel, padding=cfg.kernel // 2),
                nn.MaxPool2d(2),
                RMSNorm2d(ch),
                nn.SiLU(),
            ]
            c_in = ch
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        tokens = chans[-1] * self.minres[0] * self.minres[1]
        z = cfg.stoch * cfg.classes
        self.act_embed = ActionEncoder(n_actions, cfg.embed, action_dim)
        self.core_in = dense(z + cfg.embed, cfg.hidden)
        self.gru = nn.GRUCell(cfg.hidden, cfg.deter)
        with torch.no_grad():  # DreamerV3's update gate: sigmoid(update - 1)
            self.gru.bias_ih[cfg.deter : 2 * cfg.deter] -= 1.0
        self.prior_net = nn.Sequential(
            dense(cfg.deter, cfg.hidden), dense(cfg.hidden, cfg.hidden), nn.Linear(cfg.hidden, z)
        )
        self.post_net = nn.Sequential(
            dense(cfg.deter + tokens, cfg.hidden), nn.Linear(cfg.hidden, z)
        )
        self.space = nn.Sequential(
            nn.Linear(cfg.deter + z, tokens), nn.RMSNorm(tokens, eps=1e-4), nn.SiLU()
        )
        ups = []
        for c_hi, c_lo in zip(chans[::-1][:-1], chans[::-1][1:], strict=True):
            ups += [
                nn.Upsample(scale_factor=2),
                nn.Conv2d(c_hi, c_lo, cfg.kernel, padding=cfg.kernel // 2),
            ]
            ups += [RMSNorm2d(c_lo), nn.SiLU()]
        ups += [
            nn.Upsample(scale_factor=2),
            nn.Conv2d(chans[0], c, cfg.kernel, padding=cfg.kernel // 2),
        ]
        self.up = nn.Sequential(*ups)
        self.chans = chans

    # --- distributions ------------------------------------------------------------------------
    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, stoch, classes) probabilities with the uniform mix."""
        cfg = self.cfg
        p = logits.view(-1, cfg.stoch, cfg.classes).float().softmax(-1)
        return (1 - cfg.unimix) * p + cfg.unimix / cfg.classes

    def _sample(self, probs: torch.Tensor, generator=None) -> torch.Tensor:
        """One-hot samples with straight-through gradients, flattened to (B, stoch * classes)."""
        b, s, k = probs.shape
        idx = torch.multinomial(probs.reshape(-1, k).detach(), 1, generator=generator)
        hard = F.one_hot(idx.view(b, s), k).to(probs.dtype)
        return (hard + probs - probs.detach()).flatten(1)

    # --- the parts ----------------------------------------------------------------------------
    def _core(self, deter, stoch, action_embedding):
        return self.gru(self.core_in(torch.cat([stoch, action_embedding], -1)), deter)

    def _decode(self, deter, stoch):
        x = self.space(torch.cat([deter, stoch], -1))
        x = x.view(-1, self.chans[-1], *self.minres)
        return torch.sigmoid(self.up(x))

    def _no_action(self, b: int, device) -> torch.Tensor:
        return torch.zeros(b, self.cfg.embed, device=device)

    def _observe(self, frames, embeddings, generator=None):
        """Posterior states over ``frames`` (B, L, C, H, W), ``embeddings[:, t]`` the action
        embedding that leads to frame t: (deters, stochs, post logits, prior logits), each (B, L, .)."""
        b, L = frames.shape[:2]
        tokens = self.encoder(frames.flatten(0, 1)).view(b, L, -1)
        deter = frames.new_zeros(b, self.cfg.deter)
        stoch = frames.new_zeros(b, self.cfg.stoch * self.cfg.classes)
        out = {"deter": [], "stoch": [], "post": [], "prior": []}
        for t in range(L):
            deter = self._core(deter, stoch, embeddings[:, t])
            post = self.post_net(torch.cat([deter, tokens[:, t]], -1))
            stoch = self._sample(self._probs(post), generator)
            out["deter"].append(deter)
            out["stoch"].append(stoch)
            out["post"].append(post)
            out["prior"].append(self.prior_net(deter))
        return {k: torch.stack(v, 1) for k, v in out.items()}

    # --- the interface ------------------------------------------------------------------------
    def init_state(self, context, generator=None):
        b, p = context.shape[:2]
        none = self._no_action(b, context.device)[:, None].expand(-1, p, -1)
        seen = self._observe(context, none, generator)
        return {"deter": seen["deter"][:, -1], "stoch": seen["stoch"][:, -1]}

    def step(self, state, action, generator=None):
        deter = self._core(state["deter"], state["stoch"], self.act_embed(action))
        stoch = self._sample(self._probs(self.prior_net(deter)), generator)
        return self._decode(deter, stoch), {"deter": deter, "stoch": stoch}

    def loss(self, batch):
        cfg = self.cfg
        obs = batch["obs"]
        b, L = obs.shape[:2]
        p = cfg.precondition
        context, actions, _, _ = split_window(batch, p)
        # Frame t (t >= P) follows a[t - 1]; the precondition's frames see no action, as in
        # evaluation, where the model is given the actions from a[P - 1] on only.
        emb = torch.cat(
            [
                self._no_action(b, obs.device)[:, None].expand(-1, p, -1),
                self.act_embed(actions.flatten(0, 1)).view(b, L - p, -1),
            ],
            1,
        )
        seen = self._observe(obs, emb)
        mask = batch["mask"].to(obs.dtype)  # (B, L): padded rows count for nothing
        recon = self._decode(seen["deter"].flatten(0, 1), seen["stoch"].flatten(0, 1))
        rec = (recon.view_as(obs) - obs).pow(2).flatten(2).sum(-1)  # summed over pixels
        post, prior = (
            self._probs(seen["post"].flatten(0, 1)),
            self._probs(seen["prior"].flatten(0, 1)),
        )
        dyn = kl(post.detach(), prior).view(b, L).clamp_min(cfg.free_nats)
        rep = kl(post, prior.detach()).view(b, L).clamp_min(cfg.free_nats)
        per_row = rec + cfg.dyn * dyn + cfg.rep * rep
        n = mask.sum().clamp_min(1.0)
        loss = (per_row * mask).sum() / n
        logs = {
            "loss": loss.detach(),
            "rec": ((rec * mask).sum() / n).detach(),
            "kl_dyn": ((dyn * mask).sum() / n).detach(),
        }
        return loss, logs


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of (N, stoch, classes) categoricals, summed over the variables: (N,)."""
    return (p * (p.clamp_min(1e-8).log() - q.clamp_min(1e-8).log())).sum((-1, -2))
