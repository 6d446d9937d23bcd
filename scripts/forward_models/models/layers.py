"""Building blocks shared by the families: conv blocks and the thesis' dilated GRU."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from forward_models.model_config import RecurrentConfig

ACT = 0.1  # LeakyReLU slope used throughout the thesis


def conv_block(c_in: int, c_out: int, k: int = 5, s: int = 2, p: int = 2, last: bool = False):
    """conv -> BN -> LeakyReLU, or a bare conv when ``last``."""
    conv = nn.Conv2d(c_in, c_out, k, s, p)
    return conv if last else nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.LeakyReLU(ACT))


def deconv_block(c_in: int, c_out: int, last: bool = False):
    """Transposed conv doubling the resolution -> BN -> LeakyReLU (bare when ``last``)."""
    conv = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
    return conv if last else nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.LeakyReLU(ACT))


class DeconvRenderer(nn.Module):
    """Vector -> linear -> (c, 2, 2) map -> transposed convs doubling to the frame -> sigmoid."""

    def __init__(self, dim: int, frame_shape: tuple[int, int, int], channels: list[int]):
        super().__init__()
        c, h, w = frame_shape
        n = max(1, math.ceil(math.log2(max(h, w) / 2)))
        ch = (list(channels) + [channels[-1]] * n)[:n]
        self.size, self.c0 = (h, w), ch[0]
        self.fc = nn.Linear(dim, ch[0] * 4)
        outs = ch[1:] + [c]
        self.net = nn.Sequential(
            nn.BatchNorm2d(ch[0]),
            nn.LeakyReLU(ACT),
            *(
                deconv_block(i, o, last=j == n - 1)
                for j, (i, o) in enumerate(zip(ch, outs, strict=True))
            ),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(self.fc(z).view(-1, self.c0, 2, 2))
        if x.shape[-2:] != self.size:  # sizes that are not 2 * 2^n, such as 40 or 50
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


class ConvEncoder(nn.Module):
    """Stacked frames -> two stride-2 conv blocks -> flatten -> linear to ``dim``."""

    def __init__(self, c_in: int, size: tuple[int, int], dim: int, width: int = 64):
        super().__init__()
        self.conv = nn.Sequential(conv_block(c_in, width), conv_block(width, width))
        h, w = ((s + 3) // 4 for s in size)
        self.fc = nn.Linear(width * h * w, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


class DilatedGRU(nn.Module):
    """A GRU that advances every ``skip``-th step together (the thesis' recurrent skip).

    Step t updates the hidden state of step t - skip: a sequence is folded so every residue class
    of t mod skip becomes one batch row. Stepping (:meth:`step`) gives the same outputs.
    """

    def __init__(self, dim: int, skip: int = 1):
        super().__init__()
        self.gru, self.skip = nn.GRU(dim, dim, batch_first=True), skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        k = self.skip
        pad = (-t) % k
        x = F.pad(x, (0, 0, 0, pad)).view(b, -1, k, d).transpose(1, 2).reshape(b * k, -1, d)
        y, _ = self.gru(x)
        return y.view(b, k, -1, d).transpose(1, 2).reshape(b, -1, d)[:, :t]

    def init_state(self, batch: int, device) -> tuple[torch.Tensor, int]:
        return torch.zeros(self.skip, batch, self.gru.hidden_size, device=device), 0

    def step(self, x: torch.Tensor, state) -> tuple[torch.Tensor, tuple[torch.Tensor, int]]:
        hs, t = state
        r = t % self.skip
        y, h = self.gru(x[:, None], hs[r][None].contiguous())
        hs = hs.clone()
        hs[r] = h[0]
        return y[:, 0], (hs, t + 1)


class RecurrentCore(nn.Module):
    """Action embedding -> GRU whose initial state is given -> optional dilated GRU layers,
    sized by a :class:`~forward_models.model_config.RecurrentConfig`."""

    def __init__(self, cfg: RecurrentConfig, n_actions: int, action_dim: int = 0):
        super().__init__()
        from forward_models.models.base import ActionEncoder

        self.embed = ActionEncoder(n_actions, cfg.embed, action_dim)
        self.gru = nn.GRU(cfg.embed, cfg.hidden, batch_first=True)
        self.dilated = nn.ModuleList(
            DilatedGRU(cfg.hidden, cfg.skip) for _ in range(cfg.dilated_layers)
        )

    def forward(self, h0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(self.embed(actions), h0[None].contiguous())
        for layer in self.dilated:
            y = layer(y)
        return y

    def init_state(self, h0: torch.Tensor):
        return h0, [layer.init_state(h0.shape[0], h0.device) for layer in self.dilated]

    def step(self, state, action: torch.Tensor):
        h, dilated = state
        y, h_new = self.gru(self.embed(action)[:, None], h[None].contiguous())
        y, new = y[:, 0], []
        for layer, s in zip(self.dilated, dilated, strict=True):
            y, s = layer.step(y, s)
            new.append(s)
        return y, (h_new[0], new)
