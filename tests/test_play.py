"""Playing learned models: the Dream-v0 env and the headless play window."""

import os

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
from conftest import env_config, tiny_checkpoints
from forward_models import models
from forward_models.data.collect import collect
from forward_models.data.zarr_store import open_rollouts
from forward_models.envs import DREAM_ID
from gymnasium.utils.env_checker import check_env

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


FAMILIES = sorted(a for a, cls in models.REGISTRY.items() if not cls.replays_env)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    spec = env_config("forward_models/TwoPlayerPong-v0", 32, 40, "pong", {"stochasticity": 0.5})
    return open_rollouts(
        collect(spec, tmp_path_factory.mktemp("d") / "s.zarr", 4, seed=0, progress=False)
    )


@pytest.fixture(scope="module")
def checkpoints(store, tmp_path_factory):
    return tiny_checkpoints(store, FAMILIES, tmp_path_factory, steps=3)


@pytest.mark.parametrize("arch", FAMILIES)
def test_dream_env_passes_check_env(checkpoints, arch):
    env = gym.make(DREAM_ID, checkpoint=str(checkpoints[arch]))
    check_env(env.unwrapped, skip_render_check=False)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    obs2, reward, term, trunc, _ = env.step(env.action_space.sample())
    assert obs2.shape == obs.shape and not term


SAMPLERS = sorted(a for a in FAMILIES if models.REGISTRY[a].Config.stochastic)


@pytest.mark.parametrize("arch", ["rnn_deconv", *SAMPLERS])
def test_dream_is_deterministic_given_seed_and_actions(checkpoints, arch):
    """A sampling family's dream too: its generator is seeded at reset."""
    env = gym.make(DREAM_ID, checkpoint=str(checkpoints[arch]))
    runs = []
    for _ in range(2):
        frames = [env.reset(seed=5)[0]]
        frames += [env.step(a)[0] for a in [0, 4, 8, 8, 2]]
        runs.append(np.stack(frames))
    np.testing.assert_array_equal(*runs)


@pytest.mark.parametrize("arch", SAMPLERS)
def test_a_sampling_dream_draws_another_future_on_redraw(checkpoints, arch):
    env = gym.make(DREAM_ID, checkpoint=str(checkpoints[arch])).unwrapped
    context = env.precondition(seed=5)
    futures = []
    for redraw in (False, True):
        env.redraw(context) if redraw else (env.generator.manual_seed(5), env.sync(context))
        futures.append(np.stack([env.step(a)[0] for a in [0, 4, 8, 8, 2]]))
    assert not np.array_equal(*futures)


def test_play_headless_records_100_frames_that_follow_the_keys(checkpoints, tmp_path):
    from forward_models.cli import main

    ckpt = str(checkpoints["rnn_deconv"])
    main(
        [
            "play",
            ckpt,
            "--steps",
            "100",
            "--record",
            str(tmp_path / "a.mp4"),
            "--keys",
            "w,w+up,s+down,",
        ]
    )
    main(
        ["play", ckpt, "--steps", "100", "--record", str(tmp_path / "b.mp4"), "--keys", "s,s+down,"]
    )
    a, b = iio.imread(tmp_path / "a.mp4"), iio.imread(tmp_path / "b.mp4")
    assert len(a) == 100 and len(b) == 100
    assert a.std(axis=0).mean() > 0  # the picture changes over time
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.5  # and depends on the keys held
