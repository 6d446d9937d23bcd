"""Frame rows handed from one worker process to the writer through shared memory.

Pickling rows through a pipe costs a copy into the pipe and two out of it (Python reads into a
buffer, then copies); here the worker copies rows in once and the writer copies them out once.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

RING_CHUNKS = 8  # chunks of loose rows each collection worker's ring holds


def ring_bytes(frame_shape: tuple[int, ...], workers: int) -> int:
    """Shared memory the collection's rings take: one per worker, allocated up front."""
    from forward_models.data.shards import ChunkLayout

    chunk_len = ChunkLayout(tuple(frame_shape)).chunk_len
    return workers * RING_CHUNKS * chunk_len * math.prod(frame_shape)


class RowRing:
    """A single-producer, single-consumer ring of frame rows. Create it before forking.

    The worker :meth:`put` s rows and sends the returned position in a message; the writer
    reads them with :meth:`get` and then :meth:`release` s them, in the order they were put.
    """

    def __init__(self, ctx, rows: int, frame_shape: tuple[int, ...]):
        self.rows, self.frame_shape = rows, tuple(frame_shape)
        self._shared = ctx.RawArray("B", rows * math.prod(frame_shape))
        self._released = ctx.RawValue("q", 0)  # absolute rows released by the reader
        self._head = 0  # absolute rows put (the writer's side only)
        self._array = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:  # made lazily: a view made before fork would not be shared
            self._array = np.frombuffer(self._shared, np.uint8).reshape(
                self.rows, *self.frame_shape
            )
        return self._array

    def put(self, frames: np.ndarray) -> int:
        """Copy ``frames`` in, waiting while the reader is behind; returns their position."""
        k, n = len(frames), self.rows
        if not 0 < k <= n:
            raise ValueError(f"cannot put {k} rows into a ring of {n}")
        pos = self._head
        if pos % n + k > n:  # never wrap inside one put: readers get one contiguous view
            pos += n - pos % n
        parent = os.getppid()
        # Full while rows still unreleased lie within n of the end of the new ones (skipped
        # rows at a wrap are never released: an empty ring always has room).
        while self._head > self._released.value and pos + k - self._released.value > n:
            if os.getppid() != parent:
                raise RuntimeError("the process reading this ring has gone")
            time.sleep(0.0002)
        self.array[pos % n : pos % n + k] = frames
        self._head = pos + k
        return pos

    def get(self, pos: int, k: int) -> np.ndarray:
        """The rows put at ``pos``: a view, valid until :meth:`release`."""
        return self.array[pos % self.rows : pos % self.rows + k]

    def release(self, pos: int, k: int) -> None:
        self._released.value = pos + k
