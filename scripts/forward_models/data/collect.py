"""Parallel, deterministic rollout collection into a Zarr store.

Episode ``i`` of a split is seeded from ``SeedSequence(seed).spawn(...)[i]`` alone (env reset seed
and agent generator), and episodes are stored in seed order, so the store's bytes do not depend on
the number of workers.

Work is split so that the one writing process does little: worker processes run episodes and,
once the writer has decided (in seed order) where an episode starts, compress the chunks lying
wholly inside it; the writer completes the few chunks shared by neighbouring episodes (their rows
come through a shared-memory :class:`~forward_models.data.ring.RowRing`) and writes shard files.

The writer and a worker talk through two pipes in small named-tuple messages: :class:`Run`,
:class:`Place`, :class:`Drop` and :class:`Stop` to the worker; :class:`Done`, :class:`Frames` and
:class:`Error` from it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata as md
import multiprocessing as mp
import os
import select
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from tqdm import tqdm

from forward_models import agents
from forward_models.data.ring import RING_CHUNKS, RowRing
from forward_models.data.shards import ChunkLayout
from forward_models.data.zarr_store import RolloutWriter

if TYPE_CHECKING:  # only read here, never built: collecting imports no config machinery
    from forward_models.config import RolloutSource


class EpisodeRunner:
    """An env and its agent, built once (in each worker process) and run episode after episode."""

    def __init__(self, source: RolloutSource):
        spec, agent = source.env, source.agent
        self.env = spec.make()
        self.agent = agents.make_agent(agent.kind, self.env.action_space, spec.size, **agent.kwargs)

    def run(self, seed: np.random.SeedSequence) -> dict[str, np.ndarray]:
        """One episode as store rows (see :mod:`forward_models.data.zarr_store`)."""
        frames, steps = self.rollout(seed)
        return {"obs": np.stack(frames), **steps}

    def rollout(self, seed: np.random.SeedSequence) -> tuple[list, dict[str, np.ndarray]]:
        """One episode: its frames as the env returned them, and the per-step arrays."""
        env, agent = self.env, self.agent
        env_seed, agent_seed = seed.spawn(2)
        agent.reset(np.random.default_rng(agent_seed))
        obs, info = env.reset(seed=int(env_seed.generate_state(1)[0]))
        frames, actions, rewards, terms, truncs = [obs], [], [0.0], [False], [False]
        while True:
            action = agent.act(obs, info)
            obs, reward, terminated, truncated, info = env.step(action)
            frames.append(obs)
            actions.append(action)
            rewards.append(reward)
            terms.append(terminated)
            truncs.append(truncated)
            if terminated or truncated:
                break
        actions.append(np.zeros_like(np.asarray(actions[0])))
        steps = {"action": actions, "reward": rewards, "terminated": terms, "truncated": truncs}
        return frames, {k: np.asarray(v) for k, v in steps.items()}


def run_episode(source: RolloutSource, seed: np.random.SeedSequence) -> dict[str, np.ndarray]:
    """One episode of ``source`` as store rows, on a fresh env (for tests and one-offs)."""
    return EpisodeRunner(source).run(seed)


def episode_seed(seed: int, i: int) -> np.random.SeedSequence:
    """Episode ``i``'s seed: ``SeedSequence(seed).spawn(i + 1)[i]``, made without the others."""
    return np.random.SeedSequence(seed, spawn_key=(i,))


# Messages through the pipes: named tuples, typed yet light (a few microseconds more than a
# plain tuple to pickle and unpickle; a handful are sent per episode).


class Run(NamedTuple):
    """To a worker: run episode ``i`` of the split seeded ``seed``, and hold its frames."""

    i: int
    seed: int


class Place(NamedTuple):
    """To a worker: episode ``i`` is kept and starts at row ``start``; encode its frames."""

    i: int
    start: int


class Drop(NamedTuple):
    """To a worker: episode ``i`` is not kept; forget its frames."""

    i: int


class Stop(NamedTuple):
    """To a worker: exit."""


class Done(NamedTuple):
    """From a worker: episode ``i`` ran; its per-step arrays (its frames stay in the worker)."""

    i: int
    steps: dict[str, np.ndarray]


class Frames(NamedTuple):
    """From a worker: placed episode ``i``'s encoded chunks, as ``ChunkLayout.split`` gives
    them, and its loose rows as ``(start row, rows, ring position)`` in the worker's ring."""

    i: int
    chunks: list
    loose: list[tuple[int, int, int]]


class Error(NamedTuple):
    """From a worker: it failed, with this traceback."""

    traceback: str


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` dies, even by SIGKILL (Linux), so a
    worker never outlives its collection holding its shared memory; elsewhere a worker still
    ends when its pipe closes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the call
        os._exit(0)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _work(
    tasks: Connection,
    conn: Connection,
    ring: RowRing,
    source: RolloutSource,
    layout: ChunkLayout,
    parent: int,
) -> None:
    """A collection worker: runs the episodes it is sent, encodes their frames once placed.

    An episode's chunks can only be cut once the rows of every earlier episode are known, so
    its frames wait here (not in the writer) until the writer sends where they start.
    """
    held: dict[int, list[np.ndarray]] = {}
    die_with_parent(parent)
    try:
        runner = EpisodeRunner(source)
        while True:
            match tasks.recv():
                case Run(i, seed):
                    held[i], steps = runner.rollout(episode_seed(seed, i))
                    conn.send(Done(i, steps))
                case Place(i, start):
                    chunks, fragments = layout.split(held.pop(i), start)
                    loose = [(lo, len(rows), ring.put(rows)) for lo, rows in fragments]
                    conn.send(Frames(i, chunks, loose))
                case Drop(i):
                    held.pop(i)
                case Stop():
                    return
                case msg:
                    raise TypeError(f"unexpected message {msg!r}")
    except (EOFError, KeyboardInterrupt):  # the collecting process went away
        return
    except BaseException:
        conn.send(Error(traceback.format_exc()))


class _Workers:
    """Forked worker processes, each with its own pipe, and how much work each holds.

    Episodes are launched in seed order, then each decided on once, in seed order: kept
    (:meth:`place`) or not (:meth:`drop`). Only these methods change the bookkeeping.
    """

    # Per worker: episodes queued to run (keeps it busy while the writer is slow to answer),
    # and episodes held unplaced (bounds memory while an earlier, long episode still runs).
    QUEUE, HOLD = 3, 8

    def __init__(self, source: RolloutSource, layout: ChunkLayout, n: int, seed: int):
        ctx = mp.get_context("fork")
        self._tasks, self._conns, self._procs, self._rings = [], [], [], []
        for _ in range(n):
            task_r, task_w = ctx.Pipe(duplex=False)
            result_r, result_w = ctx.Pipe(duplex=False)
            # Loose rows: at most two fragments of a chunk per episode, a few episodes queued.
            ring = RowRing(ctx, RING_CHUNKS * layout.chunk_len, layout.frame_shape)
            args = (task_r, result_w, ring, source, layout, os.getpid())
            proc = ctx.Process(target=_work, args=args, daemon=True)
            proc.start()
            task_r.close()
            result_w.close()
            self._tasks.append(task_w)
            self._conns.append(result_r)
            self._procs.append(proc)
            self._rings.append(ring)
        self._queued, self._held = [0] * n, [0] * n
        # One poll object for the whole run (multiprocessing's wait() builds one per call).
        self._poll = select.poll()
        self._worker_of = {}
        for w, conn in enumerate(self._conns):
            self._poll.register(conn.fileno(), select.POLLIN)
            self._worker_of[conn.fileno()] = w
        self._seed, self._launched, self._owner = seed, 0, {}  # owner: episode -> worker

    @property
    def undecided(self) -> int:
        """Episodes launched and not yet placed or dropped."""
        return len(self._owner)

    def launch(self, wanted: int) -> None:
        """Send up to ``wanted`` more episodes, in seed order, to workers with room."""
        for _ in range(wanted):
            w = self._free()
            if w is None:
                return
            self._tasks[w].send(Run(self._launched, self._seed))
            self._owner[self._launched], self._launched = w, self._launched + 1
            self._queued[w] += 1

    def _free(self) -> int | None:
        """The least loaded worker that can take another episode, if any."""
        ok = [w for w in range(len(self._conns)) if self._queued[w] < self.QUEUE]
        ok = [w for w in ok if self._queued[w] + self._held[w] < self.QUEUE + self.HOLD]
        return min(ok, key=lambda w: (self._queued[w], self._held[w]), default=None)

    def messages(self):
        """Messages from any worker as they come, as ``(worker, message)``."""
        for fd, _ in self._poll.poll():
            w = self._worker_of[fd]
            conn = self._conns[w]
            while True:  # drain what is waiting before the next wait() call
                try:
                    msg = conn.recv()
                except EOFError:
                    self._procs[w].join(1)
                    raise RuntimeError(
                        f"collection worker {w} died (exit code {self._procs[w].exitcode})"
                    ) from None
                if isinstance(msg, Error):
                    raise RuntimeError(f"collection worker {w} failed:\n{msg.traceback}")
                yield w, msg
                if not conn.poll():
                    break

    def finished(self, w: int) -> None:
        """Worker ``w`` sent :class:`Done`: one episode fewer queued, one more held."""
        self._queued[w] -= 1
        self._held[w] += 1

    def _decide(self, i: int) -> int:
        """Episode ``i`` is decided on: its worker, which holds it no more once told."""
        w = self._owner.pop(i)
        self._held[w] -= 1
        return w

    def place(self, i: int, start: int) -> None:
        """Keep episode ``i``, starting at row ``start``; its worker answers with :class:`Frames`."""
        self._tasks[self._decide(i)].send(Place(i, start))

    def drop(self, i: int) -> None:
        """Do not keep episode ``i``."""
        self._tasks[self._decide(i)].send(Drop(i))

    def take_rows(self, w: int, loose: list[tuple[int, int, int]]) -> list:
        """A :class:`Frames` message's loose rows in worker ``w``'s ring, as ``(start row, rows)``
        pairs: views, valid until :meth:`release_rows`."""
        ring = self._rings[w]
        return [(start, ring.get(pos, n)) for start, n, pos in loose]

    def release_rows(self, w: int, loose: list[tuple[int, int, int]]) -> None:
        """Give the rows of :meth:`take_rows` back to worker ``w``, once copied out."""
        ring = self._rings[w]
        for _, n, pos in loose:
            ring.release(pos, n)

    def close(self) -> None:
        for conn in self._tasks:
            with contextlib.suppress(OSError):
                conn.send(Stop())
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()


def _collect_into(writer: RolloutWriter, workers: _Workers, episodes, min_length, bar):
    """Runs episodes on the workers and stores the first ``episodes`` long enough, in seed order.

    Acceptance is decided in seed order only, so the store does not depend on scheduling.
    """
    done: dict[int, dict] = {}  # finished, not yet decided: per-step arrays
    decided = kept = awaiting = 0
    t0 = time.perf_counter()
    while kept < episodes or awaiting:
        workers.launch(episodes - kept - workers.undecided)
        for w, msg in workers.messages():
            match msg:
                case Done(i, steps):
                    done[i] = steps
                    workers.finished(w)
                case Frames(_, chunks, loose):  # encoded chunks, and rows left in the ring
                    writer.put_frames(chunks, workers.take_rows(w, loose))
                    workers.release_rows(w, loose)  # put_frames copied them out
                    awaiting -= 1
                case _:
                    raise RuntimeError(f"unexpected message from collection worker {w}: {msg!r}")
        while decided in done:
            steps = done.pop(decided)
            if kept < episodes and len(steps["reward"]) - 1 >= min_length:
                workers.place(decided, writer.add_steps(steps))
                kept, awaiting = kept + 1, awaiting + 1
                bar.set_postfix_str(
                    f"{writer.n / (time.perf_counter() - t0):,.0f} frames/s", refresh=False
                )
                bar.update(1)
            else:
                workers.drop(decided)
            decided += 1
    return kept


def _versions() -> dict[str, str]:
    return {p: md.version(p) for p in ("forward-models", "gymnasium", "numpy", "zarr") if _has(p)}


def _has(pkg: str) -> bool:
    try:
        md.version(pkg)
        return True
    except md.PackageNotFoundError:
        return False


def collect(
    source: RolloutSource,
    out: str | Path,
    episodes: int,
    seed: int,
    workers: int = 1,
    min_length: int = 0,
    progress: bool = True,
) -> Path:
    """Collect ``episodes`` episodes of ``source`` (an env and its agent) of at least
    ``min_length`` env steps into the store ``out``, with ``workers`` processes.

    Episodes shorter than ``min_length`` are dropped and the next seeds used, in order, so the
    result stays independent of ``workers``.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    probe = source.env.make()
    frame_shape = probe.observation_space.shape
    space = probe.action_space
    probe.close()
    layout = ChunkLayout(tuple(frame_shape))
    # Fork before anything starts a thread (zarr's event loop, tqdm's monitor): forked workers
    # then inherit no held locks, and unlike spawn they never re-import the caller's __main__.
    # Flush first: forked children inherit (and would print again) unflushed output.
    sys.stdout.flush()
    sys.stderr.flush()
    pool = _Workers(source, layout, workers, seed)
    pool.launch(episodes)  # workers start while the store is set up
    action_shape = getattr(space, "shape", ()) if not hasattr(space, "n") else ()
    action_dtype = np.int64 if hasattr(space, "n") else np.float32
    attrs = {
        "env": {
            **source.env.model_dump(mode="json"),
            "agent": source.agent.model_dump(mode="json"),
        },
        "action_space": repr(space),
        "action_shape": list(action_shape),
        "n_actions": int(space.n) if hasattr(space, "n") else None,
        "frame_shape": list(frame_shape),
        "seed": seed,
        "episodes": episodes,
        "min_length": min_length,
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    bar = tqdm(total=episodes, unit="ep", disable=not progress, desc=Path(out).name)
    try:
        with RolloutWriter(out, frame_shape, action_shape, action_dtype, attrs, layout) as writer:
            kept = _collect_into(writer, pool, episodes, min_length, bar)
            writer.root.attrs["episodes"] = kept
    finally:
        bar.close()
        pool.close()
    return Path(out)
