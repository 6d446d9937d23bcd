import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from conftest import tally
from forward_models.data.collect import collect, run_episode
from forward_models.data.shards import ChunkLayout
from forward_models.data.windows import WindowSampler, split_episodes
from forward_models.data.zarr_store import RolloutWriter, StoreError, open_rollouts


def fake_episode(rows, seed, shape=(8, 8, 3)):
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.integers(0, 256, (rows, *shape), dtype=np.uint8),
        "action": rng.integers(0, 9, rows),
        "reward": rng.random(rows).astype(np.float32),
        "terminated": np.r_[np.zeros(rows - 1, bool), True],
        "truncated": np.zeros(rows, bool),
    }


def test_round_trip_across_shard_boundaries(tmp_path):
    episodes = [fake_episode(n, i) for i, n in enumerate([5, 17, 3, 40, 9])]
    path = tmp_path / "s.zarr"
    layout = ChunkLayout((8, 8, 3), chunk_len=4, shard_len=16)
    with RolloutWriter(path, (8, 8, 3), attrs={"env": "fake"}, layout=layout) as w:
        for ep in episodes:
            w.add_episode(ep)
    r = open_rollouts(path)
    assert r.n_episodes == 5 and r.attrs["env"] == "fake"
    np.testing.assert_array_equal(r.episode_ends, np.cumsum([5, 17, 3, 40, 9]))
    for i, ep in enumerate(episodes):
        got = r.episode(i)
        for key, value in ep.items():
            np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert not list(tmp_path.glob("*.partial-*"))


def test_failed_writer_leaves_nothing_that_looks_whole(tmp_path):
    path = tmp_path / "s.zarr"
    with pytest.raises(RuntimeError), RolloutWriter(path, (8, 8, 3)) as w:
        w.add_episode(fake_episode(5, 0))
        raise RuntimeError("killed")
    assert not path.exists() and not list(tmp_path.iterdir())


def test_killed_writer_is_reported_on_open(tmp_path):
    path = tmp_path / "s.zarr"
    w = RolloutWriter(path, (8, 8, 3), layout=ChunkLayout((8, 8, 3), chunk_len=4, shard_len=8))
    w.add_episode(fake_episode(20, 0))
    with pytest.raises(StoreError, match="still being written"):  # its writer is alive
        open_rollouts(path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a SIGKILL here: close() never runs; its pid no longer exists
    w.tmp.rename(str(w.tmp).rsplit("-", 1)[0] + f"-{dead.pid}")
    with pytest.raises(StoreError, match="unfinished .*a writer was killed"):
        open_rollouts(path)


def write(path, episodes=(5, 7)):
    with RolloutWriter(path, (8, 8, 3)) as w:
        for i, n in enumerate(episodes):
            w.add_episode(fake_episode(n, i))


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda g: g["meta"].create_array(
                "episode_ends", data=np.array([5, 11]), overwrite=True
            ),
            "episode_ends ends at 11 but data/obs has 12",
        ),
        (
            lambda g: g["meta"].create_array(
                "episode_ends", data=np.array([7, 5, 12]), overwrite=True
            ),
            "not strictly increasing",
        ),
        (
            lambda g: g["data"]["reward"].resize((10,)),
            "data/reward has 10 rows but data/obs has 12",
        ),
        (
            lambda g: g["data"].create_array(
                "terminated", data=np.zeros(12, np.int8), overwrite=True
            ),
            "data/terminated has dtype int8",
        ),
    ],
)
def test_validator_names_the_damaged_array(tmp_path, damage, message):
    path = tmp_path / "s.zarr"
    write(path)
    damage(zarr.open_group(str(path), mode="r+"))
    with pytest.raises(StoreError, match=message):
        open_rollouts(path)


def test_missing_array_is_named(tmp_path):
    path = tmp_path / "s.zarr"
    write(path)
    import shutil

    shutil.rmtree(path / "data" / "action")
    with pytest.raises(StoreError, match="missing array.*data/action"):
        open_rollouts(path)


def test_collection_is_identical_for_1_and_2_workers(tmp_path, pong_spec):
    a = open_rollouts(collect(pong_spec, tmp_path / "a.zarr", 6, seed=7, workers=1, progress=False))
    b = open_rollouts(collect(pong_spec, tmp_path / "b.zarr", 6, seed=7, workers=2, progress=False))
    np.testing.assert_array_equal(a.episode_ends, b.episode_ends)
    for key, value in a.load().items():
        np.testing.assert_array_equal(value, b.load()[key], err_msg=key)


def test_min_length_drops_short_episodes_deterministically(tmp_path, pong_spec):
    r = open_rollouts(
        collect(pong_spec, tmp_path / "a.zarr", 5, seed=1, min_length=40, progress=False)
    )
    assert r.n_episodes == 5 and (r.lengths - 1 >= 40).all()


def test_rows_align_frames_with_the_actions_that_caused_them(pong_spec):
    """Row t + 1 is what action t produced: replaying the stored actions reproduces the frames."""
    import gymnasium as gym

    ep = run_episode(pong_spec, np.random.SeedSequence(5))
    assert ep["terminated"][-1] or ep["truncated"][-1]
    assert not ep["terminated"][:-1].any() and ep["reward"][0] == 0
    env = gym.make(pong_spec.env.id, size=pong_spec.env.size)
    seed = int(np.random.SeedSequence(5).spawn(2)[0].generate_state(1)[0])
    obs, _ = env.reset(seed=seed)
    np.testing.assert_array_equal(obs, ep["obs"][0])
    for t, action in enumerate(ep["action"][:-1]):
        obs, *_ = env.step(int(action))
        np.testing.assert_array_equal(obs, ep["obs"][t + 1])
    assert ep["action"][-1] == 0  # the last row has no action taken: a filler


def test_window_sampler_masks_past_episode_end(tmp_path):
    path = tmp_path / "s.zarr"
    write(path, episodes=(4, 30))
    r = open_rollouts(path)
    s = WindowSampler(r, length=10, episodes=[0], seed=0)
    batch = s.sample(3)
    assert batch["obs"].shape == (3, 10, 3, 8, 8) and batch["obs"].max() <= 1.0
    assert batch["mask"][:, :4].all() and not batch["mask"][:, 4:].any()
    full = WindowSampler(r, length=10, episodes=[1], seed=0).sample(16)
    assert full["mask"].all()  # windows of a long episode never overrun it


def test_a_store_is_read_once_for_the_samplers_that_share_it(tmp_path):
    path = tmp_path / "s.zarr"
    write(path, episodes=(6, 9))
    r = open_rollouts(path)
    train, val = WindowSampler(r, 4, episodes=[0]), WindowSampler(r, 4, episodes=[1])
    assert train.obs is val.obs and train.action is val.action  # one copy in memory
    # the shared copy holds the store's rows as written
    np.testing.assert_array_equal(r.load(("obs",))["obs"], r.array("obs")[:])
    assert set(r.load(("reward",))) == {"reward"}  # only the keys asked for


def test_windows_from_start_begin_at_the_episodes_first_row(tmp_path):
    """``from_start=1``: every window is an episode's first rows, as evaluation's are; 0 keeps
    the windows every start equally likely drew before the option existed."""
    from forward_models.data.windows import draw_windows, window_weights

    path = tmp_path / "s.zarr"
    write(path, episodes=(40, 50, 60))
    r = open_rollouts(path)
    first = r.load(("obs",))["obs"][r.episode_starts]  # (3, H, W, C): each episode's row 0
    batch = WindowSampler(r, length=10, seed=0, from_start=1.0).sample(32)
    firsts = torch.from_numpy(first).permute(0, 3, 1, 2).float() / 255
    assert all(any(torch.equal(w[0], f) for f in firsts) for w in batch["obs"])
    anywhere = WindowSampler(r, length=10, seed=0).sample(32)
    assert sum(any(torch.equal(w[0], f) for f in firsts) for w in anywhere["obs"]) < 8

    lengths, p = r.lengths, window_weights(r.lengths, 10)
    old_ep, old_offset = draw_windows(np.random.default_rng(4), lengths, p, 10, 64)
    ep, offset = draw_windows(np.random.default_rng(4), lengths, p, 10, 64, from_start=0.0)
    assert (ep == old_ep).all() and (offset == old_offset).all() and offset.any()
    half = draw_windows(np.random.default_rng(4), lengths, p, 10, 4000, from_start=0.5)[1]
    assert 0.4 < (half == 0).mean() < 0.6


def test_windows_to_end_finish_at_the_episodes_last_row(tmp_path):
    """``to_end=1``: every window's last row is its episode's last (where a terminated
    episode shows its end); with ``from_start`` beside it the two shares split the windows, and
    together they may not exceed 1."""
    from forward_models.data.windows import draw_windows, window_weights
    from forward_models.model_config import TrainConfig
    from pydantic import ValidationError

    path = tmp_path / "s.zarr"
    write(path, episodes=(40, 50, 60))
    r = open_rollouts(path)
    ends = r.episode_starts + r.lengths - 1
    last = torch.from_numpy(r.load(("obs",))["obs"][ends]).permute(0, 3, 1, 2).float() / 255
    batch = WindowSampler(r, length=10, seed=0, to_end=1.0).sample(32)
    assert batch["mask"].all()
    assert all(any(torch.equal(w[-1], f) for f in last) for w in batch["obs"])

    lengths, p = r.lengths, window_weights(r.lengths, 10)
    ep, offset = draw_windows(np.random.default_rng(4), lengths, p, 10, 4000, 0.5, 0.25)
    at_end = offset == lengths[ep] - 10
    assert 0.45 < (offset == 0).mean() < 0.55 and 0.2 < at_end.mean() < 0.3
    with pytest.raises(ValidationError, match="from_start=0.8 \\+ to_end=0.3 exceeds 1"):
        TrainConfig(from_start=0.8, to_end=0.3)


def test_split_episodes_is_disjoint():
    train, val = split_episodes(20, 0.2, seed=0)
    assert len(val) == 4 and not set(train) & set(val) and len(train) + len(val) == 20


def test_inspect_prints_a_summary_and_saves_a_sheet(tmp_path, pong_spec, capsys):
    from forward_models.cli import main
    from PIL import Image

    collect(pong_spec, tmp_path / "s.zarr", 3, seed=0, progress=False)
    main(
        [
            "inspect",
            str(tmp_path / "s.zarr"),
            "--sheet",
            str(tmp_path / "sheet.png"),
            "--frames",
            "5",
        ]
    )
    out = capsys.readouterr().out
    assert "episodes   3" in out and "ratio" in out and "actions" in out
    w, h = Image.open(tmp_path / "sheet.png").size
    assert w == 5 * (32 + 2) * 3 and h == 3 * (32 + 2) * 3


def test_collection_killed_midway_leaves_no_store_and_a_rerun_succeeds(tmp_path, pong_spec):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "s.zarr"
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1] / 'scripts')!r})\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from conftest import env_config\n"
        "from forward_models.data.collect import collect\n"
        "env = env_config('forward_models/TwoPlayerPong-v0', 64, 200, 'pong')\n"
        f"collect(env, {str(out)!r}, 100000, seed=0, workers=2, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.time() + 60
    while not any(p.glob("data/obs/c.*") for p in tmp_path.glob("s.zarr.partial-*")):
        assert time.time() < deadline and proc.poll() is None, "collection never started writing"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the job and its workers die mid-write
    proc.wait()
    assert not out.exists()
    with pytest.raises(StoreError, match="a writer was killed"):
        open_rollouts(out)
    collect(pong_spec, out, 3, seed=0, progress=False)
    assert open_rollouts(out).n_episodes == 3
    assert not list(
        tmp_path.glob("s.zarr.partial-*")
    )  # the rerun cleaned up the dead writer's files


def test_workers_die_with_a_collection_killed_by_sigkill(tmp_path):
    """Only the collecting process is killed (as a job's process is): its workers, which hold
    shared memory, must not outlive it."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1] / 'scripts')!r})\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from conftest import env_config\n"
        "from forward_models.data.collect import collect\n"
        "env = env_config('forward_models/TwoPlayerPong-v0', 32, 200, 'pong')\n"
        f"collect(env, {str(tmp_path / 's.zarr')!r}, 100000, seed=0, workers=2, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)

    def alive_children() -> list[int]:
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[1]) == proc.pid:
                out.append(int(stat.parent.name))
        return out

    deadline = time.time() + 60
    while len(workers := alive_children()) < 2 or not list(tmp_path.glob("s.zarr.partial-*")):
        assert time.time() < deadline and proc.poll() is None, "collection never started"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.time() + 10
    while any(running(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    left = [w for w in workers if running(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)  # do not leave them to the next test
    tally(not left)


def test_concurrent_writers_of_one_store_both_succeed(tmp_path):
    """Two jobs writing the same store at once: neither deletes the other's unfinished copy,
    the store that remains is whole, and nothing is left behind."""
    out = tmp_path / "s.zarr"
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1] / 'scripts')!r})\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from conftest import env_config\n"
        "from forward_models.data.collect import collect\n"
        "env = env_config('forward_models/TwoPlayerPong-v0', 32, 100, 'pong')\n"
        "n = int(sys.argv[1])\n"
        f"collect(env, {str(out)!r}, n, seed=0, progress=False)\n"
    )
    # The short job finishes while the long one is still writing.
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in (400, 20)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert open_rollouts(out).n_episodes in (20, 400)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_a_failing_worker_stops_collection_with_its_traceback(tmp_path, pong_spec):
    # A valid config whose agent cannot be built: it fails in the worker, as it starts.
    agent = pong_spec.agent.model_copy(update={"kwargs": {"no_such_option": 1}})
    bad = pong_spec.model_copy(update={"agent": agent})
    with pytest.raises(RuntimeError, match="worker 0 failed(.|\n)*no_such_option"):
        collect(bad, tmp_path / "s.zarr", 3, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []  # no store, no partial copy


def test_a_worker_killed_mid_collection_is_reported(tmp_path, pong_spec, monkeypatch):
    import os
    import signal

    from forward_models.data import collect as collect_module

    def doomed(runner, seed):  # a worker whose env crashes the process outright
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(collect_module.EpisodeRunner, "rollout", doomed)
    with pytest.raises(RuntimeError, match=r"collection worker \d died \(exit code -9\)"):
        collect(pong_spec, tmp_path / "s.zarr", 3, seed=0, workers=2, progress=False)
    assert list(tmp_path.iterdir()) == []
