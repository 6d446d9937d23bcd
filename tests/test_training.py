import numpy as np
import pytest
import torch
from forward_models import models
from forward_models.data.collect import collect
from forward_models.data.windows import WindowSampler
from forward_models.data.zarr_store import open_rollouts
from forward_models.health import NonFiniteLossError
from forward_models.model_config import TrainConfig
from forward_models.progress import PROGRESS
from forward_models.training import train

CFG = {
    "arch": "rnn_deconv",
    "precondition": 2,
    "hidden": 16,
    "embed": 8,
    "encoder_width": 8,
    "decoder_channels": [16, 8, 8, 8],
}
TRAIN = TrainConfig(
    steps=20, batch_size=4, seq_len=8, log_every=5, val_every=10, checkpoint_every=10
)


@pytest.fixture(scope="module")
def store(
    tmp_path_factory,
):
    from conftest import env_config

    spec = env_config("forward_models/TwoPlayerPong-v0", 32, 40, "pong", {"stochasticity": 0.5})
    return open_rollouts(
        collect(spec, tmp_path_factory.mktemp("d") / "s.zarr", 6, seed=0, progress=False)
    )


def run(store, out, on_log=None, cfg=TRAIN):
    torch.manual_seed(0)
    model = models.build(CFG, store.frame_shape, store.n_actions)
    log = train(
        model,
        WindowSampler(store, 8, seed=0),
        WindowSampler(store, 8, seed=1),
        cfg,
        out,
        seed=0,
        device="cpu",
        on_log=on_log,
        progress=False,
    )
    return model, log


def test_log_has_train_and_validation_losses(store, tmp_path):
    _, log = run(store, tmp_path)
    assert set(log["split"]) == {"train", "val"}
    losses = log[(log.split == "train") & (log.metric == "loss")]
    assert losses["step"].tolist() == [5, 10, 15, 20] and np.isfinite(losses["value"]).all()


def test_cosine_schedule_falls_from_lr_to_zero_at_the_last_step(store, tmp_path):
    cfg = TRAIN.model_copy(update={"lr_schedule": "cosine", "lr": 0.01})
    _, log = run(store, tmp_path, cfg=cfg)
    lr = log[log.metric == "lr"].set_index("step")["value"]
    assert lr.is_monotonic_decreasing and lr.iloc[0] < 0.01 and lr.loc[20] == pytest.approx(0)
    assert lr.loc[10] == pytest.approx(0.005)  # half way: half the lr


def test_killed_job_resumes_to_identical_weights(store, tmp_path):
    straight, _ = run(store, tmp_path / "a")

    def kill(step, _):
        if step == 15:
            raise KeyboardInterrupt  # the job dies between checkpoints (step 10 and 20)

    with pytest.raises(KeyboardInterrupt):
        run(store, tmp_path / "b", on_log=kill)
    assert (tmp_path / "b" / PROGRESS).exists()
    resumed, log = run(store, tmp_path / "b")
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name, rtol=0, atol=0)
    assert log[log.metric == "loss"]["step"].min() == 5  # the log before the kill survives


def test_non_finite_loss_stops_with_a_clear_error(store, tmp_path, monkeypatch):
    model = models.build(CFG, store.frame_shape, store.n_actions)
    real = model.loss
    calls = {"n": 0}

    def poisoned(batch):
        calls["n"] += 1
        loss, logs = real(batch)
        return (loss * float("nan"), logs) if calls["n"] > 12 else (loss, logs)

    monkeypatch.setattr(model, "loss", poisoned)
    with pytest.raises(
        NonFiniteLossError, match=r"loss became non-finite at step 13.*checkpoint \(step 10\)"
    ):
        train(model, WindowSampler(store, 8), None, TRAIN, tmp_path, device="cpu", progress=False)
    assert torch.load(tmp_path / PROGRESS, weights_only=True)["step"] == 10  # last good one kept


def test_due_decides_every_step_in_one_place():
    from forward_models.training import Budget, due

    cfg, budget = TRAIN, Budget(seconds=3.0, on_clock=lambda *a: None, every=1.0)
    at = {s: due(s, 0.1 * s, cfg, budget, True, hook_at=1.0) for s in (5, 10, 20, 30)}
    assert at[5].log and not at[5].validate and not at[5].checkpoint and not at[5].stop
    assert at[10].validate and at[10].checkpoint and at[10].hook  # 1.0 s: the hook is due
    assert at[20].stop and at[20].log and at[20].validate and not at[20].checkpoint  # steps
    assert due(7, 3.0, cfg, budget, True, 9.0).stop  # the time budget, before the step count
    assert not due(7, 0.5, cfg, Budget(), True, 1.0).hook  # no hook without on_clock


def test_a_time_budget_stops_training_and_calls_its_hook_on_the_clock(store, tmp_path):
    from forward_models.training import Budget

    calls = []
    budget = Budget(seconds=1.5, every=0.5, on_clock=lambda m, *a: calls.append(a))
    torch.manual_seed(0)
    model = models.build(CFG, store.frame_shape, store.n_actions)
    cfg = TRAIN.model_copy(update={"steps": 10**9, "checkpoint_every": 10**9})
    log = train(model, WindowSampler(store, 8, seed=0), None, cfg, tmp_path, 0, "cpu",
                progress=False, budget=budget)  # fmt: skip
    steps, seconds, frames = zip(*calls, strict=True)
    assert 1.5 <= seconds[-1] < 10 and steps[-1] == log["step"].max() < 10**9
    # Once past each multiple of 0.5 s (and at the end), with the steps and frames so far.
    assert len(calls) >= 3 and list(steps) == sorted(steps) and list(frames) == sorted(frames)
    assert all(s >= 0.5 * (i + 1) for i, s in enumerate(seconds[:-1]))
