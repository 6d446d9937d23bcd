"""The ``forward-models`` command: inspect stores, print the config schema, the results table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from forward_models import config as fm_config


def cmd_schema(args) -> None:
    print(json.dumps(fm_config.json_schema(), indent=2))


def config_docs() -> str:
    """Markdown reference of every config key, generated from the schema."""
    schema = fm_config.json_schema()
    defs = schema["$defs"]
    lines = [
        "# Config reference",
        "",
        "Generated from the typed config (`forward-models docs > config/README.md`; a test keeps",
        "it in sync). `config.yaml` is the default experiment, `test.yaml` a tiny overlay for tests,",
        "`plot.mplstyle` the style every figure rule takes as an input.",
    ]

    def section(title: str, node: dict) -> None:
        lines.extend(
            ["", f"## {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        )
        for key, prop in node.get("properties", {}).items():
            items = prop.get("additionalProperties")
            ref = prop.get("$ref") or (items.get("$ref") if isinstance(items, dict) else None)
            kind = _type(prop) if not ref else ref.split("/")[-1]
            if ref and not prop.get("$ref"):
                kind = f"map of {kind}"
            default = json.dumps(prop["default"]) if "default" in prop else "required"
            if ref and "default" in prop:
                default = f"see {ref.split('/')[-1]}"
            doc = " ".join(prop.get("description", "").split())
            lines.append(
                f"| `{key}` | {kind} | {default if default.startswith('see') else f'`{default}`'} | {doc} |"
            )

    section("Top level", schema)
    for name, node in defs.items():
        section(name, node)
    return "\n".join(lines) + "\n"


def _type(prop: dict) -> str:
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    if "enum" in prop:
        return " / ".join(map(str, prop["enum"]))
    if "const" in prop:
        return f"`{prop['const']}`"
    if (
        isinstance(prop.get("additionalProperties"), dict)
        and "oneOf" in prop["additionalProperties"]
    ):
        return "map of model configs (by `arch`)"
    return prop.get("type", "any")


def cmd_docs(args) -> None:
    print(config_docs(), end="")


def cmd_inspect(args) -> None:
    import numpy as np

    from forward_models.data.zarr_store import open_rollouts

    r = open_rollouts(args.store)
    if args.verify:
        from forward_models.data.zarr_store import verify_store

        print(f"verified   {verify_store(r)} files decode, shard checksums match")
    steps = r.lengths - 1
    action = r.array("action")[:]
    a = r.attrs
    print(f"store      {r.path}")
    print(f"env        {a['env']['id']}  agent={a['env']['agent']}  frames {r.frame_shape}")
    print(f"episodes   {r.n_episodes}  rows {int(r.episode_ends[-1])}")
    print(f"steps      min {steps.min()}  median {int(np.median(steps))}  max {steps.max()}")
    if action.ndim == 1:
        hist = np.bincount(action, minlength=max(r.n_actions, 1))
        print(f"actions    {hist.tolist()}")
    else:
        print(
            f"actions    mean {action.mean(0).round(3).tolist()}  std {action.std(0).round(3).tolist()}"
        )
    size = sum(f.stat().st_size for f in Path(args.store).rglob("*") if f.is_file())
    raw = r.array("obs").nbytes
    print(
        f"disk       {size / 2**20:.1f} MiB  (obs raw {raw / 2**20:.1f} MiB, ratio {raw / max(size, 1):.1f}x)"
    )
    if args.sheet:
        contact_sheet(r, args.sheet, args.episodes, args.frames)
        print(f"sheet      {args.sheet}")


def contact_sheet(r, out: str, episodes: int = 4, frames: int = 8, scale: int = 3) -> None:
    """One row per episode: ``frames`` frames spread evenly over it, upscaled (nearest)."""
    import numpy as np
    from PIL import Image

    rows = []
    for i in range(min(episodes, r.n_episodes)):
        ep = r.episode(i)["obs"]
        idx = np.linspace(0, len(ep) - 1, frames).round().astype(int)
        pad = np.full((ep.shape[1], 2, 3), 96, np.uint8)
        rows.append(np.concatenate([x for j in idx for x in (ep[j], pad)], axis=1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 96, np.uint8))
    sheet = np.concatenate(rows).repeat(scale, 0).repeat(scale, 1)
    Image.fromarray(sheet).save(out)


def cmd_play(args) -> None:
    from forward_models.play import play

    keys = [set(k.split("+")) - {""} for k in args.keys.split(",")] if args.keys else None
    frames = play(args.checkpoint, record=args.record, steps=args.steps, keys=keys, seed=args.seed)
    print(f"played {len(frames)} steps" + (f", recorded {args.record}" if args.record else ""))


def cmd_check_config(args) -> None:
    from forward_models import config

    files = ([] if args.replace else ["config/config.yaml"]) + args.files
    cfg = config.load_yaml(*files, presets_dir="config/models")  # as the workflow reads them
    runs = sum(len(cfg.models_for(env)) for env in cfg.envs) * len(cfg.seeds)
    print(f"{' + '.join(files)}: valid; {len(cfg.envs)} envs, {runs} model runs")


def cmd_results_table(args) -> None:
    import pandas as pd

    from forward_models.leaderboard import headline

    print(headline(pd.read_csv(args.summary), args.horizons), end="")


def cmd_check_report(args) -> None:
    from forward_models.report_check import check_report

    result = check_report(args.report, args.screenshot)
    print(f"{args.report}: rendered, all {result['images']} embedded figures load in Chromium")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="forward-models", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("schema", help="print the config JSON schema").set_defaults(fn=cmd_schema)
    sub.add_parser("docs", help="print the config reference (config/README.md)").set_defaults(
        fn=cmd_docs
    )
    p = sub.add_parser("inspect", help="summarise a rollout store")
    p.add_argument("store")
    p.add_argument("--sheet", help="save a contact sheet PNG of frames here")
    p.add_argument("--episodes", type=int, default=4, help="episodes (rows) in the sheet")
    p.add_argument("--frames", type=int, default=8, help="frames per episode in the sheet")
    p.add_argument(
        "--verify", action="store_true", help="decode every chunk and check shard checksums"
    )
    p.set_defaults(fn=cmd_inspect)
    p = sub.add_parser("play", help="play a trained checkpoint with the keyboard (pygame window)")
    p.add_argument("checkpoint")
    p.add_argument("--record", help="write what is shown to this .mp4 or .gif")
    p.add_argument("--steps", type=int, help="stop after this many steps (default: until Esc)")
    p.add_argument(
        "--keys",
        help="scripted held keys per step, comma-separated, '+' joins keys (e.g. 'w,w+up,,s'); cycles",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the true env's first precondition")
    p.set_defaults(fn=cmd_play)
    p = sub.add_parser(
        "check-config",
        help="validate config files as the workflow would (syntax errors name file and line)",
    )
    p.add_argument("files", nargs="*", help="overlays, as given to snakemake --configfile")
    p.add_argument(
        "--replace",
        action="store_true",
        help="as --replace-workflow-config: the files alone, without config/config.yaml",
    )
    p.set_defaults(fn=cmd_check_config)
    p = sub.add_parser(
        "results-table", help="the README's results table from a run's results/eval/summary.csv"
    )
    p.add_argument("summary", help="results/eval/summary.csv of a run")
    p.add_argument("--horizons", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.set_defaults(fn=cmd_results_table)
    p = sub.add_parser("check-report", help="open a Snakemake HTML report in headless Chromium")
    p.add_argument("report")
    p.add_argument("--screenshot", help="save a screenshot of the report here")
    p.set_defaults(fn=cmd_check_report)
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    args = ap.parse_args(argv)
    try:
        args.fn(args)
    except Exception as exc:  # a user's mistake reads as one line; --debug shows where
        if args.debug:
            raise
        print(f"forward-models {args.cmd}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main(sys.argv[1:])
