"""The shard files written outside zarr-python, and the shared-memory ring that feeds them."""

import multiprocessing as mp

import numpy as np
import pytest
import zarr
import zarr.codecs as zc
from forward_models.data.ring import RowRing
from forward_models.data.shards import ChunkLayout, ShardWriter, check_array, sharded_array

SHAPE = (8, 8, 3)


def write_episodes(path, layout, lengths, frames, as_lists=False):
    """Frames written episode by episode, as collection does; returns the array."""
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    writer = ShardWriter(sharded_array(group, "obs", layout), path / "obs", layout)
    start = 0
    for n in lengths:
        episode = frames[start : start + n]
        chunks, fragments = layout.split(list(episode) if as_lists else episode, start)
        for k, data in chunks:
            writer.put_chunk(k, data)
        for lo, rows in fragments:
            writer.put_rows(lo, rows)
        start += n
    writer.finish(start)
    return zarr.open_array(str(path / "obs"), mode="r")


@pytest.mark.parametrize("as_lists", [False, True])
def test_shards_are_byte_identical_to_zarrs_own(tmp_path, as_lists):
    layout = ChunkLayout(SHAPE, chunk_len=4, shard_len=16)
    lengths = [5, 17, 3, 1, 23, 9]  # an episode inside one chunk, one of a single row, ...
    frames = np.random.default_rng(0).integers(1, 256, (sum(lengths), *SHAPE), dtype=np.uint8)
    ours = write_episodes(tmp_path / "ours", layout, lengths, frames, as_lists)
    np.testing.assert_array_equal(ours[:], frames)
    theirs = sharded_array(zarr.open_group(str(tmp_path / "theirs"), mode="w"), "obs", layout)
    theirs.resize(frames.shape)
    theirs[:] = frames
    files = sorted(p.name for p in (tmp_path / "theirs" / "obs").iterdir())
    assert len(files) == 5  # zarr.json + 4 shards, the last one partial
    assert files == sorted(p.name for p in (tmp_path / "ours" / "obs").iterdir())
    for name in files:
        assert (tmp_path / "ours" / "obs" / name).read_bytes() == (
            tmp_path / "theirs" / "obs" / name
        ).read_bytes(), name


def test_an_array_in_another_format_is_refused(tmp_path):
    layout = ChunkLayout(SHAPE, chunk_len=4, shard_len=16)
    group = zarr.open_group(str(tmp_path / "g"), mode="w")
    gzip = group.create_array(
        "obs",
        shape=(0, *SHAPE),
        dtype=np.uint8,
        chunks=(4, *SHAPE),
        shards=(16, *SHAPE),
        compressors=zc.GzipCodec(),
    )
    with pytest.raises(ValueError, match="not the shard format"):
        check_array(gzip, layout)
    slashes = group.create_array(
        "slashes",
        shape=(0, *SHAPE),
        dtype=np.uint8,
        chunks=(4, *SHAPE),
        shards=(16, *SHAPE),
        compressors=zc.ZstdCodec(level=3),
        fill_value=0,
    )
    with pytest.raises(ValueError, match="need directories"):
        check_array(slashes, layout)


def test_missing_rows_are_an_error_not_a_silent_hole(tmp_path):
    layout = ChunkLayout(SHAPE, chunk_len=4, shard_len=8)
    group = zarr.open_group(str(tmp_path / "g"), mode="w")
    writer = ShardWriter(sharded_array(group, "obs", layout), tmp_path / "g" / "obs", layout)
    writer.put_rows(1, np.ones((2, *SHAPE), np.uint8))  # row 0 and 3 never come
    writer.put_chunk(2, layout.encode(np.ones((4, *SHAPE), np.uint8)))
    with pytest.raises(RuntimeError, match="chunk 0 has 2 of its rows"):
        writer.finish(12)
    with pytest.raises(ValueError, match="not inside one chunk"):
        writer.put_rows(3, np.ones((2, *SHAPE), np.uint8))


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="multiple of chunk_len=16"):
        ChunkLayout(SHAPE, chunk_len=16, shard_len=40)


def _producer(ring, conn, sizes):
    rng = np.random.default_rng(1)
    for n in sizes:
        conn.send(ring.put(rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8)))


def test_ring_hands_rows_across_a_fork_in_order_and_waits_when_full():
    ctx = mp.get_context("fork")
    ring = RowRing(ctx, 10, SHAPE)
    reader, writer = ctx.Pipe(duplex=False)
    sizes = [3, 7, 1, 9, 4, 10, 2] * 5  # wraps many times
    proc = ctx.Process(target=_producer, args=(ring, writer, sizes))
    proc.start()
    expected = np.random.default_rng(1)
    proc.join(2)
    assert proc.is_alive(), "the writer ran past rows nobody had released"
    for n in sizes:
        pos = reader.recv()
        want = expected.integers(0, 256, (n, *SHAPE), dtype=np.uint8)
        np.testing.assert_array_equal(ring.get(pos, n), want)
        ring.release(pos, n)
    proc.join(10)
    assert proc.exitcode == 0
    with pytest.raises(ValueError, match="cannot put 11 rows"):
        ring.put(np.zeros((11, *SHAPE), np.uint8))
