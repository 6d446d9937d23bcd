"""Agents that learn: PPO (stable-baselines3) trained inside a model's dreams or in the real env,
and every agent scored the same way, on seeded episodes of the real env.

The task-level measure of a world model (SimPLe, DreamerV3, IRIS, DIAMOND): the real-env return
of an agent trained only inside the model. The same PPO, settings and budget train in every
model's :class:`~forward_models.dream.DreamVector` and in the real env (the ceiling); a random
policy and, where the env has one, the scripted agent are the other references. Frames are
stacked (``n_stack``) the same way in both (SB3's ``VecFrameStack``), so a policy trained in a
dream plays the real env with no change.
"""

from __future__ import annotations

import logging

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack
from torch import nn

from forward_models import agents, envs
from forward_models.config import PolicyConfig

log = logging.getLogger(__name__)


class SmallCNN(BaseFeaturesExtractor):
    """Stride-2 convolutions for small frames (SB3's NatureCNN wants at least 36x36)."""

    def __init__(
        self, observation_space: gym.spaces.Box, features_dim: int = 256, channels=(16, 32, 32)
    ):
        super().__init__(observation_space, features_dim)
        c, layers = observation_space.shape[0], []
        for width in channels:
            layers += [nn.Conv2d(c, width, 4, 2, 1), nn.ReLU()]
            c = width
        self.cnn = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(c * 16, features_dim), nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(obs))


class VectorToSB3(VecEnv):
    """A Gymnasium vector env with same-step autoreset as stable-baselines3's ``VecEnv``."""

    def __init__(self, vector: gym.vector.VectorEnv):
        self.vector = vector
        super().__init__(
            vector.num_envs, vector.single_observation_space, vector.single_action_space
        )

    def reset(self):
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        obs, _ = self.vector.reset(seed=seed)
        self._reset_seeds()
        return obs

    def step_async(self, actions):
        self._actions = actions

    def step_wait(self):
        obs, reward, term, trunc, info = self.vector.step(self._actions)
        done = term | trunc
        infos = [{"TimeLimit.truncated": bool(trunc[i] and not term[i])} for i in range(len(done))]
        for i in np.flatnonzero(done):
            infos[i]["terminal_observation"] = info["final_obs"][i]
        return obs, reward.astype(np.float32), done, infos

    def close(self):
        self.vector.close()

    def get_attr(self, attr_name, indices=None):
        return [getattr(self.vector, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name, value, indices=None):
        setattr(self.vector, attr_name, value)

    def env_method(self, method_name, *args, indices=None, **kwargs):
        raise NotImplementedError("a vector of dreams has no per-env methods")

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._get_indices(indices))


def real_vector(spec: dict, n: int) -> gym.vector.VectorEnv:
    """``n`` copies of the real env (``spec``: id, size, kwargs, max_episode_steps), same-step
    autoreset like the dreams'."""

    def make():
        return envs.make(spec["id"], spec["size"], spec["kwargs"], spec.get("max_episode_steps"))

    return gym.vector.SyncVectorEnv([make] * n, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def train_ppo(vector: gym.vector.VectorEnv, cfg: PolicyConfig, seed: int) -> PPO:
    """PPO trained for ``cfg.steps`` env steps in ``vector`` (a dream's or the real env's)."""
    env = VecFrameStack(VectorToSB3(vector), cfg.n_stack)
    env.seed(seed)
    ppo = PPO(
        "CnnPolicy",
        env,
        learning_rate=cfg.lr,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        gamma=cfg.gamma,
        ent_coef=cfg.ent_coef,
        clip_range=cfg.clip_range,
        policy_kwargs={
            "features_extractor_class": SmallCNN,
            "features_extractor_kwargs": {"features_dim": cfg.features, "channels": cfg.channels},
        },
        seed=seed,
        device="cpu",
        verbose=0,
    )
    return ppo.learn(total_timesteps=cfg.steps)


def _scoring_env(spec: dict, cfg: PolicyConfig) -> VecFrameStack:
    return VecFrameStack(VectorToSB3(real_vector(spec, 1)), cfg.n_stack)


def _ppo_episode(ppo: PPO, env: VecFrameStack, seed: int, greedy: bool):
    """One real-env episode of ``ppo`` from ``seed`` (the env's start and torch's generator,
    so sampled actions repeat): its return, its frames (first to last) and its actions."""
    env.seed(seed)
    torch.manual_seed(seed)
    obs = env.reset()
    c = env.venv.observation_space.shape[-1]
    total, frames, actions, done = 0.0, [obs[0, ..., -c:]], [], False
    while not done:
        action, _ = ppo.predict(obs, deterministic=greedy)
        obs, reward, dones, infos = env.step(action)
        total, done = total + float(reward[0]), bool(dones[0])
        frames.append(infos[0]["terminal_observation"][..., -c:] if done else obs[0, ..., -c:])
        actions.append(int(np.asarray(action).reshape(-1)[0]))
    return total, np.stack(frames), actions


def score_ppo(ppo: PPO, spec: dict, cfg: PolicyConfig) -> np.ndarray:
    """Real-env returns of ``ppo`` on the scoring episodes, frames stacked as in training.

    Actions are sampled from the policy (as it acted while learning), with torch's generator
    seeded by the episode, or with ``cfg.greedy`` its most likely ones."""
    env = _scoring_env(spec, cfg)
    seeds = range(cfg.score_seed, cfg.score_seed + cfg.episodes)
    return np.asarray([_ppo_episode(ppo, env, seed, cfg.greedy)[0] for seed in seeds])


def score_agent(kind: str, spec: dict, cfg: PolicyConfig, **options) -> np.ndarray:
    """Real-env returns of a rollout agent (``random``, or a scripted one such as ``pong`` with
    its ``options``) on the scoring episodes; each episode's agent draws from a generator
    seeded by the episode."""
    env = envs.make(spec["id"], spec["size"], spec["kwargs"], spec.get("max_episode_steps"))
    agent = agents.make_agent(kind, env.action_space, spec["size"], **options)
    returns = []
    for i in range(cfg.episodes):
        seed = cfg.score_seed + i
        obs, info = env.reset(seed=seed)
        agent.reset(np.random.default_rng(seed))
        total, done = 0.0, False
        while not done:
            obs, reward, term, trunc, info = env.step(agent.act(obs, info))
            total, done = total + float(reward), term or trunc
        returns.append(total)
    return np.asarray(returns)


def normalised(returns, random_returns, real_returns) -> float:
    """``(R - R_random) / (R_real - R_random)`` on the means: 0 is random, 1 the real-env PPO."""
    lo, hi = float(np.mean(random_returns)), float(np.mean(real_returns))
    return (float(np.mean(returns)) - lo) / (hi - lo) if hi != lo else float("nan")


def record(ppo: PPO, spec: dict, cfg: PolicyConfig, dreams=None, scale: int = 4) -> np.ndarray:
    """The agent's first scoring episode in the real env, beside its dream under the same
    actions (``dreams``: a :class:`~forward_models.dream.Dreams` of one, started from the real
    episode's first P frames): real | dream | |difference| per step, uint8 (T, H', W', C)."""
    from forward_models import frames

    _, real, actions = _ppo_episode(ppo, _scoring_env(spec, cfg), cfg.score_seed, cfg.greedy)
    if dreams is None:
        return frames.upscale(real, scale)
    p = dreams.p
    dreams.start([0], [list(real[:p])])
    dreamt = list(real[:p])
    for a in actions[p - 1 :]:
        dreamt.append(dreams.step(np.asarray([a]))[0][0])
    return frames.side_by_side(real, np.stack(dreamt[: len(real)]), scale)


def scores_record(returns, cfg: PolicyConfig, seconds: float, env: str, agent: str, seed: int):
    """One agent's scores file: its returns on the scoring episodes and how they were got."""
    returns = np.asarray(returns, np.float64)
    return {
        "env": env, "agent": agent, "seed": seed, "returns": returns.tolist(),
        "mean": float(returns.mean()), "episodes": len(returns), "ppo_steps": cfg.steps,
        "cpu_seconds": round(seconds, 1),
    }  # fmt: skip
