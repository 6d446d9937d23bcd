"""The floor (forward_models.floor): exact where nothing is hidden, and no predictor beats it."""

import numpy as np
import pytest
from forward_models import agents, envs
from forward_models.envs import CUBE_CRASH_ID, PONG_FIXED_ID, PONG_ID
from forward_models.envs.pong import TwoPlayerPong
from forward_models.floor import FloorError, floor_for_env, has_floor
from forward_models.floor.pong import pong_floor


def rollouts(env_id, n, seed=1, max_steps=80, agent="pong", agent_kwargs=None, size=32):
    """Episodes as collection seeds them (episode i from SeedSequence(seed).spawn(n)[i])."""
    env = envs.make(env_id, size, {}, max_steps)
    kwargs = {"stochasticity": [0.5, 1.0]} if agent_kwargs is None else agent_kwargs
    agent = agents.make_agent(agent, env.action_space, size, **kwargs)
    out = []
    for s in np.random.SeedSequence(seed).spawn(n):
        env_seed, agent_seed = s.spawn(2)
        agent.reset(np.random.default_rng(agent_seed))
        obs, info = env.reset(seed=int(env_seed.generate_state(1)[0]))
        frames, actions, heading = [obs], [], getattr(env.unwrapped, "heading", None)
        while True:
            action = agent.act(obs, info)
            obs, _, terminated, truncated, info = env.step(action)
            frames.append(obs)
            actions.append(action)
            if terminated or truncated:
                break
        actions.append(0)  # the store's last row has no action
        out.append({"obs": np.stack(frames), "action": np.asarray(actions), "heading": heading})
    return out


def windows(episodes, p, horizon):
    """Episode-start windows as evaluation takes them: context, actions a[0..P-2+h], truth."""
    eps = [e for e in episodes if len(e["obs"]) >= p + horizon]
    context = np.stack([e["obs"][:p] for e in eps])
    actions = np.stack([e["action"][: p - 1 + horizon] for e in eps])
    truth = np.stack([e["obs"][p : p + horizon] for e in eps]).astype(np.float32) / 255
    return eps, context, actions, truth


def mse(pred, truth):
    """Per episode and step (E, T), as metrics.step_errors."""
    return ((pred - truth) ** 2).reshape(*truth.shape[:2], -1).mean(-1)


@pytest.fixture(scope="module")
def pong():
    return rollouts(PONG_ID, 60)


def test_fixed_heading_is_replayed_exactly():
    eps, context, actions, truth = windows(rollouts(PONG_FIXED_ID, 12, max_steps=60), 3, 40)
    assert len(eps) >= 6
    pred = floor_for_env(PONG_FIXED_ID, {}, 32, context, actions, 40)
    assert pred.dtype == np.float32 and pred.shape == truth.shape
    assert mse(pred, truth).max() == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"heading": 0.0, "speed": 0.5},  # half-pixel steps: rendering rounds half to even
        {"heading": 2.0, "size": 33, "paddle_height": 11, "ball_size": 3, "paddle_width": 4},
    ],
)
def test_env_kwargs_are_replayed_exactly(kwargs):
    size = kwargs.get("size", 32)
    env = envs.make(PONG_ID, size, {k: v for k, v in kwargs.items() if k != "size"}, 70)
    rng = np.random.default_rng(0)
    obs = [env.reset(seed=0)[0]]
    actions = rng.integers(0, 9, 69)
    for a in actions:
        frame, _, terminated, truncated, _ = env.step(int(a))
        obs.append(frame)
        if terminated or truncated:
            break
    obs, horizon = np.stack(obs), len(obs) - 2
    assert horizon > 20
    pred = floor_for_env(PONG_ID, kwargs, size, obs[None, :2], actions[None], horizon)
    assert np.array_equal(pred[0], obs[2:] / np.float32(255))


def test_oracle_heading_is_exact_to_the_last_frame(pong):
    """Given the true heading, every frame of every episode, bounces, paddle hits and the
    terminal frame (ball clamped at the wall) included, is reproduced bit for bit."""
    p, checked = 2, 0
    for e in pong:
        horizon = len(e["obs"]) - p
        if horizon < 1:
            continue
        pred = pong_floor(
            e["obs"][None, :p], e["action"][None, :-1], horizon, headings=np.array([e["heading"]])
        )
        assert np.array_equal(pred[0], e["obs"][p:].astype(np.float32) / 255), len(e["obs"])
        checked += 1
    assert checked >= 50


def env_posterior_mean(context, actions, horizon, grid, survival):
    """Brute force with the real env, one heading at a time: the average of the replays that
    show the context (and, with ``survival``, last to the final frame); a ball that terminated
    stays put (velocity zeroed) while the paddles follow the actions."""
    p, kept = len(context), []
    for h in grid:
        env = TwoPlayerPong(heading=float(h))
        frames, ended = [env.reset()[0]], None
        for t, a in enumerate(actions):
            obs, _, terminated, _, _ = env.step(int(a))
            frames.append(obs)
            if t + 1 < p and not np.array_equal(obs, context[t + 1]):
                break
            if terminated and ended is None:
                ended, env.vel = t + 1, np.zeros(2)
        else:
            if ended is None or ended >= (p - 1 + horizon if survival else p - 1):
                kept.append(np.stack(frames[p:]) / 255)
    return np.mean(kept, axis=0), len(kept)


@pytest.mark.parametrize("survival", [True, False])
def test_floor_equals_the_posterior_replayed_by_the_env(pong, survival):
    """Independent of the vectorised replay: on episodes where some candidate headings
    terminate early (and others bounce off a paddle), with and without conditioning on the
    episode lasting to the last predicted frame."""
    p, horizon = 3, 45
    _, context, actions, _ = windows(pong, p, horizon)
    grid = np.tile((np.arange(1080) + 0.5) * (2 * np.pi / 1080), (len(context), 1))
    _, post = pong_floor(context, actions, horizon, headings=grid, return_posterior=True)
    some_end = np.flatnonzero([len(h) for h in post.headings] < post.consistent)
    assert len(some_end) >= 2
    pred, post = pong_floor(
        context,
        actions,
        horizon,
        headings=grid,
        condition_on_survival=survival,
        return_posterior=True,
    )
    for i in some_end[:2]:
        mean, n = env_posterior_mean(context[i], actions[i], horizon, grid[i], survival)
        assert n == len(post.headings[i]) > 5
        np.testing.assert_allclose(pred[i], mean, atol=1e-6)


def test_longer_precondition_never_raises_the_floor(pong):
    """Same episodes, same predicted frames o[6..6+H-1]: seeing o[3..5] too cannot hurt."""
    horizon = 24
    eps, context, actions, truth = windows(pong, 6, horizon)
    p3 = pong_floor(context[:, :3], actions, horizon + 3)[:, 3:]
    p6 = pong_floor(context, actions, horizon)
    e3, e6 = mse(p3, truth).mean(0), mse(p6, truth).mean(0)
    assert len(eps) >= 40
    assert (e6 <= e3 + 1e-6).all(), (e3, e6)
    assert e6.mean() < 0.8 * e3.mean()  # and here it helps


def test_floor_beats_copy_last_and_cruder_posteriors(pong):
    p, horizon = 3, 32
    eps, context, actions, truth = windows(pong, p, horizon)
    floor, post = pong_floor(context, actions, horizon, return_posterior=True)
    assert not post.fallback.any() and all(len(h) > 100 for h in post.headings)
    copy_last = np.broadcast_to(context[:, -1:].astype(np.float32) / 255, truth.shape)
    # A single heading of the posterior (not the truth) ...
    guess = pong_floor(
        context, actions, horizon, headings=np.array([h[len(h) // 2] for h in post.headings])
    )
    # ... and the posterior on a coarse grid of 90 headings.
    coarse = np.tile((np.arange(90) + 0.5) * (2 * np.pi / 90), (len(eps), 1))
    crude = pong_floor(context, actions, horizon, headings=coarse)
    f = mse(floor, truth).mean()
    assert 0 < f < mse(crude, truth).mean() < mse(guess, truth).mean()
    assert f < 0.5 * mse(copy_last, truth).mean()
    # Calibration: for white-or-black pixels the posterior's own expected error is p(1 - p).
    np.testing.assert_allclose(f, (floor * (1 - floor)).mean(), rtol=0.25)


def test_cube_crash_floor_is_zero():
    eps = rollouts(CUBE_CRASH_ID, 40, max_steps=200, agent="sticky", agent_kwargs={})
    _, context, actions, truth = windows(eps, 3, 20)
    assert len(context) >= 20
    assert mse(floor_for_env(CUBE_CRASH_ID, {}, 32, context, actions, 20), truth).max() == 0


def test_windows_not_at_an_episode_start_are_refused(pong):
    e = next(e for e in pong if len(e["obs"]) > 20)
    with pytest.raises(FloorError, match="episode's start"):
        pong_floor(e["obs"][None, 5:8], e["action"][None, 5:20], 10)
    with pytest.raises(FloorError, match="does not reproduce"):  # misaligned actions
        pong_floor(e["obs"][None, :12], np.full((1, 20), 6), 5, headings=[e["heading"]])
    assert has_floor(PONG_ID) and has_floor(PONG_FIXED_ID) and has_floor(CUBE_CRASH_ID)
    assert not has_floor("CartPole-v1") and not has_floor("no/such-v0")


def test_a_physics_constant_changed_in_its_one_place_changes_env_and_floor(monkeypatch):
    """The floor has no Pong rules of its own: change the ball speed where it lives
    (``envs.pong.DEFAULTS``) and the floor is still exact where nothing is hidden and still
    agrees with the env's own replay of random headings."""
    from forward_models.envs import pong

    monkeypatch.setitem(pong.DEFAULTS, "speed", 1.37)
    assert envs.make(PONG_ID, 32).unwrapped.rules.speed == 1.37
    eps, context, actions, truth = windows(rollouts(PONG_FIXED_ID, 8, max_steps=60), 3, 40)
    assert len(eps) >= 4
    assert mse(floor_for_env(PONG_FIXED_ID, {}, 32, context, actions, 40), truth).max() == 0
    checked = 0
    for e in rollouts(PONG_ID, 12, seed=7):
        if len(e["obs"]) < 12:
            continue
        frames, acts, heading = e["obs"][None, :2], e["action"][None, :-1], [e["heading"]]
        pred = pong_floor(frames, acts, len(e["obs"]) - 2, headings=heading)
        assert np.array_equal(pred[0], e["obs"][2:].astype(np.float32) / 255)
        checked += 1
        with pytest.raises(FloorError, match="does not reproduce"):  # the old speed cannot
            pong_floor(e["obs"][None, :8], acts, 2, headings=heading, speed=1.0)
    assert checked >= 8


@pytest.mark.parametrize("env_id", [CUBE_CRASH_ID, PONG_FIXED_ID])
def test_the_floor_reference_evaluates_every_env_with_a_floor(tmp_path, env_id):
    """The floor as the evaluation runs it (the registry's reference model, its point and its
    posterior samples): exact where nothing is hidden, on CubeCrash as on fixed-heading Pong
    (its heading grid is Pong's alone: passed to CubeCrash it reached the env and failed)."""
    import torch
    from conftest import env_config
    from forward_models import models
    from forward_models.data.collect import collect
    from forward_models.data.zarr_store import open_rollouts
    from forward_models.evaluation import eval_windows

    agent = "sticky" if env_id == CUBE_CRASH_ID else "pong"
    store = collect(env_config(env_id, 32, 60, agent), tmp_path / "s.zarr", 12, 0, progress=False)
    test = open_rollouts(store)
    floor = models.build({"arch": "floor", "precondition": 3}, test.frame_shape, test.n_actions)
    floor.prepare(test)
    batch = eval_windows(test, 3, 12, 12)
    assert len(batch["obs"]) >= 4
    truth = batch["obs"][:, 3:].float()
    window = {k: batch[k] for k in ("obs", "action", "mask")}
    point = floor.rollout_window(window, 3)
    mean, samples = floor.sample_window(window, 3, 4, torch.Generator().manual_seed(0))
    assert torch.equal(point, truth) and torch.equal(mean, truth)
    assert torch.equal(samples, truth[:, None].expand_as(samples))
