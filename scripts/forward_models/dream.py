"""Dreams: a trained forward model, with its env's reward and end model, as Gymnasium envs.

``gymnasium.make("forward_models/Dream-v0", checkpoint=PATH, outcome=OUTCOME)`` resets the true
environment the checkpoint was trained on (its spec travels in the checkpoint), takes its first
P frames as the precondition and from then on steps the model alone. The reward and
``terminated`` come from the reward and end model (:mod:`forward_models.outcome`) read on the
model's own frames; ``truncated`` comes at the true env's ``max_episode_steps`` (counted from
the true reset, precondition steps included). Without ``outcome`` a dream returns reward 0 and
never terminates.

:class:`DreamVector` steps N dreams in one model call (Gymnasium's vector API, same-step
autoreset: an ended dream's last frame is in ``info["final_obs"]`` and its row already shows
the next dream's first frame), since agents train on many envs at once. It equals N single
dreams step for step (a test) for every deterministic family; a stochastic family draws one
future per dream from one generator for all, seeded at the full reset (the same seed, the same
dreams). :func:`sb3_vec_env` adapts it to stable-baselines3's ``VecEnv``.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from forward_models import envs, frames, models, outcome


def _to_float(shown) -> torch.Tensor:
    """(B, P, H, W, C) uint8 -> (B, P, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(shown)).permute(0, 1, 4, 2, 3).float().div(255)


def env_spec(checkpoint: str | Path) -> dict:
    """The env a checkpoint was trained on: saved in it, or in the run's config.yaml beside it."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "env" in ckpt:
        return ckpt["env"]
    resolved = Path(checkpoint).with_name("config.yaml")
    if resolved.is_file():
        import yaml

        return yaml.safe_load(resolved.read_text())["env"]
    raise ValueError(
        f"{checkpoint} names no env (neither inside it nor in a config.yaml beside it)"
    )


def splice(state, rows: np.ndarray, new, n: int):
    """The state of ``n`` dreams with ``rows`` replaced by ``new``, a state of ``len(rows)``
    dreams. Families keep states as tensors (in dicts, tuples, lists) with a batch dimension,
    not always the first (the thesis' dilated GRUs keep (skip, B, H)): it is the one where the
    two states' sizes differ. What has no batch dimension (a step counter, a constant) stays,
    as do entries a fresh state lacks (outputs kept for inspection that no step reads, such as
    asset_stn's ``theta``)."""
    if isinstance(state, torch.Tensor):
        dims = [d for d, (a, b) in enumerate(zip(state.shape, new.shape, strict=True)) if a != b]
        if not dims:
            return new if len(rows) == n else state
        out = state.clone()
        index = [slice(None)] * state.dim()
        index[dims[0]] = torch.as_tensor(rows, device=state.device)
        out[tuple(index)] = new.to(out.dtype)
        return out
    if isinstance(state, dict):
        return {k: splice(v, rows, new[k], n) if k in new else v for k, v in state.items()}
    if isinstance(state, tuple | list):
        return type(state)(splice(s, rows, x, n) for s, x in zip(state, new, strict=True))
    return state


class Dreams:
    """``n`` dreams of one model stepped together: what :class:`Dream` and
    :class:`DreamVector` wrap."""

    def __init__(
        self,
        checkpoint: str | Path,
        n: int = 1,
        outcome_model: str | Path | None = None,
        device: str = "cpu",
        max_episode_steps: int | None = None,
    ):
        self.model = models.load(checkpoint, map_location=device).eval()
        self.spec_env = env_spec(checkpoint)
        spec = self.spec_env
        self.true_envs = [envs.make(spec["id"], spec["size"], spec["kwargs"]) for _ in range(n)]
        self.outcome = outcome.load(outcome_model, device) if outcome_model else None
        self.limit = max_episode_steps or spec.get("max_episode_steps")
        self.n, self.p = n, self.model.cfg.precondition
        self.keep = max(self.p, self.outcome.cfg.frames if self.outcome else 1)
        c, h, w = self.model.frame_shape
        self.frames = np.zeros((n, self.keep, h, w, c), np.uint8)  # each dream's last frames
        self.t = np.zeros(n, np.int64)  # steps since the true env's reset
        self.generator = torch.Generator(device=device).manual_seed(0)
        self.state = None

    def precondition(self, i: int, seed: int | None) -> list[np.ndarray]:
        """True env ``i``'s first P frames (its agent acts at random, seeded)."""
        env = self.true_envs[i]
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        context = [obs]
        while len(context) < self.p:
            obs, *_ = env.step(env.action_space.sample())
            context.append(obs)
        return context

    @torch.no_grad()
    def start(self, rows, contexts: list[list[np.ndarray]]) -> None:
        """(Re)start the dreams ``rows`` from ``contexts``, each its last true frames."""
        rows = np.asarray(rows)
        shown = np.stack([c[-self.p :] for c in contexts])
        new = self.model.init_state(_to_float(shown), **self.model.draw(self.generator))
        whole = len(rows) == self.n and (rows == np.arange(self.n)).all()
        self.state = new if whole or self.state is None else splice(self.state, rows, new, self.n)
        for row, context in zip(rows, contexts, strict=True):
            padded = [context[0]] * self.keep + list(context)
            self.frames[row] = np.stack(padded[-self.keep :])
            self.t[row] = len(context) - 1

    @torch.no_grad()
    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(frames (n, H, W, C) uint8, reward (n,), terminated (n,), truncated (n,))``."""
        a = torch.as_tensor(np.asarray(actions))
        frame, self.state = self.model.step(self.state, a, **self.model.draw(self.generator))
        new = frames.uint8_frames(frame)
        self.frames = np.concatenate([self.frames[:, 1:], new[:, None]], axis=1)
        self.t += 1
        if self.outcome is None:
            reward, ended = np.zeros(self.n, np.float32), np.zeros(self.n, bool)
        else:
            seen = _to_float(self.frames[:, -self.outcome.cfg.frames :])
            r, e = self.outcome.predict(seen, a)
            reward, ended = r.numpy().astype(np.float32), e.numpy()
        truncated = (self.t >= self.limit) & ~ended if self.limit else np.zeros(self.n, bool)
        return new, reward, ended, truncated


class Dream(gym.Env):
    """The dynamics of a trained forward model as a Gymnasium env (observations: its frames)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        checkpoint: str | Path,
        outcome: str | Path | None = None,
        render_mode: str | None = "rgb_array",
        device: str = "cpu",
        max_episode_steps: int | None = None,
    ):
        self.dreams = Dreams(checkpoint, 1, outcome, device, max_episode_steps)
        self.model, self.spec_env = self.dreams.model, self.dreams.spec_env
        self.true_env = self.dreams.true_envs[0]
        self.p, self.generator = self.dreams.p, self.dreams.generator
        self.render_mode = render_mode
        c, h, w = self.model.frame_shape
        self.observation_space = gym.spaces.Box(0, 255, (h, w, c), np.uint8)
        self.action_space = self.true_env.action_space

    @property
    def _frame(self) -> np.ndarray:
        return self.dreams.frames[0, -1]

    def precondition(self, seed: int | None) -> list[np.ndarray]:
        """The true env's first P frames (no-op-free: the agent acts at random, seeded)."""
        return self.dreams.precondition(0, seed)

    def sync(self, context: list[np.ndarray]) -> None:
        """(Re)start the model from ``context``, the last true frames."""
        self.dreams.start([0], [context])

    def redraw(self, context: list[np.ndarray]) -> None:
        """Start another future from ``context``: a new generator seed, then :meth:`sync`."""
        self.generator.manual_seed(int(torch.randint(2**62, (1,), generator=self.generator)))
        self.sync(context)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31))
        self.generator.manual_seed(seed)
        self.sync(self.precondition(seed))
        return self._frame.copy(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        frame, reward, ended, truncated = self.dreams.step(np.asarray(action)[None])
        return frame[0].copy(), float(reward[0]), bool(ended[0]), bool(truncated[0]), {}

    def render(self):
        return self._frame.copy() if self.render_mode == "rgb_array" else None


class DreamVector(gym.vector.VectorEnv):
    """``num_envs`` dreams of one model in one model call per step (same-step autoreset)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        checkpoint: str | Path,
        num_envs: int,
        outcome: str | Path | None = None,
        device: str = "cpu",
        max_episode_steps: int | None = None,
    ):
        self.dreams = Dreams(checkpoint, num_envs, outcome, device, max_episode_steps)
        self.num_envs = num_envs
        c, h, w = self.dreams.model.frame_shape
        self.single_observation_space = gym.spaces.Box(0, 255, (h, w, c), np.uint8)
        self.single_action_space = self.dreams.true_envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.rngs = [np.random.default_rng() for _ in range(num_envs)]

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Every dream (or those of ``options["reset_mask"]``); env ``i`` takes ``seed + i``."""
        mask = np.ones(self.num_envs, bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], bool)
        seeds = seed if isinstance(seed, list) else [None] * self.num_envs
        if isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        rows = np.flatnonzero(mask)
        if mask.all() and seeds[0] is not None:
            self.dreams.generator.manual_seed(seeds[0])
        self._start(rows, [seeds[i] for i in rows])
        return self.dreams.frames[:, -1].copy(), {}

    def _start(self, rows, seeds) -> None:
        drawn = []
        for row, seed in zip(rows, seeds, strict=True):
            if seed is not None:  # as a single env's reset(seed): its generator from the seed
                self.rngs[row] = gym.utils.seeding.np_random(seed)[0]
                drawn.append(seed)
            else:
                drawn.append(int(self.rngs[row].integers(2**31)))
        self.dreams.start(
            rows, [self.dreams.precondition(r, s) for r, s in zip(rows, drawn, strict=True)]
        )

    def step(self, actions):
        obs, reward, ended, truncated = self.dreams.step(actions)
        infos: dict = {}
        done = np.flatnonzero(ended | truncated)
        if len(done):
            infos = {"final_obs": obs.copy(), "_final_obs": ended | truncated}
            self._start(done, [None] * len(done))
            obs = self.dreams.frames[:, -1].copy()
        return obs, reward.astype(np.float64), ended, truncated, infos
