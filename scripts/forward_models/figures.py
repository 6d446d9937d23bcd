"""Figures: error against horizon, rollout strips and side-by-side GIFs."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from forward_models import frames  # noqa: E402

LABELS = {
    "mse": "MSE per pixel ([0, 1] intensities)",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "es": "energy score of sampled futures\n(RMS distance per pixel)",
}
FLOOR_NAMES = {"mse": "the floor", "es": "the ES floor"}


def error_vs_horizon(
    summary: pd.DataFrame, out: str | Path, metric: str = "mse", style=None
) -> None:
    """One panel per env; one line per model (references dashed); band = range over seeds. Where
    the env has a floor, the region below it (no model can get there in expectation) is shaded:
    for ``es``, below the energy score of the floor's posterior samples."""
    df = summary[(summary["metric"] == metric) & (summary["predictor"] == "model")]
    df = df.assign(kind=np.where(df["reference"], "reference", "learned"))
    # The floor runs' means; with floors at several preconditions, the lowest (the most seen).
    floors = df[df["floor"]].groupby(["env", "model", "horizon"])["mean"].mean()
    floors = floors.groupby(["env", "horizon"]).min()

    def shade(g) -> None:
        for env, ax in g.axes_dict.items():
            if env not in floors.index.get_level_values("env"):
                continue
            best = floors[env]
            low = best.min() / 10 if metric in FLOOR_NAMES else ax.get_ylim()[0]
            ax.fill_between(best.index, low, best.to_numpy(), color="0.88", zorder=0, lw=0)
            ax.text(0.02, 0.02, f"below {FLOOR_NAMES[metric]}: unreachable",
                    transform=ax.transAxes, fontsize=7, color="0.4")  # fmt: skip

    xlabel = "open-loop horizon (steps after the precondition)"
    lines_by_env(
        df,
        "horizon",
        "mean",
        "kind",
        xlabel,
        LABELS[metric],
        out,
        style,
        log=metric in FLOOR_NAMES,
        markers=True,
        dashes={"learned": "", "reference": (4, 2)},
        style_order=["learned", "reference"],
        decorate=shade if metric in FLOOR_NAMES else None,
    )


def lines_by_env(
    df, x, y, style_col, xlabel, ylabel, out, style=None, log=True, decorate=None, **kw
) -> None:
    """One panel per env, hue = model, band = range over seeds, legend below the panels;
    ``decorate(grid)`` may draw more before saving. With nothing to draw (a config of
    reference models only: none of them trains), a panel that says so."""
    if df.empty:
        return nothing_to_draw(
            out, f"no {ylabel.splitlines()[0]}: no model of this config trains", style
        )
    with plt.style.context(style or "default"):
        g = sns.relplot(
            data=df,
            x=x,
            y=y,
            hue="model",
            style=style_col,
            col="env",
            kind="line",
            height=3.6,
            aspect=1.3,
            facet_kws={"sharey": False},
            **({"errorbar": ("pi", 100)} | kw),
        )
        g.set_axis_labels(xlabel, ylabel)
        g.set_titles("{col_name}")
        if log:
            g.set(yscale="log")
        if decorate is not None:
            decorate(g)
        sns.move_legend(
            g, "upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, title=None, frameon=False
        )
        g.tight_layout()
        g.savefig(out, bbox_inches="tight")
        plt.close(g.figure)


def nothing_to_draw(out: str | Path, why: str, style=None) -> None:
    """A figure that says why it is empty (the rule's output still exists and reads clearly)."""
    with plt.style.context(style or "default"):
        fig, ax = plt.subplots(figsize=(4.8, 1.6))
        ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True)
        ax.set_axis_off()
        fig.savefig(out, bbox_inches="tight")
        plt.close(fig)


def same_episodes(ex: dict, other: dict) -> dict:
    """``other``'s examples, checked to be of the same test episodes as ``ex``'s."""
    if not np.array_equal(ex["episode"], other["episode"]):
        raise ValueError(
            f"the floor's examples are episodes {other['episode'].tolist()}, the model's "
            f"{ex['episode'].tolist()}: re-run the evaluation of both"
        )
    return other


def rollout_strip(
    examples: dict, out: str | Path, n_frames: int = 12, episode: int = 0, style=None
) -> None:
    """Rows: truth, prediction, |difference|; the precondition frames lead the truth row. With
    a ``floor`` entry (the floor's predictions of the same episodes), a row of the best
    achievable prediction sits above the model's."""
    ctx, truth, pred = (examples[k][episode] for k in ("context", "truth", "prediction"))
    p, n = len(ctx), min(n_frames, len(truth))
    diff = frames.difference(truth[:n], pred[:n])
    rows = [("truth", list(ctx) + list(truth[:n]))]
    if "floor" in examples:
        rows.append(("floor", [None] * p + list(examples["floor"][episode][:n])))
    rows += [
        ("prediction", [None] * p + list(pred[:n])),
        ("|difference|", [None] * p + list(diff)),
    ]
    title = f"episode {int(examples['episode'][episode])}: precondition (orange) then open loop"
    frame_grid(rows, p, title, out, (0.9, 1.07), {"fontsize": 8}, mark_context=True, style=style)


def frame_grid(rows, p: int, title: str, out, cell, label_kw: dict, mark_context: bool, style):
    """A figure of labelled rows of frames (None: an empty cell), columns titled by the
    precondition (``ctx i``, the first ``p``) and the open-loop steps (``t+i``); ``cell`` is
    each frame's (width, height) in inches, ``mark_context`` frames the first row's context."""
    cols = len(rows[0][1])
    with plt.style.context(style or "default"):
        fig, axes = plt.subplots(
            len(rows), cols, figsize=(cell[0] * cols, cell[1] * len(rows)), squeeze=False
        )
        for r, (label, row_frames) in enumerate(rows):
            for c, frame in enumerate(row_frames):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                if frame is None:
                    ax.set_frame_on(False)
                else:
                    ax.imshow(frame, interpolation="nearest")
                if r == 0:
                    ax.set_title(f"t+{c - p + 1}" if c >= p else f"ctx {c + 1}", fontsize=7)
                if mark_context and c < p and r == 0:
                    for spine in ax.spines.values():
                        spine.set_edgecolor("tab:orange")
                        spine.set_linewidth(2)
            axes[r, 0].set_ylabel(label, **label_kw)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(out)
        plt.close(fig)


def samples_sheet(
    examples: dict, out: str | Path, posterior=None, k: int = 8, n_frames: int = 12, style=None
) -> None:
    """For the first test episode: the truth row (after its precondition), then ``k`` of the
    model's sampled futures and, given ``posterior`` (the floor's samples of the same episode,
    (K, T, H, W, C)), ``k`` futures drawn from the exact posterior: whether the samples spread
    as the truth can."""
    ctx, truth = examples["context"][0], examples["truth"][0]
    p, n = len(ctx), min(n_frames, len(truth))
    rows = [("truth", list(ctx) + list(truth[:n]))]
    rows += [
        (f"sample {j + 1}", [None] * p + list(f[:n])) for j, f in enumerate(examples["samples"][:k])
    ]
    if posterior is not None:
        rows += [
            (f"posterior {j + 1}", [None] * p + list(f[:n])) for j, f in enumerate(posterior[:k])
        ]
    title = f"episode {int(examples['episode'][0])}: sampled futures" + (
        " and the exact posterior's" if posterior is not None else ""
    )
    label_kw = {"fontsize": 7, "rotation": 0, "ha": "right", "va": "center"}
    frame_grid(rows, p, title, out, (0.75, 0.8), label_kw, mark_context=False, style=style)


def samples_gif(truth: np.ndarray, samples: np.ndarray, out: str | Path, fps: int = 10) -> None:
    """Animated truth | sample 1 | ... | sample k of (T, H, W, C) uint8 clips."""
    imageio.mimsave(out, list(frames.panels([truth, *samples])), duration=1000 / fps, loop=0)


def rollout_gif(truth: np.ndarray, pred: np.ndarray, out: str | Path, fps: int = 10) -> None:
    """Animated truth | prediction | |difference| of (T, H, W, C) uint8 frames."""
    imageio.mimsave(out, list(frames.side_by_side(truth, pred)), duration=1000 / fps, loop=0)


def training_curves(logs: pd.DataFrame, out: str | Path, style=None) -> None:
    """Train and validation loss against step; one panel per env, hue = model, band over seeds."""
    df = logs[logs["metric"] == "loss"].rename(columns={"split": "loss on"})
    lines_by_env(
        df, "step", "value", "loss on", "optimiser step", "loss (per pixel, as trained)", out, style
    )


def error_vs_compute(logs: pd.DataFrame, summary: pd.DataFrame, out: str | Path, style=None):
    """Open-loop MSE (mean over the horizons) on fixed validation episodes against the seconds
    spent training, per run: families compared along the whole curve, not at one budget. The
    floor (its mean over the same horizons, on the test episodes) is drawn where known."""
    val = logs[(logs["split"] == "val") & logs["metric"].isin(["open_loop_mse", "seconds"])]
    runs = val.pivot_table(
        index=["env", "model", "seed", "step"], columns="metric", values="value"
    ).reset_index()
    if "open_loop_mse" not in runs:
        runs = pd.DataFrame(columns=["env", "model", "seed", "seconds", "open_loop_mse"])
    s = summary[(summary["metric"] == "mse") & (summary["predictor"] == "model")]
    floors = s[s["floor"]].groupby(["env", "model"])["mean"].mean().groupby("env").min()

    def floor_line(g) -> None:
        g.set(xscale="log")  # budgets span orders of magnitude
        for env, ax in g.axes_dict.items():
            if env in floors:
                ax.axhline(floors[env], color="0.3", ls=":", lw=1)
                ax.text(0.98, floors[env], "floor", transform=ax.get_yaxis_transform(),
                        ha="right", va="bottom", fontsize=7, color="0.3")  # fmt: skip

    lines_by_env(
        runs.dropna(subset=["open_loop_mse"]),
        "seconds",
        "open_loop_mse",
        None,
        "training time (s, this machine)",
        "open-loop MSE per pixel, mean over horizons\n(validation episodes)",
        out,
        style,
        decorate=floor_line,
        units="seed",  # one line per run: seeds reach a step at different seconds
        estimator=None,
        errorbar=None,
    )


def params_vs_error(runs: pd.DataFrame, out: str | Path, style=None) -> None:
    """The thesis' sweep chart: parameter count against mean open-loop MSE, one point per run."""
    with plt.style.context(style or "default"):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        sns.scatterplot(data=runs, x="parameters", y="mse", hue="model", style="env", s=60, ax=ax)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel("open-loop MSE per pixel, mean over horizons")
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        fig.tight_layout()
        fig.savefig(out, bbox_inches="tight")
        plt.close(fig)


def asset_frames(model, context, actions, steps: int) -> dict[str, np.ndarray]:
    """Step an asset model; its sprites, warped sprites, composites and transforms per step."""
    import torch

    model.eval()
    with torch.no_grad():
        state, warped, preds, thetas = model.init_state(context), [], [], []
        for t in range(min(steps, actions.shape[1])):
            frame, state = model.step(state, actions[:, t])
            warped.append(state["warped"][0])
            preds.append(frame[0])
            thetas.append(state["theta"][0])

    return {
        "sprites": frames.uint8_frames(model.assets()),  # (K, H, W, C)
        "warped": frames.uint8_frames(torch.stack(warped)),  # (T, K, H, W, C)
        "prediction": frames.uint8_frames(torch.stack(preds)),  # (T, H, W, C)
        "theta": torch.stack(thetas).numpy(),  # (T, K, 2, 3)
    }


def asset_sheet(a: dict, truth: np.ndarray, out: str | Path, style=None) -> None:
    """The thesis' animate_asset_model as one image: learned sprites (left), then per step each
    warped sprite with its translation, their composite, the truth and |difference|."""
    k, t = a["warped"].shape[1], len(a["prediction"])
    diff = frames.difference(truth[:t], a["prediction"])
    rows = [(f"asset {i + 1}", a["sprites"][i], a["warped"][:, i]) for i in range(k)]
    rows += [
        ("composite", None, a["prediction"]),
        ("truth", None, truth[:t]),
        ("|difference|", None, diff),
    ]
    with plt.style.context(style or "default"):
        fig, axes = plt.subplots(
            len(rows), t + 1, figsize=(0.85 * (t + 1), 0.95 * len(rows)), squeeze=False
        )
        for r, (label, sprite, row_frames) in enumerate(rows):
            for c in range(t + 1):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                img = sprite if c == 0 else row_frames[c - 1]
                if img is None:
                    ax.set_frame_on(False)
                    continue
                ax.imshow(img, interpolation="nearest")
                if r < k and c > 0:
                    tx, ty = a["theta"][c - 1, r, :, 2]
                    ax.set_title(f"({tx:+.2f},{ty:+.2f})", fontsize=5, pad=1)
            axes[r, 0].set_ylabel(label, fontsize=7)
        axes[0, 0].set_title("learned", fontsize=7)
        for c in range(1, t + 1):
            axes[-1, c].set_xlabel(f"t+{c}", fontsize=7)
        fig.suptitle(
            "asset model: sprites, their per-step transforms (translation x, y) and composite",
            fontsize=8,
        )
        fig.tight_layout()
        fig.savefig(out)
        plt.close(fig)


def asset_gif(a: dict, truth: np.ndarray, out: str | Path, scale: int = 4, fps: int = 8) -> None:
    """Per step: each warped sprite | composite | truth | |difference|, side by side."""
    t = len(a["prediction"])
    diff = frames.difference(truth[:t], a["prediction"])
    gap = np.full((*truth.shape[1:2], 2, truth.shape[3]), frames.GAP, np.uint8)
    shown = []
    for i in range(t):
        parts = [*a["warped"][i], a["prediction"][i], truth[i], diff[i]]
        row = np.concatenate([x for p in parts for x in (p, gap)][:-1], axis=1)
        shown.append(frames.upscale(row, scale))
    imageio.mimsave(out, shown, duration=1000 / fps, loop=0)


def agents_scores(table: pd.DataFrame, out: str | Path, style=None) -> None:
    """Per env, every agent's normalised score (mean and 95% interval over seeds), best at the
    top; 0 is the random policy, 1 PPO trained in the real env."""
    envs = sorted(table["env"].unique())
    with plt.style.context(style or "default"):
        height = 0.9 + 0.32 * table.groupby("env").size().max()
        fig, axes = plt.subplots(1, len(envs), figsize=(5.2 * len(envs), height), squeeze=False)
        for ax, env in zip(axes[0], envs, strict=True):
            df = table[table["env"] == env].sort_values("normalised_mean")
            y = np.arange(len(df))
            colours = ["0.6" if r else "C0" for r in df["reference"]]
            err = np.nan_to_num(df["normalised_ci95"].to_numpy())
            ax.barh(y, df["normalised_mean"], xerr=err, color=colours, capsize=3)
            ax.set_yticks(y, [a.removeprefix("reference-") for a in df["agent"]])
            for x in (0, 1):
                ax.axvline(x, color="0.3", ls=":", lw=1)
            ax.set(title=f"{env}: agents trained in each model", xlabel="normalised real-env score")
        fig.tight_layout()
        fig.savefig(out, dpi=120)
        plt.close(fig)
