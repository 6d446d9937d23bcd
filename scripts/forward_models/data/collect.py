"""Parallel, deterministic rollout collection into a Zarr store.

Episode ``i`` of a split is seeded from ``SeedSequence(seed).spawn(...)[i]`` alone (env reset seed
and agent generator), and episodes are stored in seed order, so the store's bytes do not depend on
the number of workers.
"""

from __future__ import annotations

import importlib.metadata as md
import multiprocessing as mp
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from forward_models import agents, envs
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
    env, agent = _worker_env(spec)
    env_seed, agent_seed = seed.spawn(2)
    agent.reset(np.random.default_rng(agent_seed))
    obs, info = env.reset(seed=int(env_seed.generate_state(1)[0]))
    rows = {
        "obs": [obs],
        "action": [],
        "reward": [0.0],
        "terminated": [False],
        "truncated": [False],
    }
    while True:
        action = agent.act(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        rows["action"].append(action)
        rows["obs"].append(obs)
        rows["reward"].append(reward)
        rows["terminated"].append(terminated)
        rows["truncated"].append(truncated)
        if terminated or truncated:
            break
    rows["action"].append(np.zeros_like(np.asarray(rows["action"][0])))
    return {k: np.asarray(v) for k, v in rows.items()}


def _episodes(spec: EnvSpec, root: np.random.SeedSequence, pool, workers: int):
    """Episodes seeded by ``root``'s children in order, forever.

    With a pool, at most ``2 * workers`` episodes are in flight: results never pile up in
    memory behind a slower writer.
    """
    if pool is None:
        while True:
            yield run_episode(spec, root.spawn(1)[0])
    inflight = deque(pool.apply_async(run_episode, (spec, s)) for s in root.spawn(2 * workers))
    while True:
        ep = inflight.popleft().get()
        inflight.append(pool.apply_async(run_episode, (spec, root.spawn(1)[0])))
        yield ep


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
    # Fork before anything starts a thread (zarr's event loop, tqdm's monitor): forked workers
    # then inherit no held locks, and unlike spawn they never re-import the caller's __main__.
    # Flush first: forked children inherit (and would print again) unflushed output.
    sys.stdout.flush()
    sys.stderr.flush()
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    env = spec.make()
    frame_shape = env.observation_space.shape
    space = env.action_space
    action_shape = getattr(space, "shape", ()) if not hasattr(space, "n") else ()
    action_dtype = np.int64 if hasattr(space, "n") else np.float32
    env.close()
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
    root = np.random.SeedSequence(seed)
    bar = tqdm(total=episodes, unit="ep", disable=not progress, desc=Path(out).name)
    kept, frames, t0 = 0, 0, time.perf_counter()
    try:
        with RolloutWriter(out, frame_shape, action_shape, action_dtype, attrs) as writer:
            for ep in _episodes(spec, root, pool, workers):
                if len(ep["obs"]) - 1 < min_length:
                    continue
                writer.add_episode(ep)
                kept += 1
                frames += len(ep["obs"])
                bar.set_postfix_str(
                    f"{frames / (time.perf_counter() - t0):,.0f} frames/s", refresh=False
                )
                bar.update(1)
                if kept == episodes:
                    break
            writer.root.attrs["episodes"] = kept
    finally:
        bar.close()
        if pool:
            pool.terminate()
    return Path(out)
