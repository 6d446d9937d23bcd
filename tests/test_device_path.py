"""The GPU training path, tested on the CPU: device-resident windows, bf16 autocast, compile.

A GPU makes these fast; what they compute is checked here, where tests run (no GPU needed)."""

import numpy as np
import pytest
import torch
from conftest import LEARNED, env_config, small, window
from forward_models.data.collect import collect
from forward_models.data.windows import DeviceWindows, WindowSampler
from forward_models.data.zarr_store import open_rollouts
from forward_models.devices import autocast, compiled_loss
from forward_models.model_config import TrainConfig
from forward_models.training import train


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    spec = env_config("forward_models/TwoPlayerPong-v0", 32, 40, "pong", {"stochasticity": 0.5})
    path = collect(spec, tmp_path_factory.mktemp("d") / "s.zarr", 8, seed=0, progress=False)
    return open_rollouts(path)


@pytest.mark.parametrize("from_start", [0.0, 0.5])
def test_device_windows_equal_the_host_samplers_for_the_same_seed(store, from_start):
    episodes = np.arange(1, store.n_episodes, 2)
    host = WindowSampler(store, 12, episodes, seed=3, from_start=from_start)
    device = DeviceWindows(store, 12, episodes, seed=3, device="cpu", from_start=from_start)
    for _ in range(3):  # the generators stay in step, batch after batch
        a, b = host.sample(5), device.sample(5)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert device.sample(4)["obs"].device == torch.device("cpu")


@pytest.mark.parametrize("arch", LEARNED)
def test_every_family_runs_under_bf16_autocast(arch):
    torch.manual_seed(0)
    model = small(arch)
    with autocast(torch.device("cpu"), "bf16"):
        loss, logs = model.loss(window())
    loss.backward()
    assert torch.isfinite(loss) and torch.is_tensor(logs["loss"])  # logs stay on the device
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_a_bf16_training_run_stays_finite_and_learns(store, tmp_path):
    torch.manual_seed(0)
    model = small("conv_gru_residual", precondition=2)
    cfg = TrainConfig(steps=30, batch_size=4, seq_len=6, lr=3e-3, precision="bf16", log_every=5)
    log = train(model, WindowSampler(store, 6), None, cfg, tmp_path, device="cpu", progress=False)
    loss = log[(log.split == "train") & (log.metric == "loss")]["value"].to_numpy()
    assert np.isfinite(loss).all() and loss[-1] < loss[0]


@pytest.mark.slow
def test_compiled_and_eager_losses_agree():
    torch.manual_seed(0)
    model = small("rnn_dense")
    batch = window()
    eager, _ = model.loss(batch)
    compiled, logs = compiled_loss(model, "default")(batch)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-6)
    assert torch.is_tensor(logs["loss"])
