"""Fixed-length training windows sampled inside episodes of an in-memory rollout store."""

from __future__ import annotations

import numpy as np
import torch

from forward_models.data.zarr_store import Rollouts


class WindowSampler:
    """Samples windows of ``length`` rows from a subset of a store's episodes.

    A window never crosses an episode boundary. Episodes shorter than the window are padded by
    repeating their last row, and ``mask`` marks the real rows, so losses can ignore the rest.
    Episodes are drawn in proportion to the windows they hold, i.e. every start is equally likely;
    with ``from_start`` > 0 that fraction of windows (on average) starts at its episode's first
    row instead, as evaluation's windows do, and with ``to_end`` > 0 that fraction ends at its
    episode's last row (where a terminated episode shows how it ended).
    """

    def __init__(
        self,
        rollouts: Rollouts,
        length: int,
        episodes=None,
        seed: int = 0,
        from_start=0.0,
        to_end=0.0,
    ):
        data = rollouts.load(("obs", "action"))
        self.obs, self.action = data["obs"], data["action"]
        ids = np.arange(rollouts.n_episodes) if episodes is None else np.asarray(episodes)
        if len(ids) == 0:
            raise ValueError("WindowSampler needs at least one episode")
        self.starts = rollouts.episode_starts[ids]
        self.lengths = rollouts.lengths[ids]
        self.length, self.from_start, self.to_end = length, from_start, to_end
        self.p = window_weights(self.lengths, length)
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        drawn = draw_windows(
            self.rng, self.lengths, self.p, self.length, batch_size, self.from_start, self.to_end
        )
        return self.gather(*drawn)

    def gather(self, ep: np.ndarray, offset: np.ndarray) -> dict[str, torch.Tensor]:
        """Windows starting ``offset`` rows into episodes ``ep`` (indices into this subset)."""
        rows, mask = self.rows(ep, offset)
        return to_batch(self.obs[rows], self.action[rows], mask)

    def rows(self, ep: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store rows of those windows (an episode's last row repeated past its end) and the
        mask of real rows, both (batch, length)."""
        steps = offset[:, None] + np.arange(self.length)[None, :]
        mask = steps < self.lengths[ep][:, None]
        rows = self.starts[ep][:, None] + np.minimum(steps, self.lengths[ep][:, None] - 1)
        return rows, mask


class DeviceWindows(WindowSampler):
    """A :class:`WindowSampler` whose frames live on the training device, as uint8.

    Windows are drawn on the CPU with the same generator (so the same seed gives the same
    windows as :class:`WindowSampler`, and resuming restores it), but only their row indices
    (``batch x length`` integers) travel to the device; the frames are gathered and converted to
    float there. Feeding a GPU from host memory instead would copy every batch as float32 over
    PCIe (3 GB/s at 10^6 frames/s of 32x32x3). The whole store must fit in device memory:
    :func:`fits_on_device` says whether it does.
    """

    def __init__(
        self,
        rollouts: Rollouts,
        length: int,
        episodes=None,
        seed=0,
        device="cpu",
        from_start=0.0,
        to_end=0.0,
    ):
        super().__init__(rollouts, length, episodes, seed, from_start, to_end)
        self.device = torch.device(device)
        self.obs_device = torch.from_numpy(self.obs).to(self.device)  # (N, H, W, C) uint8
        self.action_device = torch.from_numpy(self.action).to(self.device)

    def gather(self, ep: np.ndarray, offset: np.ndarray) -> dict[str, torch.Tensor]:
        rows, mask = self.rows(ep, offset)
        idx = torch.from_numpy(np.concatenate([rows.ravel(), mask.ravel()]))
        if self.device.type == "cuda":
            idx = idx.pin_memory()
        idx = idx.to(self.device, non_blocking=True)
        rows_d, mask_d = idx[: rows.size].view(rows.shape), idx[rows.size :].view(mask.shape)
        obs = self.obs_device[rows_d].permute(0, 1, 4, 2, 3).float().div_(255.0)
        return {"obs": obs, "action": self.action_device[rows_d], "mask": mask_d.bool()}


def fits_on_device(rollouts: Rollouts, device, fraction: float = 0.5) -> bool:
    """Whether the store's frames and actions (uint8 and as stored) take at most ``fraction`` of
    the device's free memory (CUDA), leaving the rest to the model and its activations. The CPU
    never needs it: the host sampler already holds the store in memory."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    need = rollouts.array("obs").nbytes + rollouts.array("action").nbytes
    return need <= fraction * free


def window_weights(lengths: np.ndarray, length: int) -> np.ndarray:
    """Episode probabilities proportional to the windows each holds (every start equally likely)."""
    weights = np.maximum(lengths - length + 1, 1).astype(np.float64)
    return weights / weights.sum()


def draw_windows(
    rng, lengths: np.ndarray, p: np.ndarray, length: int, n: int, from_start=0.0, to_end=0.0
):
    """``n`` (episode index, start offset) pairs; an episode shorter than ``length`` starts at 0,
    and so does each window with probability ``from_start``; with probability ``to_end`` a
    window ends at its episode's last row instead."""
    ep = rng.choice(len(lengths), size=n, p=p)
    last = np.maximum(lengths[ep] - length, 0)  # the last start that fits
    offset = (rng.random(n) * (last + 1)).astype(np.int64)
    if from_start > 0 or to_end > 0:  # drawn only then: the windows of 0, 0 stay as they were
        u = rng.random(n)
        offset[u < from_start] = 0
        at_end = (u >= from_start) & (u < from_start + to_end)
        offset[at_end] = last[at_end]
    return ep, offset


def to_batch(obs: np.ndarray, action: np.ndarray, mask: np.ndarray) -> dict[str, torch.Tensor]:
    """(B, L, H, W, C) uint8 frames, actions and mask -> the tensors models take."""
    return {
        "obs": torch.from_numpy(obs).permute(0, 1, 4, 2, 3).float().div_(255.0),
        "action": torch.from_numpy(action),
        "mask": torch.from_numpy(mask),
    }


def split_episodes(n: int, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train/validation episode ids; at least one of each when ``n >= 2``."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(int(round(n * val_fraction)), 1 if val_fraction > 0 else 0), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class StreamingWindows(torch.utils.data.IterableDataset):
    """Batches of windows read straight from the Zarr store, for stores too big for memory.

    Each DataLoader worker opens the store itself and decodes only the chunks its windows touch
    (contiguous slices: Zarr is far slower at fancy indexing). Use with ``batch_size=None``.
    Memory stays at a few shards per worker (plus the actions, a few bytes a row) whatever the
    store's size.
    """

    def __init__(self, path, length: int, batch_size: int, episodes=None, seed: int = 0):
        from forward_models.data.zarr_store import open_rollouts

        r = open_rollouts(path)
        ids = np.arange(r.n_episodes) if episodes is None else np.asarray(episodes)
        self.path, self.length, self.batch_size, self.seed = str(path), length, batch_size, seed
        self.starts, self.lengths = r.episode_starts[ids], r.lengths[ids]
        self.p = window_weights(self.lengths, length)

    def __iter__(self):
        from forward_models.data.zarr_store import open_rollouts

        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        data = open_rollouts(self.path)
        # Actions are a few bytes a row: read once, so each window costs one Zarr read, not two.
        obs_arr, act_arr = data.array("obs"), data.array("action")[:]
        L = self.length
        while True:
            ep, offset = draw_windows(rng, self.lengths, self.p, L, self.batch_size)
            obs = np.empty((self.batch_size, L, *obs_arr.shape[1:]), np.uint8)
            act = np.empty((self.batch_size, L, *act_arr.shape[1:]), act_arr.dtype)
            mask = np.zeros((self.batch_size, L), bool)
            for i, (e, o) in enumerate(zip(ep, offset, strict=True)):
                lo = self.starts[e] + o
                n = min(L, self.lengths[e] - o)
                obs[i, :n], act[i, :n], mask[i, :n] = (
                    obs_arr[lo : lo + n],
                    act_arr[lo : lo + n],
                    True,
                )
                obs[i, n:], act[i, n:] = obs[i, n - 1], act[i, n - 1]
            yield to_batch(obs, act, mask)


def rows_from(rollouts: Rollouts, ids, starts, need: int) -> dict:
    """A batch of episodes ``ids``, ``need`` rows each from ``starts``, read as contiguous
    slices (not the whole store)."""
    obs, action = rollouts.array("obs"), rollouts.array("action")
    batch = to_batch(
        np.stack([obs[s : s + need] for s in starts]),
        np.stack([action[s : s + need] for s in starts]),
        np.ones((len(ids), need), bool),
    )
    batch["episode"] = torch.from_numpy(np.asarray(ids))
    return batch
