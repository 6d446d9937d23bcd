"""The built-in Pong's floor: the posterior over the hidden start heading, replayed with the
env's own rules (:class:`~forward_models.envs.pong.PongRules`) for thousands of headings at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forward_models.envs.pong import PongRules, TwoPlayerPong, decode_actions, flatten_pairs
from forward_models.floor.common import FloorError, box_sums

TWO_PI = 2.0 * math.pi

# Default resolution (see pong_floor): a coarse pass over the whole circle locates the headings
# consistent with the context, then each episode gets its own fine grid over that region (~4k
# of its ~8k fine headings stay consistent at P = 3). Checked on the default test split (its
# 94 / 87 episodes at P = 3 / 6, h = 1..32) against 8x finer fine and 4x finer coarse grids:
# the mean floor MSE moves by < 2e-7 (relative < 3e-5), no episode's MSE at any step by more
# than 6e-6.
COARSE_HEADINGS = 16_384
FINE_HEADINGS = 4_096


@dataclass
class PongPosterior:
    """Per episode: the candidate headings kept, and how many were tried.

    ``headings[i]`` holds the headings (radians) whose replay reproduces episode i's context
    (and, when conditioning on survival, does not terminate before the last predicted frame);
    every kept heading has equal weight (they are in grid order: a set that wraps around 0
    is not sorted). ``consistent[i]`` counts the headings that reproduce the context before
    the survival condition. ``spacing[i]`` is the grid step they were drawn at
    (0 for headings given by the caller). ``fallback[i]`` is True where no consistent heading
    survived and the frozen (unconditioned) posterior was used instead.
    """

    headings: list[np.ndarray]
    spacing: np.ndarray
    consistent: np.ndarray
    fallback: np.ndarray


def pong_floor(
    context: np.ndarray,
    actions: np.ndarray,
    horizon: int,
    *,
    headings: np.ndarray | None = None,
    n_headings: int = FINE_HEADINGS,
    coarse_headings: int = COARSE_HEADINGS,
    condition_on_survival: bool = True,
    return_posterior: bool = False,
    max_candidates: int = 262_144,
    **env_kwargs,
):
    """Posterior-mean frames of TwoPlayerPong episodes: the MSE floor of open-loop prediction.

    Args:
        context: uint8 ``(E, P, H, W, 3)``, the first ``P >= 1`` frames of ``E`` episodes, each
            from the episode's reset (see :mod:`forward_models.floor` for other windows).
        actions: int ``(E, >= P - 1 + horizon)``: ``a[0..P-2+horizon]`` as stored (flat
            ``Discrete(9)`` indices; ``(E, T, 2)`` ``MultiDiscrete`` pairs are flattened). Extra
            trailing columns are ignored.
        horizon: frames to predict, ``o[P..P-1+horizon]``.
        headings: optional candidate headings replacing the prior (a fixed ``heading`` env
            kwarg takes precedence): ``(E,)`` is an oracle (the true heading of each episode:
            the prediction is then the env's own frames, and a heading that does not reproduce
            the context raises :class:`FloorError`); ``(E, K)`` is a uniform prior over K
            headings per episode (e.g. a coarser grid), still restricted to those consistent
            with the context.
        n_headings: fine headings per episode, spread evenly over the region the coarse pass
            found consistent with the context.
        coarse_headings: headings of the coarse pass, evenly spaced on [0, 2pi). A consistent
            set narrower than its spacing (``2pi / coarse_headings``) that holds no coarse
            heading would be missed; every consistent interval that holds one is covered whole.
        condition_on_survival: drop headings under which the env terminates before the last
            predicted frame (the evaluated episodes are at least ``P + horizon`` rows long);
            if False, such a heading's ball stays where the env leaves it at termination.
        return_posterior: also return a :class:`PongPosterior`.
        max_candidates: replay at most this many (episode, heading) pairs at once (memory).
        env_kwargs: the env's own keyword arguments
            (:class:`~forward_models.envs.pong.TwoPlayerPong`: its geometry, ``heading``,
            ``multidiscrete``); a fixed ``heading`` makes the prior a point mass, so the floor
            is the exact replay.

    Returns:
        float32 ``(E, horizon, H, W, 3)`` in [0, 1]: for each pixel, the posterior probability
        that it is white (ball or paddle), i.e. the average of the replayed frames.

    Method: the first frame carries no information about the heading (the ball starts at the
    centre), the paddles depend on the actions only, and the ball's path on the heading and the
    paddles. Each candidate heading is replayed with the env's rules (the same float64
    operations in the same order, ``math.cos``/``math.sin`` for the velocity, round-half-even
    for the rendered positions); a heading is consistent when every context frame it renders
    equals the observed one (compared as frames, so a ball half hidden by a paddle is handled).
    The posterior is uniform over the consistent headings of an even grid, a Riemann sum of the
    exact posterior (a union of heading intervals); the average frame is a box filter of the
    histogram of rendered ball corners, plus the paddles.
    """
    env = TwoPlayerPong(**env_kwargs)  # the env's own defaults and checks
    g, heading = env.rules, env.fixed_heading
    if not 0 < g.speed < g.span:
        raise ValueError(f"the floor replays speeds in (0, {g.span}), got {g.speed}")
    context = np.asarray(context)
    if context.ndim != 5 or context.shape[2:] != (g.size, g.size, 3):
        raise ValueError(
            f"context must be (E, P, {g.size}, {g.size}, 3) frames, got shape {context.shape}"
        )
    e, p = context.shape[:2]
    if p < 1 or horizon < 1:
        raise ValueError(f"need a precondition P >= 1 and horizon >= 1, got {p} and {horizon}")
    steps = p - 1 + horizon
    moves = _pong_moves(actions, e, steps, multidiscrete=env.action_space.shape == (2,))
    paddles = _paddle_tracks(g, moves)  # (E, steps + 1, 2), float64 as the env holds them
    pmask = g.paddle_mask(paddles)  # (E, steps + 1, S, S) bool
    valid = _valid_positions(g, context, pmask[:, :p])  # (E, P, K, K) [by, bx]
    centre = int(g.pixel(g.ball_start))
    bad = np.flatnonzero(~valid[:, 0, centre, centre])
    if len(bad):
        raise FloorError(
            f"context frame 0 of episode(s) {bad[:8].tolist()} is not TwoPlayerPong's reset frame "
            f"(size={g.size}, paddles {g.paddle_width}x{g.paddle_height}, ball {g.ball_size}): "
            f"the floor is defined for windows that start at an episode's start"
        )

    fixed = heading is not None
    if fixed or headings is not None:
        if fixed:
            cand = np.full((e, 1), float(heading))
        else:
            cand = np.asarray(headings, dtype=np.float64)
            cand = cand[:, None] if cand.ndim == 1 else cand
            if cand.shape[0] != e or cand.ndim != 2:
                raise ValueError(f"headings must be (E,) or (E, K) with E={e}, got {cand.shape}")
        ep = np.repeat(np.arange(e), cand.shape[1])
        theta, spacing = cand.reshape(-1), np.zeros(e)
        strict, exact = fixed or cand.shape[1] == 1, True
    else:
        ep, theta, spacing = _fine_grid(
            g, valid, paddles, n_headings, coarse_headings, max_candidates
        )
        strict = exact = False

    hist, post = _replay(
        g, valid, paddles, ep, theta, horizon, condition_on_survival, max_candidates, exact
    )
    post.spacing = spacing
    empty = np.flatnonzero(post.consistent == 0)
    if len(empty):
        what = "the given heading does not" if strict else "no candidate heading"
        raise FloorError(
            f"episode(s) {empty[:8].tolist()}: {what} reproduce the context frames: not an "
            f"episode-start window, other env settings, or actions misaligned with the frames"
            + ("" if strict else f" (or a consistent set narrower than 2pi/{coarse_headings})")
        )
    frames = _render_mean(g, hist, pmask[:, p:])
    out = np.repeat(frames[..., None], 3, axis=-1)
    return (out, post) if return_posterior else out


def _pong_moves(actions, e: int, steps: int, multidiscrete: bool) -> np.ndarray:
    """(E, steps, 2) paddle moves (left, right) in {-1, 0, 1} from flat or paired actions."""
    a = np.asarray(actions)
    if a.ndim == 3 and a.shape[-1] == 2:  # MultiDiscrete (right + 1, left + 1)
        a = flatten_pairs(a)
    elif multidiscrete and a.ndim != 2:
        raise ValueError(f"MultiDiscrete actions must be (E, T, 2), got {a.shape}")
    if a.ndim != 2 or a.shape[0] != e or a.shape[1] < steps:
        raise ValueError(
            f"actions must be (E={e}, >= P - 1 + horizon = {steps}) flat Discrete(9) indices, "
            f"got shape {a.shape}"
        )
    a = a[:, :steps].astype(np.int64)
    if a.size and (a.min() < 0 or a.max() > 8):
        raise ValueError("Pong actions are Discrete(9) indices in [0, 8]")
    return decode_actions(a)


def _paddle_tracks(g: PongRules, moves: np.ndarray) -> np.ndarray:
    """Paddle top edges (left, right) at every frame, with the env's float arithmetic."""
    e, steps, _ = moves.shape
    out = np.empty((e, steps + 1, 2))
    cur = np.full((e, 2), g.paddle_start)  # the env's reset
    out[:, 0] = cur
    for t in range(steps):
        cur = g.move_paddles(cur, moves[:, t])
        out[:, t + 1] = cur
    return out


def _valid_positions(g: PongRules, frames: np.ndarray, pmask: np.ndarray) -> np.ndarray:
    """For each frame, which rounded ball corners (by, bx) render it exactly: (E, T, K, K).

    A frame is paddles | ball square, all white on black. Corner c fits when the square lies
    inside the white pixels, holds every white pixel the paddles do not cover, and the paddles
    are themselves white (else nothing fits).
    """
    f = frames.astype(np.int16)
    clean = ((f == 0) | (f == 255)).all(-1) & (f == f[..., :1]).all(-1)  # (E, T, S, S)
    white = f[..., 0] == 255
    ok = clean.all((-1, -2)) & ~(pmask & ~white).any((-1, -2))  # (E, T)
    rest = white & ~pmask
    out_sum = box_sums(~white, g.ball_size)  # (E, T, K, K) black pixels under the square
    rest_sum = box_sums(rest, g.ball_size)
    need = rest.sum((-1, -2))[..., None, None]
    return (out_sum == 0) & (rest_sum == need) & ok[..., None, None]


class _Balls:
    """Many balls, one per (episode ``ep``, heading) candidate, stepped with the env's rules.

    ``faced`` records whether any ball has yet reached a paddle's face: until then no ball's
    path depends on the paddles, hence on the episode.
    """

    def __init__(self, g: PongRules, ep: np.ndarray, theta: np.ndarray, exact: bool):
        self.g, self.ep = g, ep
        self.x = np.full(len(ep), g.ball_start)
        self.y = np.full(len(ep), g.ball_start)
        self.vx, self.vy = g.velocity(theta, exact) if len(ep) else (np.zeros(0), np.zeros(0))
        self.done = np.zeros(len(ep), bool)
        self.faced = False

    def take(self, keep: np.ndarray) -> None:
        self.ep, self.x, self.y = self.ep[keep], self.x[keep], self.y[keep]
        self.vx, self.vy, self.done = self.vx[keep], self.vy[keep], self.done[keep]

    def step(self, paddles_t: np.ndarray) -> None:
        """Advance live balls one step (paddles_t: (E, 2), after this step's paddle move).
        A terminated ball stays where the env leaves it (clamped at the side wall)."""
        x, y, vx, vy, ended, faced = self.g.move_balls(
            self.x, self.y, self.vx, self.vy, paddles_t, self.ep
        )
        live = ~self.done
        self.faced |= faced
        self.done = self.done | (live & ended)
        if live.all():
            self.x, self.y, self.vx, self.vy = x, y, vx, vy
        else:
            self.x = np.where(live, x, self.x)
            self.y = np.where(live, y, self.y)
            self.vx = np.where(live, vx, self.vx)
            self.vy = np.where(live, vy, self.vy)

    def corners(self) -> tuple[np.ndarray, np.ndarray]:
        """Rendered (by, bx), as the env draws them."""
        by, bx = self.g.pixel(self.y), self.g.pixel(self.x)
        if by.size and (min(by.min(), bx.min()) < 0 or max(by.max(), bx.max()) > self.g.span):
            raise AssertionError("ball left the board: the replay disagrees with the env")
        return by, bx


def _context_pass(g, valid, paddles, ep, theta, exact):
    """Replays the context: the balls after it, and which (episode, heading) candidates
    reproduce every context frame and are still live at the last one (a frame after a
    termination would not exist)."""
    balls = _Balls(g, ep, theta, exact)
    ok = np.ones(len(ep), bool)
    for t in range(1, valid.shape[1]):
        ended_before = balls.done.copy()
        balls.step(paddles[:, t])
        by, bx = balls.corners()
        ok &= valid[ep, t, by, bx] & ~ended_before
    return balls, ok


def _coarse_pass(g, valid, paddles, grid, max_candidates):
    """(E, len(grid)): which grid headings reproduce each episode's context."""
    e, p = valid.shape[:2]
    # Shortcut: while no ball has reached a paddle's face, paths do not depend on the episode:
    # replay the grid once and look every episode's frames up.
    balls = _Balls(g, np.zeros(len(grid), np.intp), grid, exact=False)
    seen = []
    for t in range(1, p):
        balls.step(paddles[:, t])
        seen.append(balls.corners())
    if not balls.faced:
        ok = np.ones((e, len(grid)), bool)
        for t, (by, bx) in enumerate(seen, start=1):
            ok &= valid[:, t, by, bx]
        return ok
    ok = np.empty((e, len(grid)), bool)
    per = max(1, max_candidates // len(grid))
    for lo in range(0, e, per):
        hi = min(e, lo + per)
        ep = np.repeat(np.arange(lo, hi), len(grid))
        ok[lo:hi] = _context_pass(g, valid, paddles, ep, np.tile(grid, hi - lo), False)[1].reshape(
            hi - lo, len(grid)
        )
    return ok


def _fine_grid(g, valid, paddles, n_fine: int, n_coarse: int, max_candidates: int):
    """Per episode, ``~n_fine`` evenly spaced headings covering its consistent region."""
    e, p = valid.shape[:2]
    step = TWO_PI / n_coarse
    grid = (np.arange(n_coarse) + 0.5) * step
    if p == 1:  # the reset frame says nothing: the whole circle
        near = np.ones((e, n_coarse), bool)
    else:
        ok = _coarse_pass(g, valid, paddles, grid, max_candidates)
        # A consistent interval holding coarse heading i starts and ends within the cells
        # [i - 1, i + 1] around its first and last coarse headings: mark those.
        near = ok | np.roll(ok, 1, axis=1) | np.roll(ok, -1, axis=1)
    eps, thetas, spacing = [], [], np.zeros(e)
    for i, row in enumerate(near):
        c = np.flatnonzero(row)
        if len(c) == 0:  # nothing consistent; reported by the caller
            continue
        m = -(-n_fine // len(c))
        sub = (np.arange(m) + 0.5) / m
        thetas.append(((c[:, None] + sub[None, :]) * step).reshape(-1))
        eps.append(np.full(len(c) * m, i))
        spacing[i] = step / m
    if not eps:
        return np.zeros(0, np.intp), np.zeros(0), spacing
    return np.concatenate(eps), np.concatenate(thetas), spacing


def _replay(g, valid, paddles, ep, theta, horizon, survival, max_candidates, exact):
    """Histogram of the rendered ball corners of the kept candidates, (E, horizon, K, K),
    normalised per episode, and the posterior summary."""
    e, p = valid.shape[:2]
    k = g.span + 1  # rounded corner positions per axis
    hist = np.zeros((e, horizon, k * k))
    kept_theta: list[np.ndarray] = [np.zeros(0)] * e
    consistent = np.zeros(e, np.int64)
    fallback = np.zeros(e, bool)
    if len(ep) and np.any(np.diff(ep) < 0):
        raise AssertionError("candidates must be grouped by episode")
    # Chunks of whole episodes: an episode's fallback needs all its candidates at once.
    bounds = np.searchsorted(ep, np.arange(e + 1))
    lo = 0
    while lo < e:
        hi = lo + 1
        while hi < e and bounds[hi + 1] - bounds[lo] <= max_candidates:
            hi += 1
        sl = slice(bounds[lo], bounds[hi])
        balls, ok = _context_pass(g, valid, paddles, ep[sl], theta[sl], exact)
        balls.take(ok)
        c_ep, c_theta = balls.ep, theta[sl][ok]
        pos = np.empty((horizon, len(c_ep)), np.intp)
        early = np.zeros(len(c_ep), bool)  # terminated before the last predicted frame
        for h in range(horizon):
            early |= balls.done
            balls.step(paddles[:, p + h])
            by, bx = balls.corners()
            pos[h] = by * k + bx
        local = c_ep - lo
        n_all = np.bincount(local, minlength=hi - lo)
        keep = ~early if survival else np.ones(len(c_ep), bool)
        n_keep = np.bincount(local[keep], minlength=hi - lo)
        lost = (n_keep == 0) & (n_all > 0)  # every consistent heading ends early: freeze them
        keep |= lost[local]
        local = local[keep]
        w_ep = np.bincount(local, minlength=hi - lo)
        idx = (local[None, :] * horizon + np.arange(horizon)[:, None]) * (k * k) + pos[:, keep]
        counts = np.bincount(idx.reshape(-1), minlength=(hi - lo) * horizon * k * k)
        counts = counts.reshape(hi - lo, horizon, k * k)
        hist[lo:hi] = counts / np.maximum(w_ep, 1)[:, None, None]
        consistent[lo:hi], fallback[lo:hi] = n_all, lost
        kept_theta[lo:hi] = np.split(c_theta[keep], np.cumsum(w_ep)[:-1])
        lo = hi
    post = PongPosterior(kept_theta, np.zeros(e), consistent, fallback)
    return hist.reshape(e, horizon, k, k), post


def _render_mean(g: PongRules, hist: np.ndarray, pmask: np.ndarray) -> np.ndarray:
    """Average frame: paddles white, elsewhere the chance the ball square covers the pixel."""
    s, b, k = g.size, g.ball_size, g.span + 1
    padded = np.zeros((*hist.shape[:2], s + b - 1, s + b - 1))
    padded[..., b - 1 : b - 1 + k, b - 1 : b - 1 + k] = hist  # corner (by, bx) at +b-1
    cover = box_sums(padded, b)  # pixel r covered by corners r-b+1..r
    return np.where(pmask, 1.0, np.clip(cover, 0.0, 1.0)).astype(np.float32)


def pong_floor_samples(
    context: np.ndarray,
    actions: np.ndarray,
    horizon: int,
    k: int,
    rng: np.random.Generator,
    *,
    n_headings: int = FINE_HEADINGS,
    **env_kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """The posterior mean (as :func:`pong_floor`) and ``k`` futures drawn from the posterior
    itself, float32 ``(E, k, horizon, H, W, 3)``: per episode, ``k`` headings drawn uniformly
    (with replacement) from those the floor keeps, each replayed exactly by the env's rules.

    Energy scores of these samples are the "ES floor"; their spread is the calibrated spread
    a model's is compared with."""
    mean, post = pong_floor(
        context, actions, horizon, n_headings=n_headings, return_posterior=True, **env_kwargs
    )
    if env_kwargs.get("heading") is not None:  # a fixed heading: the posterior is one point
        return mean, np.repeat(mean[:, None], k, axis=1)
    drawn = np.stack([rng.choice(h, size=k, replace=True) for h in post.headings])  # (E, k)
    # One replay of all E x k (episode, heading) pairs, each an oracle heading of its episode.
    rep = np.repeat(np.arange(len(drawn)), k)
    samples = pong_floor(
        np.asarray(context)[rep], np.asarray(actions)[rep], horizon, headings=drawn.reshape(-1),
        **env_kwargs,
    )  # fmt: skip
    return mean, samples.reshape(len(drawn), k, *samples.shape[1:])
