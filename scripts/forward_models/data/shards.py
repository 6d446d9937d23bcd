"""Frames written as Zarr v3 shards directly, bypassing zarr-python's per-chunk write path.

zarr-python spends far more time per chunk than zstd does (measured at 64x64: ~60k frames/s
through ``array[a:b] = frames`` against ~400k frames/s for zstd alone), and that cost sits in
the one process that writes. Here chunks are plain zstd frames that any process can make:
collection workers compress the chunks that lie wholly inside their episode, and the writer only
assembles the few chunks that straddle two episodes and concatenates shards.

A shard file is what Zarr's ``sharding_indexed`` codec writes: the encoded inner chunks back to
back, then an index of ``(offset, nbytes)`` uint64 pairs per inner chunk (``2**64 - 1`` for a
missing one), little-endian, followed by its crc32c. :func:`check_array` refuses an array whose
codecs are anything else, so a Zarr upgrade that changes its defaults fails loudly, not silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
import zarr
import zarr.codecs as zc
import zstandard

MISSING = np.uint64(2**64 - 1)
_COMPRESSORS: dict[int, zstandard.ZstdCompressor] = {}


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # Reused, unlike numcodecs' Zstd, which sets up a context per call (~30 us even for 100
    # bytes; 16-frame chunks at 64x64 took 2.65 against 1.71 us per frame). The output is the
    # same zstd frame, content size included (tested against zarr's own shards). One per
    # process; the writer and each worker call it from one thread only.
    if level not in _COMPRESSORS:
        _COMPRESSORS[level] = zstandard.ZstdCompressor(level=level)
    return _COMPRESSORS[level]


@dataclass(frozen=True)
class ChunkLayout:
    """How rows of frames map to chunks and shards along time, and how a chunk is encoded."""

    frame_shape: tuple[int, ...]
    chunk_len: int = 16
    shard_len: int = 1024
    level: int = 3

    def __post_init__(self):
        if self.chunk_len < 1 or self.shard_len % self.chunk_len:
            raise ValueError(
                f"shard_len={self.shard_len} must be a positive multiple of "
                f"chunk_len={self.chunk_len}"
            )

    @property
    def chunks_per_shard(self) -> int:
        return self.shard_len // self.chunk_len

    def encode(self, rows: np.ndarray) -> bytes:
        """One whole chunk (``chunk_len`` rows, C order) as Zarr's bytes + zstd codecs store it."""
        return _compressor(self.level).compress(np.ascontiguousarray(rows))

    def split(
        self, frames: np.ndarray | Sequence[np.ndarray], offset: int
    ) -> tuple[list[tuple[int, bytes]], list[tuple[int, np.ndarray]]]:
        """Frames stored from row ``offset`` on, as (encoded whole chunks, loose row fragments).

        Whole chunks are ``(chunk index, bytes)``; fragments are ``(first row, frames)`` of the
        chunks this episode shares with its neighbours, for the writer to complete. ``frames``
        may be a list of single uint8 frames as an env returns them: each chunk is then gathered
        right before it is compressed, while it is still in cache (measured 46k against 42k
        frames/s for stacking the whole episode first).
        """
        c = self.chunk_len
        chunks, fragments = [], []
        for k in range(offset // c, (offset + len(frames) - 1) // c + 1):
            lo, hi = max(k * c, offset), min((k + 1) * c, offset + len(frames))
            rows = frames[lo - offset : hi - offset]
            if not isinstance(rows, np.ndarray):
                # bytes.join copies each frame with one memcpy: 4x cheaper than np.stack.
                rows = np.frombuffer(b"".join(rows), np.uint8).reshape(hi - lo, *rows[0].shape)
            if hi - lo == c:
                chunks.append((k, self.encode(rows)))
            else:
                fragments.append((lo, rows))
        return chunks, fragments


def sharded_array(group: zarr.Group, name: str, layout: ChunkLayout) -> zarr.Array:
    """An empty frame array whose shards :class:`ShardWriter` can write."""
    return group.create_array(
        name,
        shape=(0, *layout.frame_shape),
        dtype=np.uint8,
        chunks=(layout.chunk_len, *layout.frame_shape),
        shards=(layout.shard_len, *layout.frame_shape),
        compressors=zc.ZstdCodec(level=layout.level),
        fill_value=0,
        # Shard files side by side (c.17.0.0.0), not a directory tree each: the mkdirs were
        # about an eighth of the writer's time (profiled, 2 workers).
        chunk_key_encoding={"name": "default", "separator": "."},
    )


def check_array(array: zarr.Array, layout: ChunkLayout) -> None:
    """Raise unless ``array`` stores exactly the shard format :class:`ShardWriter` writes."""
    tail = tuple(layout.frame_shape)
    expected = zc.ShardingCodec(
        chunk_shape=(layout.chunk_len, *tail),
        codecs=[zc.BytesCodec(endian=None), zc.ZstdCodec(level=layout.level, checksum=False)],
        index_codecs=[zc.BytesCodec(endian="little"), zc.Crc32cCodec()],
        index_location="end",
    )
    codecs = tuple(array.metadata.codecs)
    if (
        codecs != (expected,)
        or array.dtype != np.uint8
        or array.shards != (layout.shard_len, *tail)
    ):
        raise ValueError(f"{array.path}: codecs {codecs} are not the shard format {expected}")
    key = array.metadata.encode_chunk_key((0,) * (1 + len(tail)))
    if "/" in key:
        raise ValueError(f"{array.path}: shard keys like {key!r} need directories; expected '.'")


class ShardWriter:
    """Collects encoded chunks and loose rows; writes each shard file once it is complete."""

    def __init__(self, array: zarr.Array, directory: Path, layout: ChunkLayout):
        check_array(array, layout)
        self.array, self.directory, self.layout = array, Path(directory), layout
        self._chunks: dict[int, dict[int, bytes]] = {}  # shard -> {chunk: bytes}
        self._partial: dict[int, list] = {}  # chunk -> [rows buffer, rows filled]
        self._written: set[int] = set()

    def put_chunk(self, k: int, data: bytes) -> None:
        shard, per = divmod(k, self.layout.chunks_per_shard)
        if shard in self._written:
            raise RuntimeError(f"chunk {k} arrived after its shard {shard} was written")
        slots = self._chunks.setdefault(shard, {})
        slots[per] = data
        if len(slots) == self.layout.chunks_per_shard:
            self._write(shard)

    def put_rows(self, start: int, rows: np.ndarray) -> None:
        """Rows of a chunk shared between episodes (copied); encoded once all its rows came."""
        c, n = self.layout.chunk_len, len(rows)
        k = start // c
        if n < 1 or (start + n - 1) // c != k:
            raise ValueError(f"rows {start}..{start + n} are not inside one chunk")
        if k not in self._partial:  # every row gets written, or zeroed by finish()
            self._partial[k] = [np.empty((c, *self.layout.frame_shape), np.uint8), 0]
        slot = self._partial[k]
        slot[0][start - k * c : start - k * c + n] = rows
        slot[1] += n
        if slot[1] == c:
            del self._partial[k]
            self.put_chunk(k, self.layout.encode(slot[0]))

    def finish(self, n_rows: int) -> None:
        """Encode the last, partial chunk (zero-padded, as Zarr stores it) and write the rest."""
        c = self.layout.chunk_len
        for k, (buf, filled) in sorted(self._partial.items()):
            if k * c + filled != n_rows:
                raise RuntimeError(f"chunk {k} has {filled} of its rows, not the last chunk")
            buf[filled:] = 0
            self.put_chunk(k, self.layout.encode(buf))
        self._partial.clear()
        last = (n_rows - 1) // self.layout.shard_len if n_rows else -1
        for shard in sorted(self._chunks):
            if shard < last:
                raise RuntimeError(f"shard {shard} is missing chunks at the end of writing")
            self._write(shard)
        self.array.resize((n_rows, *self.layout.frame_shape))

    def _write(self, shard: int) -> None:
        slots = self._chunks.pop(shard)
        index = np.full((self.layout.chunks_per_shard, 2), MISSING, dtype="<u8")
        parts, offset = [], 0
        for per in range(self.layout.chunks_per_shard):  # 1-D grid: Morton order is C order
            if per in slots:
                index[per] = offset, len(slots[per])
                parts.append(slots[per])
                offset += len(slots[per])
        raw = index.tobytes()
        parts += [raw, np.uint32(google_crc32c.value(raw)).astype("<u4").tobytes()]
        key = self.array.metadata.encode_chunk_key((shard,) + (0,) * len(self.layout.frame_shape))
        (self.directory / key).write_bytes(b"".join(parts))
        self._written.add(shard)
