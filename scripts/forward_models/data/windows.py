"""Fixed-length training windows sampled inside episodes of an in-memory rollout store."""

from __future__ import annotations

import numpy as np
import torch

from forward_models.data.zarr_store import Rollouts


class WindowSampler:
    """Samples windows of ``length`` rows from a subset of a store's episodes.

    A window never crosses an episode boundary. Episodes shorter than the window are padded by
    repeating their last row, and ``mask`` marks the real rows, so losses can ignore the rest.
    Episodes are drawn in proportion to the windows they hold, i.e. every start is equally likely.
    """

    def __init__(self, rollouts: Rollouts, length: int, episodes=None, seed: int = 0):
        data = rollouts.load(("obs", "action"))
        self.obs, self.action = data["obs"], data["action"]
        ids = np.arange(rollouts.n_episodes) if episodes is None else np.asarray(episodes)
        if len(ids) == 0:
            raise ValueError("WindowSampler needs at least one episode")
        self.starts = rollouts.episode_starts[ids]
        self.lengths = rollouts.lengths[ids]
        self.length = length
        weights = np.maximum(self.lengths - length + 1, 1).astype(np.float64)
        self.p = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        ep = self.rng.choice(len(self.starts), size=batch_size, p=self.p)
        span = np.maximum(self.lengths[ep] - self.length + 1, 1)
        offset = (self.rng.random(batch_size) * span).astype(np.int64)
        return self.gather(ep, offset)

    def gather(self, ep: np.ndarray, offset: np.ndarray) -> dict[str, torch.Tensor]:
        """Windows starting ``offset`` rows into episodes ``ep`` (indices into this subset)."""
        steps = offset[:, None] + np.arange(self.length)[None, :]
        mask = steps < self.lengths[ep][:, None]
        rows = self.starts[ep][:, None] + np.minimum(steps, self.lengths[ep][:, None] - 1)
        obs = torch.from_numpy(self.obs[rows]).permute(0, 1, 4, 2, 3)
        return {
            "obs": obs.float().div_(255.0),
            "action": torch.from_numpy(self.action[rows]),
            "mask": torch.from_numpy(mask),
        }


def split_episodes(n: int, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train/validation episode ids; at least one of each when ``n >= 2``."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(int(round(n * val_fraction)), 1 if val_fraction > 0 else 0), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
