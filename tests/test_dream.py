"""Dreams as whole envs: the reward and end model, ``Dream-v0`` with rewards, ends and
truncation, and the vector of N dreams in one model call."""

import gymnasium as gym
import numpy as np
import pytest
from conftest import env_config, tiny_checkpoints
from forward_models import models, outcome
from forward_models.data.collect import collect
from forward_models.data.zarr_store import open_rollouts
from forward_models.dream import Dream, DreamVector
from forward_models.envs import DREAM_ID
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

FAMILIES = sorted(a for a, cls in models.REGISTRY.items() if not cls.replays_env)
DETERMINISTIC = [a for a in FAMILIES if not models.REGISTRY[a].Config.stochastic]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    spec = env_config("forward_models/TwoPlayerPong-v0", 32, 60, "random")
    return open_rollouts(
        collect(spec, tmp_path_factory.mktemp("d") / "s.zarr", 12, seed=0, progress=False)
    )


@pytest.fixture(scope="module")
def ends_model(store, tmp_path_factory):
    path = tmp_path_factory.mktemp("outcome") / "outcome.pt"
    outcome.save(outcome.train_outcome(store, outcome.OutcomeConfig(steps=40), 0), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(store, tmp_path_factory):
    return tiny_checkpoints(store, FAMILIES, tmp_path_factory, steps=2)


@pytest.fixture(scope="module")
def fitted(store):
    """A reward and end model fit well to the store (300 steps)."""
    return outcome.train_outcome(store, outcome.OutcomeConfig(steps=300), 0)


def test_the_end_model_finds_every_end_of_held_out_episodes(tmp_path):
    """Fit on 200 random-play Pong episodes (~60 ends), scored on 20 others' true frames: every
    end found within a step (at 400 steps; at 800 it began to miss one for some seeds)."""
    spec = env_config("forward_models/TwoPlayerPong-v0", 32, 60, "random")
    train = open_rollouts(collect(spec, tmp_path / "train.zarr", 200, seed=0, progress=False))
    test = open_rollouts(collect(spec, tmp_path / "test.zarr", 20, seed=1, progress=False))
    model = outcome.train_outcome(train, outcome.OutcomeConfig(steps=400), 0)
    got = outcome.score_true_frames(model, test)
    assert got["ends"] >= 5
    assert got["end_recall"] == 1.0 and got["end_precision"] >= 0.5, got
    assert got["reward_mae"] < 0.05  # Pong pays 1 per step


@pytest.mark.parametrize("arch", ["conv_gru_residual", "diffusion"])
def test_a_whole_dream_passes_check_env_and_ends(checkpoints, ends_model, arch):
    env = gym.make(DREAM_ID, checkpoint=str(checkpoints[arch]), outcome=str(ends_model))
    check_env(env.unwrapped, skip_render_check=False)
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, reward, term, trunc, _ = env.step(env.action_space.sample())
        assert isinstance(reward, float) and isinstance(term, bool)
        done, steps = term or trunc, steps + 1
    # the true env's limit (60 steps) counts from its reset: the precondition's step included
    assert steps <= 59 and (term or steps == 59)


def _singles(checkpoint, ends_model, n: int, limit: int) -> SyncVectorEnv:
    make = lambda: Dream(checkpoint, ends_model, max_episode_steps=limit)  # noqa: E731
    return SyncVectorEnv([make] * n, autoreset_mode=AutoresetMode.SAME_STEP)


@pytest.mark.parametrize("arch", DETERMINISTIC)
def test_the_vector_of_dreams_equals_single_dreams_step_for_step(checkpoints, ends_model, arch):
    """Three dreams in one model call against three single dreams, through ends, truncations
    at different steps and a partial reset (every family's state spliced row by row)."""
    n, limit = 3, 9
    ours = DreamVector(checkpoints[arch], n, ends_model, max_episode_steps=limit)
    theirs = _singles(checkpoints[arch], ends_model, n, limit)
    a, b = ours.reset(seed=7)[0], theirs.reset(seed=7)[0]
    np.testing.assert_array_equal(a, b)
    rng, restarts = np.random.default_rng(0), 0
    for t in range(30):
        if t == 4:  # dream 1 alone starts again: later its limit falls on other steps
            mask = np.array([False, True, False])
            a = ours.reset(options={"reset_mask": mask})[0]
            b = theirs.reset(options={"reset_mask": mask})[0]
            np.testing.assert_array_equal(a, b)
        actions = rng.integers(9, size=n)
        got, want = ours.step(actions), theirs.step(actions)
        # batched float arithmetic rounds a pixel a grey level apart now and then
        np.testing.assert_allclose(got[0].astype(int), want[0].astype(int), atol=1)
        np.testing.assert_allclose(got[1], want[1], atol=1e-4)
        for x, y in zip(got[2:4], want[2:4], strict=True):
            np.testing.assert_array_equal(x, y)
        if "_final_obs" in want[4]:
            mask = want[4]["_final_obs"]
            np.testing.assert_array_equal(got[4]["_final_obs"], mask)
            final = np.stack(want[4]["final_obs"][mask]).astype(int)
            np.testing.assert_allclose(got[4]["final_obs"][mask].astype(int), final, atol=1)
            restarts += mask.sum()
    assert restarts >= 4  # truncations (and ends) did happen


def test_a_stochastic_vector_draws_a_future_per_dream(checkpoints, ends_model):
    """Three dreams from one start and the same actions part ways; the same seed, again."""
    vec = DreamVector(checkpoints["diffusion"], 3, ends_model, max_episode_steps=1000)
    runs = []
    for _ in range(2):
        vec.reset(seed=[5, 5, 5])
        runs.append(np.stack([vec.step(np.full(3, 4))[0] for _ in range(4)]))
    np.testing.assert_array_equal(*runs)
    assert not np.array_equal(runs[0][:, 0], runs[0][:, 1])


class _Oracle:
    """A 'model' whose rollout is the true future: what a perfect forward model would draw."""

    class cfg:  # noqa: N801
        precondition, stochastic = 2, False

    def eval(self):
        return self

    def rollout_window(self, window, p):
        return window["obs"][:, p:].float()


def test_end_recall_from_frames_is_1_for_the_truth_and_0_for_a_still_frame(store, fitted):
    truth = outcome.end_hits(_Oracle(), fitted, store, [1, 4, 8])
    assert set(truth) == {1, 4, 8} and all(hit.all() for _, hit in truth.values()), truth
    still = models.build({"arch": "copy_last", "precondition": 2}, store.frame_shape, 9)
    frozen = outcome.end_hits(still, fitted, store, [8])
    assert not frozen[8][1].any()  # a ball that never moves never reaches the wall
