"""Parallel, deterministic rollout collection into a Zarr store.

Episode ``i`` of a split is seeded from ``SeedSequence(seed).spawn(...)[i]`` alone (env reset seed
and agent generator), and episodes are stored in seed order, so the store's bytes do not depend on
the number of workers.

Work is split so that the one writing process does little: worker processes run episodes and,
once the writer has decided (in seed order) where an episode starts, compress the chunks lying
wholly inside it; the writer completes the few chunks shared by neighbouring episodes (their rows
come through a shared-memory :class:`~forward_models.data.ring.RowRing`) and writes shard files.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import multiprocessing as mp
import select
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from tqdm import tqdm

from forward_models import agents, envs
from forward_models.data.ring import RowRing
from forward_models.data.shards import ChunkLayout
from forward_models.data.zarr_store import RolloutWriter


@dataclass(frozen=True)
class EnvSpec:
    """Plain description of an env, enough to rebuild it in a worker process."""

    id: str
    size: int
    kwargs: dict = field(default_factory=dict)
    max_episode_steps: int | None = None
    agent: str = "random"
    agent_kwargs: dict = field(default_factory=dict)

    def make(self):
        return envs.make(self.id, self.size, self.kwargs, self.max_episode_steps)


_CACHE: dict = {}


def _worker_env(spec: EnvSpec):
    key = repr(spec)
    if key not in _CACHE:
        env = spec.make()
        agent = agents.make_agent(spec.agent, env.action_space, spec.size, **spec.agent_kwargs)
        _CACHE.clear()
        _CACHE[key] = (env, agent)
    return _CACHE[key]


def run_episode(spec: EnvSpec, seed: np.random.SeedSequence) -> dict[str, np.ndarray]:
    """One episode as store rows (see :mod:`forward_models.data.zarr_store`)."""
    frames, steps = _rollout(spec, seed)
    return {"obs": np.stack(frames), **steps}


def _rollout(spec: EnvSpec, seed: np.random.SeedSequence) -> tuple[list, dict[str, np.ndarray]]:
    """One episode: its frames as the env returned them, and the per-step arrays."""
    env, agent = _worker_env(spec)
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


def episode_seed(seed: int, i: int) -> np.random.SeedSequence:
    """Episode ``i``'s seed: ``SeedSequence(seed).spawn(i + 1)[i]``, made without the others."""
    return np.random.SeedSequence(seed, spawn_key=(i,))


def _work(
    tasks: Connection, conn: Connection, ring: RowRing, spec: EnvSpec, layout: ChunkLayout
) -> None:
    """A collection worker: runs the episodes it is sent, encodes their frames once placed.

    An episode's chunks can only be cut once the rows of every earlier episode are known, so
    its frames wait here (not in the writer) until the writer sends where they start.
    """
    held: dict[int, list[np.ndarray]] = {}
    try:
        while True:
            msg = tasks.recv()
            if msg[0] == "run":
                _, i, seed = msg
                held[i], steps = _rollout(spec, episode_seed(seed, i))
                conn.send(("done", i, steps))
            elif msg[0] == "place":
                _, i, start = msg
                chunks, fragments = layout.split(held.pop(i), start)
                loose = [(lo, len(rows), ring.put(rows)) for lo, rows in fragments]
                conn.send(("frames", i, chunks, loose))
            elif msg[0] == "drop":
                held.pop(msg[1])
            else:
                return
    except (EOFError, KeyboardInterrupt):  # the collecting process went away
        return
    except BaseException:
        conn.send(("error", traceback.format_exc()))


class _Workers:
    """Forked worker processes, each with its own pipe, and how much work each holds."""

    # Per worker: episodes queued to run (keeps it busy while the writer is slow to answer),
    # and episodes held unplaced (bounds memory while an earlier, long episode still runs).
    QUEUE, HOLD = 3, 8

    def __init__(self, spec: EnvSpec, layout: ChunkLayout, n: int, seed: int):
        ctx = mp.get_context("fork")
        self.tasks, self.conns, self.procs, self.rings = [], [], [], []
        for _ in range(n):
            task_r, task_w = ctx.Pipe(duplex=False)
            result_r, result_w = ctx.Pipe(duplex=False)
            # Loose rows: at most two fragments of a chunk per episode, a few episodes queued.
            ring = RowRing(ctx, 8 * layout.chunk_len, layout.frame_shape)
            args = (task_r, result_w, ring, spec, layout)
            proc = ctx.Process(target=_work, args=args, daemon=True)
            proc.start()
            task_r.close()
            result_w.close()
            self.tasks.append(task_w)
            self.conns.append(result_r)
            self.procs.append(proc)
            self.rings.append(ring)
        self.queued, self.held = [0] * n, [0] * n
        # One poll object for the whole run (multiprocessing's wait() builds one per call).
        self._poll = select.poll()
        self._worker_of = {}
        for w, conn in enumerate(self.conns):
            self._poll.register(conn.fileno(), select.POLLIN)
            self._worker_of[conn.fileno()] = w
        self.seed, self.launched, self.owner = seed, 0, {}  # owner: episode -> worker

    def launch(self, wanted: int) -> None:
        """Send up to ``wanted`` more episodes, in seed order, to workers with room."""
        for _ in range(wanted):
            w = self._free()
            if w is None:
                return
            self.tasks[w].send(("run", self.launched, self.seed))
            self.owner[self.launched], self.launched = w, self.launched + 1
            self.queued[w] += 1

    def _free(self) -> int | None:
        """The least loaded worker that can take another episode, if any."""
        ok = [w for w in range(len(self.conns)) if self.queued[w] < self.QUEUE]
        ok = [w for w in ok if self.queued[w] + self.held[w] < self.QUEUE + self.HOLD]
        return min(ok, key=lambda w: (self.queued[w], self.held[w]), default=None)

    def messages(self):
        """Messages from any worker as they come, as ``(worker, message)``."""
        for fd, _ in self._poll.poll():
            w = self._worker_of[fd]
            conn = self.conns[w]
            while True:  # drain what is waiting before the next wait() call
                try:
                    msg = conn.recv()
                except EOFError:
                    self.procs[w].join(1)
                    raise RuntimeError(
                        f"collection worker {w} died (exit code {self.procs[w].exitcode})"
                    ) from None
                if msg[0] == "error":
                    raise RuntimeError(f"collection worker {w} failed:\n{msg[1]}")
                yield w, msg
                if not conn.poll():
                    break

    def close(self) -> None:
        for conn in self.tasks:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc in self.procs:
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
        workers.launch(episodes - kept - (workers.launched - decided))
        for w, msg in workers.messages():
            if msg[0] == "done":
                done[msg[1]] = msg[2]
                workers.queued[w] -= 1
                workers.held[w] += 1
            else:  # "frames": encoded chunks, and loose rows left in the worker's ring
                ring = workers.rings[w]
                writer.put_frames(msg[2], [(start, ring.get(pos, n)) for start, n, pos in msg[3]])
                for _, n, pos in msg[3]:  # put_frames copied them out
                    ring.release(pos, n)
                awaiting -= 1
        while decided in done:
            steps, w = done.pop(decided), workers.owner.pop(decided)
            workers.held[w] -= 1
            if kept < episodes and len(steps["reward"]) - 1 >= min_length:
                start = writer.add_steps(steps)
                workers.tasks[w].send(("place", decided, start))
                kept, awaiting = kept + 1, awaiting + 1
                bar.set_postfix_str(
                    f"{writer.n / (time.perf_counter() - t0):,.0f} frames/s", refresh=False
                )
                bar.update(1)
            else:
                workers.tasks[w].send(("drop", decided))
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
    spec: EnvSpec,
    out: str | Path,
    episodes: int,
    seed: int,
    workers: int = 1,
    min_length: int = 0,
    progress: bool = True,
) -> Path:
    """Collect ``episodes`` episodes of at least ``min_length`` env steps into the store ``out``.

    Episodes shorter than ``min_length`` are dropped and the next seeds used, in order, so the
    result stays independent of ``workers``.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    env = spec.make()
    frame_shape = env.observation_space.shape
    space = env.action_space
    env.close()
    layout = ChunkLayout(tuple(frame_shape))
    # Fork before anything starts a thread (zarr's event loop, tqdm's monitor): forked workers
    # then inherit no held locks, and unlike spawn they never re-import the caller's __main__.
    # Flush first: forked children inherit (and would print again) unflushed output.
    sys.stdout.flush()
    sys.stderr.flush()
    pool = _Workers(spec, layout, workers, seed)
    pool.launch(episodes)  # workers start while the store is set up
    action_shape = getattr(space, "shape", ()) if not hasattr(space, "n") else ()
    action_dtype = np.int64 if hasattr(space, "n") else np.float32
    attrs = {
        "env": asdict(spec),
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
