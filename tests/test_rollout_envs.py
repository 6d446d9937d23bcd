"""Every environment family and action-space kind, collected into stores and fed to a model."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import env_config
from forward_models import models
from forward_models.agents import keyboard_agent
from forward_models.data.collect import collect
from forward_models.data.windows import StreamingWindows, WindowSampler
from forward_models.data.zarr_store import open_rollouts
from forward_models.envs import CUBE_CRASH_ID, make
from forward_models.envs.cube_crash import CubeCrash
from gymnasium.utils.env_checker import check_env

TINY = {
    "arch": "rnn_deconv",
    "precondition": 2,
    "hidden": 8,
    "embed": 4,
    "encoder_width": 4,
    "decoder_channels": [8, 8, 4, 4],
}


def collect_tiny(
    tmp_path, env_id, agent="random", kwargs=None, episodes=2, steps=12, **agent_kwargs
):
    env = env_config(env_id, 32, steps, agent, agent_kwargs, kwargs)
    return open_rollouts(collect(env, tmp_path / "s.zarr", episodes, seed=0, progress=False))


def one_training_step(store):
    model = models.build(TINY, store.frame_shape, store.n_actions, store.action_dim)
    loss, _ = model.loss(WindowSampler(store, 6, seed=0).sample(2))
    loss.backward()
    assert torch.isfinite(loss)
    return model


def test_cube_crash_passes_check_env_and_ends_in_hole_or_crash():
    env = CubeCrash()
    check_env(env)
    obs, info = env.reset(seed=0)
    assert (
        obs.shape == (40, 32, 3) and (obs == [0, 255, 0]).all(-1).sum() == 9
    )  # the 3x3 green cube
    rewards = []
    for _ in range(60):  # steer into the hole
        obs, r, term, _, info = env.step(
            2 if info["cube"][0] < info["hole"] else 1 if info["cube"][0] > info["hole"] else 0
        )
        rewards.append(r)
        if term:
            break
    assert term and rewards[-1] == 1.0


def test_cube_crash_crashes_into_the_wall():
    env = CubeCrash()
    obs, info = env.reset(seed=1)
    away = 1 if info["hole"] > 16 else 2  # steer away from the hole, into the side or the wall
    for _ in range(60):
        obs, r, term, _, info = env.step(away)
        if term:
            break
    assert term and r == -1.0


@pytest.mark.parametrize(
    "env_id, agent, space_kind",
    [
        (CUBE_CRASH_ID, "sticky", "discrete"),
        ("CartPole-v1", "random", "discrete"),
        ("ALE/Pong-v5", "sticky", "discrete"),
        ("CarRacing-v3", "random", "box"),
    ],
)
def test_env_family_collects_and_trains(tmp_path, env_id, agent, space_kind):
    if env_id.startswith("ALE"):
        pytest.importorskip("ale_py")
    if env_id.startswith("CarRacing"):
        pytest.importorskip("Box2D")
    store = collect_tiny(tmp_path, env_id, agent)
    assert store.frame_shape == (3, 32, 32)
    obs = store.array("obs")[:]
    assert obs.std() > 0  # real pixels, not a blank frame
    if space_kind == "box":
        assert store.action_dim == 3 and store.array("action").dtype == np.float32
    else:
        assert store.n_actions > 0 and store.array("action").dtype == np.int64
    one_training_step(store)


def test_multidiscrete_is_flattened_to_the_same_index(tmp_path):
    flat = collect_tiny(tmp_path / "a", "forward_models/TwoPlayerPong-v0", "random")
    multi = collect_tiny(
        tmp_path / "b", "forward_models/TwoPlayerPong-v0", "random", {"multidiscrete": True}
    )
    assert make(
        "forward_models/TwoPlayerPong-v0", 32, {"multidiscrete": True}
    ).action_space == gym.spaces.Discrete(9)
    np.testing.assert_array_equal(flat.array("obs")[:], multi.array("obs")[:])
    np.testing.assert_array_equal(flat.array("action")[:], multi.array("action")[:])


def test_env_without_rgb_array_rendering_is_a_clear_error():
    class Blind(gym.Env):
        metadata = {"render_modes": []}
        observation_space = gym.spaces.Discrete(2)
        action_space = gym.spaces.Discrete(2)

    gym.register("test/Blind-v0", entry_point=lambda **kw: Blind())
    with pytest.raises(ValueError, match="does not render rgb_array"):
        make("test/Blind-v0", 32)


def test_keyboard_agents():
    pong = make("forward_models/TwoPlayerPong-v0", 32)
    agent = keyboard_agent(pong)
    assert agent.act() == 4
    agent.hold({"w", "down"})
    keys = pong.unwrapped.get_keys_to_action()
    assert agent.act() == keys[("w", "down")] == (1 + 1) * 3 + (-1 + 1)
    cube = keyboard_agent(make(CUBE_CRASH_ID, 32))
    cube.hold({"left"})
    assert cube.act() == 1


def test_streaming_loader_matches_store(tmp_path):
    store = collect_tiny(
        tmp_path, "forward_models/TwoPlayerPong-v0", "pong", episodes=3, steps=30, stochasticity=0.5
    )
    batch = next(iter(StreamingWindows(store.path, 8, batch_size=4, seed=0)))
    assert batch["obs"].shape == (4, 8, 3, 32, 32) and batch["mask"].all()
    frames = (batch["obs"] * 255).round().byte().permute(0, 1, 3, 4, 2).numpy()
    all_obs = store.array("obs")[:]
    for window in frames:  # every window is a contiguous run of stored frames
        assert any(np.array_equal(all_obs[i : i + 8], window) for i in range(len(all_obs) - 7))
