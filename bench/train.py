"""Training throughput of every family on the current device: frames/s of the real training
loop (``forward_models.training.train``) fed (a) by the real data path from a Zarr store (the
sampler training picks: frames on the device when they fit, else gathered on the host) and
(b) by one synthetic batch already on the device (the model-only ceiling), and their ratio
(data path / ceiling; the data path should not be the bottleneck: >= 0.9), eager or compiled,
with peak device memory on CUDA.

    python bench/train.py                         # CPU: batches 16 32 64
    python bench/train.py --batch 32 256 1024 --compile reduce-overhead   # a GPU

Frames are predicted (unpadded) frames per second of the loop as it logs them, after warm-up
steps (which also compile). Each family uses its default-config settings
(config/config.yaml) apart from the batch size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from forward_models import config, models  # noqa: E402
from forward_models.data.collect import collect  # noqa: E402
from forward_models.data.zarr_store import open_rollouts  # noqa: E402
from forward_models.devices import pick_device  # noqa: E402
from forward_models.training import sampler, train  # noqa: E402


class OneBatch:
    """A sampler that hands out one batch already on the device: the model-only ceiling."""

    def __init__(self, batch: dict):
        self.batch, self.rng = batch, np.random.default_rng(0)

    def sample(self, batch_size: int) -> dict:
        return self.batch


def frames_per_s(model, data, tcfg, device, steps: int, warmup: int) -> float:
    """Predicted frames per second of ``steps`` loop steps after ``warmup`` ones, as the loop
    itself measures it (``frames_per_s`` of its last log: setup, validation and checkpoints
    excluded; on CUDA the loop's last log reads the device, so queued work is counted)."""
    quiet = {"device": str(device), "progress": False}
    for n in (warmup, steps):
        update = {"steps": n, "log_every": n, "checkpoint_every": 10**9}
        with tempfile.TemporaryDirectory() as d:
            log = train(model, data, None, tcfg.model_copy(update=update), d, **quiet)
    return float(log[log.metric == "frames_per_s"]["value"].iloc[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="steps before timing (and compile)")
    ap.add_argument("--compile", default="none", help="torch.compile mode, or none")
    ap.add_argument("--precision", default="auto", help="train.precision")
    ap.add_argument("--families", nargs="*", help="model names of config.yaml (default: all)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    cfg = config.load_yaml(ROOT / "config" / "config.yaml")
    pong = cfg.envs["pong"]
    names = args.families or [n for n, m in cfg.models.items() if not m.reference]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        store = open_rollouts(
            collect(pong.source, Path(d) / "train.zarr", 300, seed=0, progress=False)
        )
        for name in names:
            for batch in args.batch:
                m = cfg.models[name]
                update = {"batch_size": batch, "compile": args.compile, "precision": args.precision}
                tcfg = m.train.model_copy(update=update)
                m = m.model_copy(update={"train": tcfg})
                torch.manual_seed(0)
                model = models.build(m, store.frame_shape, store.n_actions).to(device)
                real = sampler(store, tcfg.seq_len, None, 0, device)
                fake = OneBatch({k: v.to(device) for k, v in real.sample(batch).items()})
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                path = frames_per_s(model, real, tcfg, device, args.steps, args.warmup)
                ceiling = frames_per_s(model, fake, tcfg, device, args.steps, args.warmup)
                peak = (
                    torch.cuda.max_memory_allocated(device) / 2**20
                    if device.type == "cuda"
                    else None
                )
                rows.append((name, batch, type(real).__name__, path, ceiling, peak))
                print(f"  {name} batch {batch}: {path:,.0f} / {ceiling:,.0f} frames/s",
                      file=sys.stderr, flush=True)  # fmt: skip
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")  # fmt: skip
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({cpu}), {args.threads} threads"
    )
    print(
        f"\n{where}; compile {args.compile}, precision {args.precision}, torch {torch.__version__}\n"
    )
    print(
        "| family | batch | sampler | data path frames/s | ceiling frames/s | path / ceiling | peak MiB |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, batch, kind, path, ceiling, peak in rows:
        mem = f"{peak:,.0f}" if peak is not None else "-"
        print(
            f"| {name} | {batch} | {kind} | {path:,.0f} | {ceiling:,.0f} | {path / ceiling:.2f} | {mem} |"
        )


if __name__ == "__main__":
    main()
