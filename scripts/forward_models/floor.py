"""The floor: the MSE-optimal open-loop prediction, for the built-in envs whose dynamics are known.

Open-loop evaluation (:mod:`forward_models.evaluation`) shows a model the first ``P`` frames of
an episode and the actions, and scores its next ``horizon`` frames by per-pixel MSE. Where part
of the env's state is hidden from those frames, no predictor can be exact; the best any can do,
in expectation, is the posterior-mean frame given what it was shown. That prediction and its
error are computed here, exactly up to a documented numerical resolution, by replaying the env.

Conventions (those of :func:`forward_models.models.base.split_window`): a window holds frames
``o[0..L-1]`` and actions ``a[0..L-1]``, where ``a[t]`` is taken at ``o[t]`` and leads to
``o[t+1]``. The floor is given the context ``o[0..P-1]`` and the actions ``a[0..P-2+horizon]``
and returns its predictions of ``o[P..P-1+horizon]`` (models see only ``a[P-1..]``; the floor
may use the earlier actions too, since it replays from the reset: with rounding to pixels the
paddles' sub-pixel positions cannot be read from frames alone).

What the floor conditions on, and what it does not:

* The context frames (exactly, pixel for pixel) and the fact that the episode lasted long enough
  to be evaluated: by default a candidate hidden state under which the env would have terminated
  before the last predicted frame is dropped (``condition_on_survival``), because evaluation only
  uses episodes with at least ``P + horizon`` rows. That makes it the Bayes predictor on exactly
  the evaluated episodes, so no predictor of the frames from (context, actions) beats it in
  expectation there. With ``condition_on_survival=False`` a candidate that terminates is instead
  frozen as the env leaves it (the ball clamped at the side wall, where the env stops it; the
  paddles, which do not depend on the hidden state, keep following the actions).
* The actions are treated as exogenous: their likelihood is not used. The rollout agents react
  to the ball (``PongAgent`` tracks it), so the actions themselves carry a little information
  about the hidden heading that a model could in principle exploit; the floor ignores it.
* Windows must start at an episode's start: after the reset the only hidden quantity is the
  heading (Pong) or nothing (CubeCrash). A window starting mid-episode also hides the ball's
  sub-pixel position and velocity and the paddles' sub-pixel positions, which the posterior here
  does not model. The reset frame is recognisable, so such windows raise :class:`FloorError`
  (unless they happen to show exactly the reset frame, and the replay then reproduces their
  context, in which case the floor is the floor of that replayed episode).

This module needs numpy only (gymnasium and Pillow for :func:`cube_crash_floor` and the
dispatch helpers, imported when used); it never imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

PONG_ENTRY = "forward_models.envs.pong:TwoPlayerPong"
CUBE_CRASH_ENTRY = "forward_models.envs.cube_crash:CubeCrash"
TWO_PI = 2.0 * math.pi

# Default resolution for Pong (see pong_floor): a coarse pass over the whole circle locates the
# headings consistent with the context, then each episode gets its own fine grid over that
# region (~4k of its ~8k fine headings stay consistent at P = 3). Checked on the default test
# split (its 94 / 87 episodes at P = 3 / 6, h = 1..32) against 8x finer fine and 4x finer
# coarse grids: the mean floor MSE moves by < 2e-7 (relative < 3e-5), no episode's MSE at
# any step by more than 6e-6.
COARSE_HEADINGS = 16_384
FINE_HEADINGS = 4_096


class FloorError(ValueError):
    """The context cannot come from the env's reset: not an episode-start window, other env
    settings than those given, or actions misaligned with the frames."""


# --------------------------------------------------------------------------------------------
# Pong
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Pong:
    """Geometry of a TwoPlayerPong board (the env's own names and arithmetic)."""

    size: int
    pw: int
    ph: int
    bs: int
    speed: float

    @property
    def span(self) -> int:  # largest ball corner coordinate; also the rounded positions' range
        return self.size - self.bs

    @property
    def k(self) -> int:  # rounded ball corner positions per axis
        return self.size - self.bs + 1


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
    size: int = 32,
    paddle_width: int = 5,
    paddle_height: int = 15,
    ball_size: int = 4,
    speed: float = 1.0,
    heading: float | None = None,
    render_mode: str | None = "rgb_array",
    multidiscrete: bool = False,
    headings: np.ndarray | None = None,
    n_headings: int = FINE_HEADINGS,
    coarse_headings: int = COARSE_HEADINGS,
    condition_on_survival: bool = True,
    return_posterior: bool = False,
    max_candidates: int = 262_144,
):
    """Posterior-mean frames of TwoPlayerPong episodes: the MSE floor of open-loop prediction.

    Args:
        context: uint8 ``(E, P, H, W, 3)``, the first ``P >= 1`` frames of ``E`` episodes, each
            from the episode's reset (see the module docstring for other windows).
        actions: int ``(E, >= P - 1 + horizon)``: ``a[0..P-2+horizon]`` as stored (flat
            ``Discrete(9)`` indices; ``(E, T, 2)`` ``MultiDiscrete`` pairs are flattened). Extra
            trailing columns are ignored.
        horizon: frames to predict, ``o[P..P-1+horizon]``.
        size, paddle_width, paddle_height, ball_size, speed, heading, render_mode, multidiscrete:
            the env's own keyword arguments (:class:`~forward_models.envs.pong.TwoPlayerPong`).
            A fixed ``heading`` makes the prior a point mass, so the floor is the exact replay.
        headings: optional candidate headings replacing the prior (a fixed ``heading`` takes
            precedence): ``(E,)`` is an oracle (the
            true heading of each episode: the prediction is then the env's own frames, and a
            heading that does not reproduce the context raises :class:`FloorError`); ``(E, K)``
            is a uniform prior over K headings per episode (e.g. a coarser grid), still
            restricted to those consistent with the context.
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

    Returns:
        float32 ``(E, horizon, H, W, 3)`` in [0, 1]: for each pixel, the posterior probability
        that it is white (ball or paddle), i.e. the average of the replayed frames.

    Method: the first frame carries no information about the heading (the ball starts at the
    centre), the paddles depend on the actions only, and the ball's path on the heading and the
    paddles. Each candidate heading is replayed with the env's arithmetic (same float64
    operations in the same order, ``math.cos``/``math.sin`` for the velocity, round-half-even
    for the rendered positions); a heading is consistent when every context frame it renders
    equals the observed one (compared as frames, so a ball half hidden by a paddle is handled).
    The posterior is uniform over the consistent headings of an even grid, a Riemann sum of the
    exact posterior (a union of heading intervals); the average frame is a box filter of the
    histogram of rendered ball corners, plus the paddles.
    """
    g = _Pong(int(size), int(paddle_width), int(paddle_height), int(ball_size), float(speed))
    _check_pong(g, render_mode)
    context = np.asarray(context)
    if context.ndim != 5 or context.shape[2:] != (g.size, g.size, 3):
        raise ValueError(
            f"context must be (E, P, {g.size}, {g.size}, 3) frames, got shape {context.shape}"
        )
    e, p = context.shape[:2]
    if p < 1 or horizon < 1:
        raise ValueError(f"need a precondition P >= 1 and horizon >= 1, got {p} and {horizon}")
    steps = p - 1 + horizon
    moves = _pong_moves(actions, e, steps, multidiscrete)
    paddles = _paddle_tracks(g, moves)  # (E, steps + 1, 2), float64 as the env holds them
    pmask = _paddle_masks(g, paddles)  # (E, steps + 1, S, S) bool
    valid = _valid_positions(g, context, pmask[:, :p])  # (E, P, K, K) [by, bx]
    centre = int(round((g.size - g.bs) / 2))
    bad = np.flatnonzero(~valid[:, 0, centre, centre])
    if len(bad):
        raise FloorError(
            f"context frame 0 of episode(s) {bad[:8].tolist()} is not TwoPlayerPong's reset frame "
            f"(size={g.size}, paddles {g.pw}x{g.ph}, ball {g.bs}): the floor is defined for "
            f"windows that start at an episode's start"
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


def _check_pong(g: _Pong, render_mode) -> None:
    if g.size < max(2 * g.pw + 2 * g.bs, g.ph + 1):
        raise ValueError(
            f"Pong size={g.size} is too small for paddles {g.pw}x{g.ph} and a {g.bs}px ball"
        )
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode={render_mode!r}: TwoPlayerPong renders 'rgb_array' only")
    if not 0 < g.speed < g.span:
        raise ValueError(f"the floor replays speeds in (0, {g.span}), got {g.speed}")


def _pong_moves(actions, e: int, steps: int, multidiscrete: bool) -> np.ndarray:
    """(E, steps, 2) paddle moves (left, right) in {-1, 0, 1} from flat or paired actions."""
    a = np.asarray(actions)
    if a.ndim == 3 and a.shape[-1] == 2:  # MultiDiscrete (right + 1, left + 1)
        a = a[..., 0] * 3 + a[..., 1]
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
    return np.stack([a % 3 - 1, a // 3 - 1], axis=-1)


def _paddle_tracks(g: _Pong, moves: np.ndarray) -> np.ndarray:
    """Paddle top edges (left, right) at every frame, with the env's float arithmetic."""
    e, steps, _ = moves.shape
    out = np.empty((e, steps + 1, 2))
    cur = np.full((e, 2), float((g.size - g.ph) // 2))  # the env's reset
    out[:, 0] = cur
    lim = g.size - g.ph
    for t in range(steps):
        cur = np.clip(cur + g.speed * moves[:, t], 0, lim)
        out[:, t + 1] = cur
    return out


def _paddle_masks(g: _Pong, paddles: np.ndarray) -> np.ndarray:
    """Pixels the paddles cover, (E, T, S, S) bool."""
    s = g.size
    top = np.rint(paddles).astype(np.int64)  # round half to even, as Python's round()
    rows = np.arange(s)
    on_l = (rows >= top[..., 0:1]) & (rows < top[..., 0:1] + g.ph)  # (E, T, S)
    on_r = (rows >= top[..., 1:2]) & (rows < top[..., 1:2] + g.ph)
    cols = np.arange(s)
    mask = on_l[..., None] & (cols < g.pw)
    return mask | (on_r[..., None] & (cols >= s - g.pw))


def _valid_positions(g: _Pong, frames: np.ndarray, pmask: np.ndarray) -> np.ndarray:
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
    out_sum = _box_sums(~white, g.bs)  # (E, T, K, K) black pixels under the square
    rest_sum = _box_sums(rest, g.bs)
    need = rest.sum((-1, -2))[..., None, None]
    return (out_sum == 0) & (rest_sum == need) & ok[..., None, None]


def _box_sums(mask: np.ndarray, b: int) -> np.ndarray:
    """Sums over every b x b square of the last two axes (corners in [0, S - b])."""
    ii = np.zeros((*mask.shape[:-2], mask.shape[-2] + 1, mask.shape[-1] + 1), np.int32)
    ii[..., 1:, 1:] = mask.astype(np.int32).cumsum(-2).cumsum(-1)
    return ii[..., b:, b:] - ii[..., :-b, b:] - ii[..., b:, :-b] + ii[..., :-b, :-b]


def _velocity(g: _Pong, theta: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """The env's ``speed * np.array([math.cos(h), math.sin(h)])``: bit for bit with ``exact``
    (``math`` per heading: for headings the caller gives), else with numpy's vectorised cos/sin,
    faster, and possibly a last bit off libm's on some CPUs: harmless for the internal grids,
    whose headings only sample the prior."""
    theta = np.asarray(theta, np.float64)
    if not exact:
        return g.speed * np.cos(theta), g.speed * np.sin(theta)
    n, values = len(theta), theta.tolist()
    cos = np.fromiter(map(math.cos, values), np.float64, count=n)
    sin = np.fromiter(map(math.sin, values), np.float64, count=n)
    return g.speed * cos, g.speed * sin


class _Balls:
    """Many balls stepped at once with TwoPlayerPong.step's arithmetic (branches -> masks).

    ``faced`` records whether any ball has yet reached a paddle's face: until then no ball's
    path depends on the paddles, hence on the episode.
    """

    def __init__(self, g: _Pong, ep: np.ndarray, theta: np.ndarray, exact: bool):
        self.g, self.ep = g, ep
        centre = (g.size - g.bs) / 2
        self.x = np.full(len(ep), centre)
        self.y = np.full(len(ep), centre)
        self.vx, self.vy = _velocity(g, theta, exact)
        self.done = np.zeros(len(ep), bool)
        self.faced = False

    def take(self, keep: np.ndarray) -> None:
        self.ep, self.x, self.y = self.ep[keep], self.x[keep], self.y[keep]
        self.vx, self.vy, self.done = self.vx[keep], self.vy[keep], self.done[keep]

    def step(self, paddles_t: np.ndarray) -> None:
        """Advance live balls one step (paddles_t: (E, 2), after this step's paddle move).
        A terminated ball stays where the env leaves it (clamped at the side wall)."""
        g = self.g
        x, y, vx, vy = self.x + self.vx, self.y + self.vy, self.vx, self.vy
        lo, hi = y < 0, y > g.span  # top/bottom walls reflect
        y = np.where(lo, -y, np.where(hi, 2 * g.span - y, y))
        vy = np.where(lo | hi, -vy, vy)
        at_l = (x < g.pw) & (vx < 0)  # at the left paddle's face
        at_r = (x > g.size - g.pw - g.bs) & (vx > 0)
        live = ~self.done
        if (live & (at_l | at_r)).any():
            self.faced = True
            pl, pr = paddles_t[self.ep, 0], paddles_t[self.ep, 1]
            touch_l = (y + g.bs > pl) & (y < pl + g.ph)
            touch_r = (y + g.bs > pr) & (y < pr + g.ph)
            hit_l, hit_r = at_l & touch_l, at_r & touch_r
            end_l, end_r = at_l & ~touch_l & (x <= 0), at_r & ~touch_r & (x >= g.span)
            x = np.where(hit_l, 2 * g.pw - x, x)
            x = np.where(hit_r, 2 * (g.size - g.pw - g.bs) - x, x)
            x = np.where(end_l, 0.0, np.where(end_r, float(g.span), x))
            vx = np.where(hit_l | hit_r, -vx, vx)
            self.done = self.done | (live & (end_l | end_r))
        if live.all():
            self.x, self.y, self.vx, self.vy = x, y, vx, vy
        else:
            self.x = np.where(live, x, self.x)
            self.y = np.where(live, y, self.y)
            self.vx = np.where(live, vx, self.vx)
            self.vy = np.where(live, vy, self.vy)

    def corners(self) -> tuple[np.ndarray, np.ndarray]:
        """Rendered (by, bx): Python's round() of the float corner, i.e. half to even."""
        by, bx = np.rint(self.y).astype(np.intp), np.rint(self.x).astype(np.intp)
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
    k = g.k
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


def _render_mean(g: _Pong, hist: np.ndarray, pmask: np.ndarray) -> np.ndarray:
    """Average frame: paddles white, elsewhere the chance the ball square covers the pixel."""
    s, b = g.size, g.bs
    padded = np.zeros((*hist.shape[:2], s + b - 1, s + b - 1))
    padded[..., b - 1 : b - 1 + g.k, b - 1 : b - 1 + g.k] = hist  # corner (by, bx) at +b-1
    cover = _box_sums_f(padded, b)  # pixel r covered by corners r-b+1..r
    return np.where(pmask, 1.0, np.clip(cover, 0.0, 1.0)).astype(np.float32)


def _box_sums_f(a: np.ndarray, b: int) -> np.ndarray:
    ii = np.zeros((*a.shape[:-2], a.shape[-2] + 1, a.shape[-1] + 1))
    ii[..., 1:, 1:] = a.cumsum(-2).cumsum(-1)
    return ii[..., b:, b:] - ii[..., :-b, b:] - ii[..., b:, :-b] + ii[..., :-b, :-b]


# --------------------------------------------------------------------------------------------
# CubeCrash
# --------------------------------------------------------------------------------------------
def cube_crash_floor(
    context: np.ndarray,
    actions: np.ndarray,
    horizon: int,
    size: int | None = None,
    hole_width: int = 8,
    shaped: bool = True,
    render_mode: str | None = "rgb_array",
    condition_on_survival: bool = True,
):
    """Posterior-mean frames of CubeCrash episodes (as made by :func:`forward_models.envs.make`,
    i.e. rendered 40x32 and box-resized to ``size`` x ``size``).

    The reset draws the cube's column and row and the hole's position, and the first frame
    shows all three; the dynamics are deterministic given the actions. The posterior over reset
    states is uniform over those whose replay reproduces every context frame, so the floor is
    the exact replay, error 0, as long as the (resized) reset frames of different states differ;
    they do at the sizes checked (16, 32, 64 with the default hole). Should two states ever
    render the same context, their replays are averaged. ``condition_on_survival`` is as for
    :func:`pong_floor` (a terminated candidate otherwise stays on its last frame).

    Args and return as :func:`pong_floor` (actions: ``Discrete(3)`` indices); ``size``
    defaults to the context's frame size. Raises :class:`FloorError` for a context that no
    reset reproduces (windows must start at an episode's start: mid-episode, the cube could
    have been anywhere, which this does not model).
    """
    context = np.asarray(context)
    if context.ndim != 5 or context.shape[-1] != 3:
        raise ValueError(f"context must be (E, P, H, W, 3) frames, got shape {context.shape}")
    e, p = context.shape[:2]
    size = int(size or context.shape[2])
    if context.shape[2:4] != (size, size):
        raise ValueError(f"context frames are {context.shape[2:4]}, not {size}x{size}")
    steps = p - 1 + horizon
    a = np.asarray(actions)
    if a.ndim != 2 or a.shape[0] != e or a.shape[1] < steps:
        raise ValueError(f"actions must be (E={e}, >= {steps}), got shape {a.shape}")
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode={render_mode!r}: CubeCrash renders 'rgb_array' only")
    env, resets = _cube_crash_resets(size, int(hole_width), bool(shaped))
    u = env.unwrapped
    out = np.zeros((e, horizon, size, size, 3), np.float64)
    for i in range(e):
        states = resets.get(context[i, 0].tobytes())
        if not states:
            raise FloorError(
                f"context frame 0 of episode {i} is no CubeCrash reset frame at size {size} "
                f"(hole_width={hole_width}): the floor is defined for episode-start windows"
            )
        kept, frozen = [], []
        for state in states:
            frames, ended = _cube_crash_replay(env, u, state, a[i, :steps])
            if ended < p - 1 or not np.array_equal(frames[1:p], context[i, 1:p]):
                continue  # a candidate that ended inside the context cannot have shown it
            (frozen if ended < steps else kept).append(frames[p:])
        if not condition_on_survival or not kept:
            kept += frozen
        if not kept:
            raise FloorError(f"episode {i}: no CubeCrash reset state reproduces the context")
        out[i] = np.mean(kept, axis=0) / 255.0
    return out.astype(np.float32)


@lru_cache(maxsize=8)
def _cube_crash_resets(size: int, hole_width: int, shaped: bool):
    """The env (wrapped as :func:`forward_models.envs.make` wraps it) and every reset state by
    the bytes of its first frame."""
    from forward_models.envs import CUBE_CRASH_ID, make
    from forward_models.envs.cube_crash import H, W

    env = make(CUBE_CRASH_ID, size, {"hole_width": hole_width, "shaped": shaped})
    env.reset(seed=0)
    u = env.unwrapped
    half = hole_width // 2
    table: dict[bytes, list[tuple[int, int, int]]] = {}
    for x in range(3, W - 3):  # the ranges of CubeCrash.reset's draws
        for y in range(3, H // 6):
            for hole in range(half + 1, W - half - 1):
                u.x, u.y, u.hole = x, y, hole
                table.setdefault(env.observation(None).tobytes(), []).append((x, y, hole))
    return env, table


def _cube_crash_replay(env, u, state, actions) -> tuple[np.ndarray, int]:
    """Frames 0..T of the replay from ``state`` (after a termination the last frame repeats)
    and the frame at which it terminated (``T + 1`` if it did not)."""
    u.x, u.y, u.hole = state
    u.potential = -abs(u.x - u.hole)
    frames = [env.observation(None)]
    ended = len(actions) + 1
    for t, act in enumerate(actions):
        if ended <= t:
            frames.append(frames[-1])
            continue
        _, _, terminated, _, _ = u.step(int(act))
        frames.append(env.observation(None))
        if terminated:
            ended = t + 1
    return np.stack(frames), ended


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------
def _entry_point(env_id: str) -> str | None:
    import gymnasium as gym

    import forward_models.envs  # noqa: F401  (registers the built-in envs)

    spec = gym.registry.get(env_id)
    return spec.entry_point if spec is not None and isinstance(spec.entry_point, str) else None


def has_floor(env_id: str) -> bool:
    """Whether :func:`floor_for_env` knows ``env_id``'s dynamics (built-in Pong, CubeCrash)."""
    return _entry_point(env_id) in (PONG_ENTRY, CUBE_CRASH_ENTRY)


def floor_for_env(
    env_id: str,
    env_kwargs: dict | None,
    size: int,
    context: np.ndarray,
    actions: np.ndarray,
    horizon: int,
    **options,
) -> np.ndarray:
    """The floor's predictions, float32 ``(E, horizon, size, size, 3)``, for an env id.

    ``env_kwargs`` are the config's kwargs for the env; the id's registered kwargs (e.g. the
    fixed ``heading=0.3`` of ``forward_models/TwoPlayerPongFixed-v0``) come first and are
    overridden by them, as in ``gymnasium.make``. ``options`` go to :func:`pong_floor` or
    :func:`cube_crash_floor`. Defined for episode-start windows only (see the module docstring).
    """
    import gymnasium as gym

    entry = _entry_point(env_id)
    if entry not in (PONG_ENTRY, CUBE_CRASH_ENTRY):
        raise ValueError(f"no floor for {env_id!r}: only the built-in Pong and CubeCrash have one")
    kwargs = {**gym.registry[env_id].kwargs, **(env_kwargs or {})}
    if kwargs.pop("size", size) != size:
        raise ValueError(f"env_kwargs size={env_kwargs['size']} disagrees with size={size}")
    if entry == PONG_ENTRY:
        return pong_floor(context, actions, horizon, size=size, **kwargs, **options)
    return cube_crash_floor(context, actions, horizon, size=size, **kwargs, **options)


def rollouts_floor(rollouts, precondition: int, horizon: int, episodes: int, **options) -> dict:
    """The floor on the evaluation windows of a rollout store (as ``evaluation.eval_windows``
    picks them: the first ``episodes`` episodes with ``precondition + horizon`` rows, from their
    start). Returns the episode ids, the predictions, the truth (float in [0, 1]) and the
    per-pixel MSE per episode and horizon step, ``(E, horizon)``."""
    need = precondition + horizon
    ids = np.flatnonzero(rollouts.lengths >= need)[:episodes]
    obs, action = rollouts.array("obs"), rollouts.array("action")
    starts = rollouts.episode_starts[ids]
    frames = np.stack([obs[s : s + need] for s in starts])
    acts = np.stack([action[s : s + need] for s in starts])
    env = rollouts.attrs["env"]
    pred = floor_for_env(
        env["id"],
        env.get("kwargs"),
        env["size"],
        frames[:, :precondition],
        acts[:, : need - 1],
        horizon,
        **options,
    )
    truth = frames[:, precondition:].astype(np.float32) / 255.0
    mse = ((pred - truth) ** 2).reshape(len(ids), horizon, -1).mean(-1)
    return {"episode": ids, "prediction": pred, "truth": truth, "mse": mse}
