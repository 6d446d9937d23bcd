"""Data benchmark: env speed, collection overhead and scaling, store size, codecs, loader speed.

    python bench/data.py                 # about 3 minutes on 2 cores
    python bench/data.py --frames 1e6    # also the 10^6-frame streaming run (peak memory)

Prints one markdown table (paste it into docs/benchmarks.md). Ratios are against
baselines measured in the same run; the raw loop and each collection are run ``--repeats`` times,
interleaved, and the median is reported (this machine's speed drifts by a few percent). Each
collection runs in a fresh subprocess so its peak RSS (main process + workers) is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
from forward_models.config import RolloutSource  # noqa: E402

PONG = RolloutSource(
    env={"id": "forward_models/TwoPlayerPong-v0", "size": 64, "max_episode_steps": 200},
    agent={"kind": "pong", "kwargs": {"stochasticity": [0.5, 1.0]}},
)


def ale() -> RolloutSource:  # built when used: without ale-py the id fails validation
    return RolloutSource(
        env={"id": "ALE/Pong-v5", "size": 64, "max_episode_steps": 400},
        agent={"kind": "sticky", "kwargs": {"stickiness": 0.8}},
    )


def raw_loop(spec: RolloutSource, frames: int) -> float:
    """Bare Gymnasium loop with the collection's agent, no storage: frames/s."""
    from forward_models import agents

    env = spec.env.make()
    agent = agents.make_agent(spec.agent.kind, env.action_space, spec.env.size, **spec.agent.kwargs)
    n, ep, t0 = 0, 0, time.perf_counter()
    while n < frames:
        agent.reset(np.random.default_rng(ep))
        obs, info = env.reset(seed=ep)
        n, ep, done = n + 1, ep + 1, False
        while not done and n < frames:
            obs, _, term, trunc, info = env.step(agent.act(obs, info))
            n, done = n + 1, term or trunc
    return frames / (time.perf_counter() - t0)


def collect_in_subprocess(spec: RolloutSource, out: Path, episodes: int, workers: int) -> dict:
    # Peak RSS is sampled from /proc over the main process and its workers together
    # (summing ru_maxrss of parent and children overstates it: forked pages are shared).
    code = f"""
import json, os, sys, threading, time
sys.path.insert(0, {str(ROOT / "scripts")!r})
from forward_models.config import RolloutSource
from forward_models.data.collect import collect
from forward_models.data.zarr_store import open_rollouts
def rss(pid):
    try:
        return int(open(f"/proc/{{pid}}/status").read().split("VmRSS:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return 0.0
peak = [0.0]
def watch():
    while True:
        kids = [int(p) for p in os.popen(f"pgrep -P {{os.getpid()}}").read().split()]
        peak[0] = max(peak[0], rss(os.getpid()) + sum(rss(k) for k in kids))
        time.sleep(0.5)
threading.Thread(target=watch, daemon=True).start()
spec = RolloutSource.model_validate_json({spec.model_dump_json()!r})
t0 = time.perf_counter()
collect(spec, {str(out)!r}, {episodes}, seed=0, workers={workers}, progress=False)
dt = time.perf_counter() - t0
r = open_rollouts({str(out)!r})
print(json.dumps({{"frames": int(r.episode_ends[-1]), "seconds": dt, "rss_mb": peak[0]}}))
"""
    out_json = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    res = json.loads(out_json.strip().splitlines()[-1])
    res["fps"] = res["frames"] / res["seconds"]
    res["disk"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return res


def pong_speeds(d: Path, episodes: int, repeats: int) -> tuple[float, dict, dict]:
    """Median raw-loop frames/s, and the median-speed 1- and 2-worker collections.

    Interleaved, so a slow spell of the machine hits all three alike.
    """
    raws, ones, twos = [], [], []
    for _ in range(repeats):
        raws.append(raw_loop(PONG, 100_000))
        ones.append(collect_in_subprocess(PONG, d / "w1.zarr", episodes, 1))
        twos.append(collect_in_subprocess(PONG, d / "w2.zarr", episodes, 2))
    print(
        "  runs (frames/s): raw",
        [f"{r:,.0f}" for r in raws],
        "1 worker",
        [f"{r['fps']:,.0f}" for r in ones],
        "2 workers",
        [f"{r['fps']:,.0f}" for r in twos],
        file=sys.stderr,
    )

    def median(runs):
        return sorted(runs, key=lambda r: r["fps"])[len(runs) // 2]

    return float(np.median(raws)), median(ones), median(twos)


def codecs(obs: np.ndarray) -> list[tuple[str, float, float]]:
    """(codec, bytes per frame, full-read MB/s of decoded frames) for candidate codecs."""
    import zarr
    import zarr.codecs as zc

    candidates = {
        "zstd-1": zc.ZstdCodec(level=1),
        "zstd-3": zc.ZstdCodec(level=3),
        "zstd-9": zc.ZstdCodec(level=9),
        "blosc-lz4": zc.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
        "blosc-zstd": zc.BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
        "gzip-6": zc.GzipCodec(level=6),
    }
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, codec in candidates.items():
            path = Path(d) / name
            a = zarr.create_array(
                str(path),
                shape=obs.shape,
                dtype=obs.dtype,
                chunks=(16, *obs.shape[1:]),
                shards=(1024, *obs.shape[1:]),
                compressors=codec,
            )
            a[:] = obs
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            t0 = time.perf_counter()
            for _ in range(3):
                zarr.open_array(str(path), mode="r")[:]
            mbs = 3 * obs.nbytes / 2**20 / (time.perf_counter() - t0)
            rows.append((name, size / len(obs), mbs))
    return rows


def loader_speed(store: Path, seconds: float = 5.0) -> dict:
    import torch
    from forward_models.data.windows import StreamingWindows, WindowSampler
    from forward_models.data.zarr_store import open_rollouts

    r = open_rollouts(store)
    out = {}
    mem = WindowSampler(r, 32, seed=0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        mem.sample(32)
        n += 32
    out["in-memory"] = n / (time.perf_counter() - t0)
    for workers in (0, 2):
        dl = torch.utils.data.DataLoader(
            StreamingWindows(store, 32, 32), batch_size=None, num_workers=workers
        )
        it = iter(dl)
        next(it)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            next(it)
            n += 32
        out[f"streaming, {workers} workers"] = n / (time.perf_counter() - t0)
        del it, dl
    return out


def training_consumption(steps: int = 6) -> float:
    """Windows/s that one training step of the default model consumes at 64x64 (batch 32 x 32)."""
    import torch
    import yaml
    from forward_models import models

    torch.set_num_threads(2)
    from forward_models.config import resolve_presets

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg = resolve_presets(cfg, ROOT / "config" / "models")["models"]["rnn_deconv"]
    model = models.build(cfg, (3, 64, 64), 9).train()
    opt = torch.optim.Adam(model.parameters())
    batch = {
        "obs": torch.rand(32, 32, 3, 64, 64),
        "action": torch.randint(0, 9, (32, 32)),
        "mask": torch.ones(32, 32, dtype=torch.bool),
    }
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return 32 * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--frames", type=float, default=0, help="also stream this many Pong 64x64 frames"
    )
    ap.add_argument(
        "--episodes", type=int, default=4000, help="episodes per collection run (~133 frames each)"
    )
    ap.add_argument("--repeats", type=int, default=3, help="runs of each speed measurement")
    args = ap.parse_args()
    rows = []

    def row(what, value, unit, note=""):
        rows.append((what, value, unit, note))
        print(f"  {what}: {value:,.1f} {unit} {note}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as d:
        try:
            ale_raw = raw_loop(ale(), 5_000)
            row("raw env loop, ALE/Pong-v5 rendered + resized to 64x64", ale_raw, "frames/s")
            ale_run = collect_in_subprocess(ale(), Path(d) / "ale.zarr", 12, 1)
            overhead = 100 * (ale_raw / ale_run["fps"] - 1)
            row(
                "collection + storage, ALE/Pong-v5, 1 worker",
                ale_run["fps"],
                "frames/s",
                f"= {ale_run['fps'] / ale_raw:.2f}x raw loop (overhead {overhead:.0f}%)",
            )
        except (ImportError, ValueError) as exc:
            row("raw env loop, ALE/Pong-v5", float("nan"), "", f"unavailable: {exc}")
        raw, one, two = pong_speeds(Path(d), args.episodes, args.repeats)
        row("raw env loop, built-in Pong 64x64 (scripted agent)", raw, "frames/s")
        row(
            "collection + storage, built-in Pong 64x64, 1 worker",
            one["fps"],
            "frames/s",
            f"= {one['fps'] / raw:.2f}x raw loop (overhead {100 * (raw / one['fps'] - 1):.0f}%)",
        )
        row(
            "collection + storage, built-in Pong 64x64, 2 workers",
            two["fps"],
            "frames/s",
            f"= {two['fps'] / one['fps']:.2f}x 1 worker",
        )
        row(
            "store size per 10^5 frames (64x64, zstd-3)",
            one["disk"] / one["frames"] * 1e5 / 2**20,
            "MiB",
            f"compression {one['frames'] * 64 * 64 * 3 / one['disk']:.0f}x",
        )
        row("peak RSS, collection (2 workers, all processes)", two["rss_mb"], "MB")
        from forward_models.data.zarr_store import open_rollouts

        obs = open_rollouts(Path(d) / "w1.zarr").array("obs")[:8192]
        for name, per_frame, mbs in codecs(obs):
            row(
                f"codec {name}",
                per_frame * 1e5 / 2**20,
                "MiB per 10^5 frames",
                f"decode {mbs:,.0f} MB/s",
            )
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # The loaders on a 300-episode store (~40k frames, 490 MB decoded): the in-memory one
        # holds it all.
        small = collect_in_subprocess(PONG, Path(d) / "small.zarr", 300, 2)
        for name, wps in loader_speed(Path(d) / "small.zarr").items():
            row(f"loader windows/s ({name}), batch 32 x 32 steps, 64x64", wps, "windows/s")
        row(
            f"peak RSS, this process after the loaders ({small['frames']:,} frames)",
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "MB",
            f"({before:.0f} MB before them)",
        )
        need = training_consumption()
        row("training consumes (rnn_deconv as in config.yaml, 64x64, this CPU)", need, "windows/s")
        if args.frames:
            eps = int(args.frames / 133)  # mean Pong episode: ~133 rows
            big = collect_in_subprocess(PONG, Path(d) / "big.zarr", eps, 2)
            row(
                f"streamed {big['frames']:,} frames (2 workers)",
                big["rss_mb"],
                "MB peak RSS",
                f"{big['disk'] / 2**20:,.0f} MiB on disk, {big['fps']:,.0f} frames/s",
            )
    print("\n| measurement | value | unit | note |\n|---|---:|---|---|")
    for what, value, unit, note in rows:
        print(f"| {what} | {value:,.1f} | {unit} | {note} |")


if __name__ == "__main__":
    main()
