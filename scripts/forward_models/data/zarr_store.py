"""Rollout stores: Zarr v3 groups holding ragged episodes back to back, with no padding.

Layout (after diffusion_policy's replay buffer)::

    data/obs         (N, H, W, C) uint8   the observation of each row
    data/action      (N,) int64 or (N, D) float32
                                          the action taken at that observation; an episode's last
                                          row has no action taken and holds zeros
    data/reward      (N,) float32         reward returned together with that observation (0 at reset)
    data/terminated  (N,) bool            flags returned together with that observation
    data/truncated   (N,) bool
    meta/episode_ends (E,) int64          cumulative row ends: episode i is rows [ends[i-1], ends[i])

An episode of T env steps therefore has T + 1 rows, and frame ``t + 1`` is what action ``t``
led to. Stores are written under a temporary name and renamed when complete, so a killed job
never leaves a store that looks whole; :func:`open_rollouts` validates a store before use.
"""

from __future__ import annotations

import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
import zarr.codecs

KEYS = ("obs", "action", "reward", "terminated", "truncated")
DTYPES = {"reward": np.float32, "terminated": np.bool_, "truncated": np.bool_}


class StoreError(ValueError):
    """A rollout store is missing, partial or inconsistent."""


class RolloutWriter:
    """Streams episodes into a new store; only whole shards are written until :meth:`close`."""

    def __init__(
        self,
        path: str | os.PathLike,
        frame_shape: tuple[int, int, int],
        action_shape: tuple[int, ...] = (),
        action_dtype=np.int64,
        attrs: dict | None = None,
        chunk_len: int = 64,
        shard_len: int = 1024,
        level: int = 3,
    ):
        if shard_len % chunk_len:
            raise ValueError(f"shard_len={shard_len} must be a multiple of chunk_len={chunk_len}")
        self.path = Path(path)
        # host + pid: writers on other nodes of a shared filesystem never clean up ours.
        self.tmp = self.path.with_name(f"{self.path.name}.partial-{_HOST}-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.root = zarr.open_group(str(self.tmp), mode="w", zarr_format=3)
        self.root.attrs.update(attrs or {})
        self.shard_len, self.n, self.ends = shard_len, 0, []
        data = self.root.create_group("data")
        self.root.create_group("meta")
        zstd = zarr.codecs.ZstdCodec(level=level)
        dtypes = {**DTYPES, "obs": np.uint8, "action": np.dtype(action_dtype)}
        shapes = {"obs": tuple(frame_shape), "action": tuple(action_shape)}
        self.arrays, self.buffers = {}, {}
        for key in KEYS:
            tail = shapes.get(key, ())
            # Frames: small chunks (cheap random windows) inside shards (few files). Per-step
            # scalars are tiny: big unsharded chunks, since Zarr's cost is per chunk, not per byte.
            small = key != "obs"
            # The pipeline batch is read when the array is made: encode 64 chunks per await
            # instead of one (measured 40k -> 62k frames/s written at 64x64).
            with zarr.config.set({"codec_pipeline.batch_size": 64}):
                self.arrays[key] = data.create_array(
                    key,
                    shape=(0, *tail),
                    dtype=dtypes[key],
                    chunks=((64 * shard_len if small else chunk_len), *tail),
                    shards=None if small else (shard_len, *tail),
                    compressors=zstd,
                )
            self.buffers[key] = []
        # Shards are written by one background thread (Zarr compresses outside the GIL), so
        # collection keeps stepping envs meanwhile; at most one shard waits, bounding memory.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-writer")
        self._pending = None

    def add_episode(self, episode: dict[str, np.ndarray]) -> None:
        rows = len(episode["obs"])
        for key in KEYS:
            if len(episode[key]) != rows:
                raise ValueError(f"episode {key} has {len(episode[key])} rows, obs has {rows}")
            self.buffers[key].append(np.asarray(episode[key], dtype=self.arrays[key].dtype))
        self.ends.append(self.n + sum(len(b) for b in self.buffers["obs"]))
        self._flush(final=False)

    def _flush(self, final: bool) -> None:
        pending = sum(len(b) for b in self.buffers["obs"])
        take = pending if final else pending - pending % self.shard_len
        if take == 0:
            return
        blocks = {}
        for key in KEYS:
            block = np.concatenate(self.buffers[key])
            blocks[key], self.buffers[key] = block[:take], [block[take:]]
        self._wait()
        self._pending = self._pool.submit(self._write, self.n, blocks)
        self.n += take

    def _write(self, start: int, blocks: dict[str, np.ndarray]) -> None:
        stop = start + len(blocks["obs"])
        for key, arr in self.arrays.items():
            arr.resize((stop, *arr.shape[1:]))
            arr[start:stop] = blocks[key]

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()  # re-raises a failed write here
            self._pending = None

    def close(self) -> Path:
        """Write the remainder and the episode index, then atomically publish the store."""
        self._flush(final=True)
        self._wait()
        self._pool.shutdown()
        self.root["meta"].create_array("episode_ends", data=np.asarray(self.ends, np.int64))
        # An existing store (another writer of the same store finished first) is moved aside,
        # not deleted first, so the path is missing only between two renames.
        old = self.path.with_name(f"{self.path.name}.replaced-{_HOST}-{os.getpid()}")
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)
        for stale in dead_partials(self.path):  # left by killed writers, never live ones
            shutil.rmtree(stale, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass
class Rollouts:
    """A validated, opened store. Arrays stay lazy (Zarr) until :meth:`load`."""

    path: Path
    group: zarr.Group
    episode_ends: np.ndarray

    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.episode_ends[:-1]])

    @property
    def lengths(self) -> np.ndarray:
        """Rows per episode (env steps + 1)."""
        return np.diff(np.concatenate([[0], self.episode_ends]))

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(C, H, W), the layout models take."""
        h, w, c = self.array("obs").shape[1:]
        return c, h, w

    @property
    def n_actions(self) -> int:
        """Number of discrete actions (0 for continuous action vectors)."""
        return int(self.attrs.get("n_actions") or 0)

    @property
    def action_dim(self) -> int:
        """Length of continuous action vectors (0 for discrete actions)."""
        shape = self.array("action").shape[1:]
        return int(np.prod(shape)) if shape else 0

    def array(self, key: str) -> zarr.Array:
        return self.group["data"][key]

    def load(self, keys=KEYS) -> dict[str, np.ndarray]:
        """Read whole arrays into memory (slices, never fancy indexing: far faster in Zarr)."""
        return {k: self.array(k)[:] for k in keys}

    def episode(self, i: int) -> dict[str, np.ndarray]:
        lo, hi = int(self.episode_starts[i]), int(self.episode_ends[i])
        return {k: self.array(k)[lo:hi] for k in KEYS}


_HOST = socket.gethostname().replace("-", "_")


def _writer(partial: Path) -> tuple[str, int] | None:
    """(host, pid) of the writer of ``NAME.partial-HOST-PID``, or None for other names."""
    host, _, pid = partial.name.rpartition(".partial-")[2].rpartition("-")
    return (host, int(pid)) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def dead_partials(path: Path) -> list[Path]:
    """Unfinished copies of store ``path`` whose writer, on this host, no longer runs."""
    out = []
    for partial in path.parent.glob(f"{path.name}.partial-*"):
        writer = _writer(partial)
        if writer is None or (writer[0] == _HOST and not _alive(writer[1])):
            out.append(partial)
    return sorted(out)


def open_rollouts(path: str | os.PathLike) -> Rollouts:
    """Open and validate a store; :class:`StoreError` names the array and the problem."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        partial = sorted(path.parent.glob(f"{path.name}.partial-*")) if path.parent.exists() else []
        dead = dead_partials(path) if partial else []
        why = (
            f" (found unfinished {dead[0].name}: a writer was killed)"
            if dead
            else f" (still being written: {partial[0].name})"
            if partial
            else ""
        )
        raise StoreError(f"{path}: no rollout store here{why}")
    try:
        group = zarr.open_group(str(path), mode="r")
        missing = [f"data/{k}" for k in KEYS if k not in group.get("data", {})]
        if "meta" not in group or "episode_ends" not in group["meta"]:
            missing.append("meta/episode_ends")
        if missing:
            raise StoreError(f"{path}: missing array(s) {', '.join(missing)}")
        ends = group["meta"]["episode_ends"][:]
    except StoreError:
        raise
    except Exception as exc:  # zarr raises many types for damaged metadata or chunks
        raise StoreError(f"{path}: unreadable store: {exc}") from exc
    data = group["data"]
    obs = data["obs"]
    if obs.dtype != np.uint8 or obs.ndim != 4:
        raise StoreError(
            f"{path}: data/obs must be uint8 (N, H, W, C), got {obs.dtype} {obs.shape}"
        )
    n = obs.shape[0]
    for key in KEYS[1:]:
        if data[key].shape[0] != n:
            raise StoreError(
                f"{path}: data/{key} has {data[key].shape[0]} rows but data/obs has {n}"
            )
    for key, dtype in DTYPES.items():
        if data[key].dtype != dtype:
            raise StoreError(
                f"{path}: data/{key} has dtype {data[key].dtype}, expected {np.dtype(dtype)}"
            )
    if ends.ndim != 1 or len(ends) == 0:
        raise StoreError(f"{path}: meta/episode_ends is empty or not 1-D")
    if np.any(np.diff(ends) <= 0) or ends[0] <= 0:
        raise StoreError(f"{path}: meta/episode_ends is not strictly increasing from above 0")
    if ends[-1] != n:
        raise StoreError(f"{path}: meta/episode_ends ends at {ends[-1]} but data/obs has {n} rows")
    return Rollouts(path, group, ends.astype(np.int64))
