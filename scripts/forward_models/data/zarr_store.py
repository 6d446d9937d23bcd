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

import itertools
import math
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
import zarr.codecs

from forward_models.data.shards import ChunkLayout, ShardWriter, sharded_array

KEYS = ("obs", "action", "reward", "terminated", "truncated")
DTYPES = {"reward": np.float32, "terminated": np.bool_, "truncated": np.bool_}
STEP_KEYS = KEYS[1:]
STEP_CHUNK = 65_536  # rows per chunk of the per-step arrays


class StoreError(ValueError):
    """A rollout store is missing, partial or inconsistent."""


class RolloutWriter:
    """Streams episodes into a new store, published by :meth:`close` only when complete.

    Frames go straight to shard files (:mod:`forward_models.data.shards`); the per-step arrays
    are tiny and go through Zarr in big chunks. Parallel collection reserves an episode's rows
    with :meth:`add_steps` and hands in frames that workers encoded with :meth:`put_frames`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        frame_shape: tuple[int, int, int],
        action_shape: tuple[int, ...] = (),
        action_dtype=np.int64,
        attrs: dict | None = None,
        layout: ChunkLayout | None = None,
    ):
        self.layout = layout or ChunkLayout(tuple(frame_shape))
        if self.layout.frame_shape != tuple(frame_shape):
            raise ValueError(f"layout is for frames {self.layout.frame_shape}, not {frame_shape}")
        self.path = Path(path)
        # host + pid: writers on other nodes of a shared filesystem never clean up ours.
        self.tmp = self.path.with_name(f"{self.path.name}.partial-{_HOST}-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.root = zarr.open_group(str(self.tmp), mode="w", zarr_format=3)
        self.root.attrs.update(attrs or {})
        self.n, self.ends, self._written = 0, [], 0
        data = self.root.create_group("data")
        self.root.create_group("meta")
        self.frames = ShardWriter(
            sharded_array(data, "obs", self.layout), self.tmp / "data" / "obs", self.layout
        )
        dtypes = {**DTYPES, "action": np.dtype(action_dtype)}
        self.arrays, self.buffers = {}, {}
        for key in STEP_KEYS:
            tail = tuple(action_shape) if key == "action" else ()
            # Per-step scalars are tiny: big unsharded chunks, since Zarr's cost is per chunk.
            self.arrays[key] = data.create_array(
                key,
                shape=(0, *tail),
                dtype=dtypes[key],
                chunks=(STEP_CHUNK, *tail),
                compressors=zarr.codecs.ZstdCodec(level=self.layout.level),
                # Every chunk is a file, even one equal to the fill value (all False, say), so a
                # missing file always means damage (open_rollouts checks).
                config={"write_empty_chunks": True},
            )
            self.buffers[key] = []

    def add_steps(self, steps: dict[str, np.ndarray]) -> int:
        """Append one episode's per-step arrays; returns the row where its frames start."""
        rows = len(steps["reward"])
        for key in STEP_KEYS:
            if len(steps[key]) != rows:
                raise ValueError(f"episode {key} has {len(steps[key])} rows, reward has {rows}")
            self.buffers[key].append(np.asarray(steps[key], dtype=self.arrays[key].dtype))
        start, self.n = self.n, self.n + rows
        self.ends.append(self.n)
        if self.n - self._written >= STEP_CHUNK:
            self._flush_steps(final=False)
        return start

    def put_frames(self, chunks, fragments) -> None:
        """Frames as :meth:`ChunkLayout.split` gives them: encoded chunks and loose rows."""
        for k, data in chunks:
            self.frames.put_chunk(k, data)
        for start, rows in fragments:
            self.frames.put_rows(start, rows)

    def add_episode(self, episode: dict[str, np.ndarray]) -> None:
        obs = np.asarray(episode["obs"], dtype=np.uint8)
        if obs.shape[1:] != self.layout.frame_shape:
            raise ValueError(
                f"episode frames are {obs.shape[1:]}, store holds {self.layout.frame_shape}"
            )
        if len(obs) != len(episode["reward"]):
            raise ValueError(
                f"episode obs has {len(obs)} rows, reward has {len(episode['reward'])}"
            )
        start = self.add_steps(episode)
        self.put_frames(*self.layout.split(obs, start))

    def _flush_steps(self, final: bool) -> None:
        pending = self.n - self._written
        take = pending if final else pending - pending % STEP_CHUNK
        if take == 0:
            return
        start, stop = self._written, self._written + take
        for key, arr in self.arrays.items():
            block = np.concatenate(self.buffers[key])
            self.buffers[key] = [block[take:]]
            arr.resize((stop, *arr.shape[1:]))
            arr[start:stop] = block[:take]
        self._written = stop

    def close(self) -> Path:
        """Write the remainder and the episode index, then atomically publish the store."""
        self._flush_steps(final=True)
        self.frames.finish(self.n)
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
    _loaded: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

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
        """Read whole arrays into memory (slices, never fancy indexing: far faster in Zarr).
        Each is read once per opened store and shared by every later call (a train job's
        training and validation samplers: reading 1000 Pong episodes took ~4 CPU-s a time), so
        callers must not write into them."""
        for k in keys:
            if k not in self._loaded:
                self._loaded[k] = self.array(k)[:]
        return {k: self._loaded[k] for k in keys}

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


def open_rollouts(path: str | os.PathLike, verify: bool = False) -> Rollouts:
    """Open and validate a store; :class:`StoreError` names the array and the problem.

    Opening proves every chunk and shard file is there with a plausible size; ``verify`` also
    decodes everything and checks the shard checksums (:func:`verify_store`)."""
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
    for key in STEP_KEYS:
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
    check_files(path, group)
    rollouts = Rollouts(path, group, ends.astype(np.int64))
    if verify:
        verify_store(rollouts)
    return rollouts


def verify_store(rollouts: Rollouts) -> int:
    """Decode every chunk of every array, shard by shard, checking the shard indexes' crc32c
    checksums; returns the number of files read. Errors name the array and the file."""
    files = 0
    for name in [*(f"data/{k}" for k in KEYS), "meta/episode_ends"]:
        arr = rollouts.group[name]
        outer = arr.metadata.chunk_grid.chunk_shape
        for i in range(math.ceil(arr.shape[0] / outer[0])) if arr.shape[0] else []:
            key = arr.metadata.encode_chunk_key((i, *[0] * (arr.ndim - 1)))
            try:
                arr[i * outer[0] : (i + 1) * outer[0]]
            except Exception as exc:  # zarr and zstd raise many types for damaged bytes
                raise StoreError(
                    f"{rollouts.path}: {name} file {name}/{key} does not decode "
                    f"({type(exc).__name__}: {exc}); the store is damaged: collect it again"
                ) from None
            files += 1
    return files


def check_files(path: Path, group) -> None:
    """Every chunk or shard file the metadata implies is there with a plausible size. Cheap (a
    stat per file, no decoding), and needed: Zarr reads a missing file as fill values, so a
    deleted shard would otherwise read as black frames."""
    for name in [*(f"data/{k}" for k in KEYS), "meta/episode_ends"]:
        arr = group[name]
        outer = arr.metadata.chunk_grid.chunk_shape  # the shard shape, for sharded arrays
        least = 1  # a sharded file ends with its index: 16 bytes per inner chunk and a crc32c
        if arr.shards is not None:
            least = 16 * math.prod(s // c for s, c in zip(arr.shards, arr.chunks, strict=True)) + 4
        grid = [math.ceil(s / c) for s, c in zip(arr.shape, outer, strict=True)]
        for coords in itertools.product(*map(range, grid)):
            key = arr.metadata.encode_chunk_key(coords)
            file = path / name / key
            size = file.stat().st_size if file.is_file() else None
            if size is None or size < least:
                rows = f"rows {coords[0] * outer[0]}-{min((coords[0] + 1) * outer[0], arr.shape[0]) - 1}"
                what = (
                    "is missing"
                    if size is None
                    else f"has {size} bytes (at least {least} expected)"
                )
                raise StoreError(
                    f"{path}: {name} file {file.relative_to(path)} ({rows}) {what}: the store is "
                    f"damaged (it would read as fill values); collect it again"
                )
