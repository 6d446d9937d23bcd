import numpy as np
import pytest
import torch
from forward_models import models
from forward_models.data.collect import run_episode
from forward_models.models import REGISTRY
from forward_models.models.base import split_window

FRAME = (3, 16, 16)
LEARNED = [arch for arch, cls in REGISTRY.items() if arch != "copy_last"]


def small(arch, **over):
    cfg = {"arch": arch, "precondition": 2}
    if arch == "rnn_deconv":
        cfg.update(hidden=16, embed=8, encoder_width=8, decoder_channels=[16, 8, 8])
    cfg.update(over)
    return models.build(cfg, FRAME, n_actions=9)


def window(b=4, length=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.rand(b, length, *FRAME, generator=g),
        "action": torch.randint(0, 9, (b, length), generator=g),
        "mask": torch.ones(b, length, dtype=torch.bool),
    }


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_rollout_shapes_and_range(arch):
    m = small(arch).eval()
    ctx, actions = torch.rand(3, 2, *FRAME), torch.randint(0, 9, (3, 11))
    out = m.rollout(ctx, actions)
    assert out.shape == (3, 11, *FRAME)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_stepping_agrees_with_rollout(arch):
    """Play (init_state/step) and training/evaluation (rollout) are one computation."""
    m = small(arch, **({"dilated_layers": 2, "skip": 3} if arch == "rnn_deconv" else {})).eval()
    ctx, actions = torch.rand(2, 2, *FRAME), torch.randint(0, 9, (2, 10))
    state, frames = m.init_state(ctx), []
    for t in range(10):
        frame, state = m.step(state, actions[:, t])
        frames.append(frame)
    torch.testing.assert_close(
        torch.stack(frames, 1), m.rollout(ctx, actions), atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("arch", LEARNED)
def test_gradients_reach_every_parameter(arch):
    m = small(arch, dilated_layers=1, skip=2).train()
    loss, logs = m.loss(window())
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"
    assert set(logs) >= {"loss"}


@pytest.mark.parametrize("arch", LEARNED)
def test_prediction_i_depends_on_action_i_and_not_later(arch):
    """Frame t+1 comes from the state after action t: not before it, not from later actions."""
    m = small(arch).eval()
    ctx, actions = torch.rand(1, 2, *FRAME), torch.zeros(1, 6, dtype=torch.long)
    base = m.rollout(ctx, actions)
    changed = actions.clone()
    changed[0, 3] = 8
    out = m.rollout(ctx, changed)
    torch.testing.assert_close(out[:, :3], base[:, :3])  # earlier predictions cannot see action 3
    assert (out[:, 3] - base[:, 3]).abs().max() > 1e-6  # prediction 3 is the effect of action 3


def test_split_window_alignment():
    obs = torch.arange(6.0).view(1, 6, 1, 1, 1).expand(1, 6, *FRAME)
    batch = {
        "obs": obs,
        "action": torch.arange(6).view(1, 6) + 10,
        "mask": torch.ones(1, 6, dtype=torch.bool),
    }
    ctx, act, target, mask = split_window(batch, precondition=2)
    assert ctx[0, :, 0, 0, 0].tolist() == [0, 1]
    assert act[0].tolist() == [11, 12, 13, 14]  # a[P-1 .. L-2]
    assert target[0, :, 0, 0, 0].tolist() == [2, 3, 4, 5]  # o[P .. L-1]: target i follows action i


@pytest.mark.parametrize("arch", LEARNED)
def test_learns_frames_that_only_the_previous_action_explains(arch):
    """Every frame o[t+1] shows the action a[t] as a brightness. A model misaligned by one step
    (predicting the present from the present, the thesis' worst bug) cannot fit this."""
    torch.manual_seed(0)
    m = small(arch, train={"loss": "mse"}).train()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(150):
        actions = torch.randint(0, 9, (16, 8))
        obs = (
            (actions.float() / 8)
            .roll(1, dims=1)[..., None, None, None]
            .expand(16, 8, *FRAME)
            .clone()
        )
        batch = {"obs": obs, "action": actions, "mask": torch.ones(16, 8, dtype=torch.bool)}
        loss, _ = m.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01, loss.item()  # misaligned, the floor is the action variance ~0.1


@pytest.mark.parametrize("arch", LEARNED)
def test_overfits_one_batch_of_pong(arch, pong_spec):
    ep = run_episode(pong_spec, np.random.SeedSequence(0))
    obs = torch.from_numpy(ep["obs"][:8]).permute(0, 3, 1, 2).float() / 255
    batch = {
        "obs": obs[None],
        "action": torch.from_numpy(ep["action"][:8])[None],
        "mask": torch.ones(1, 8, dtype=torch.bool),
    }
    torch.manual_seed(0)
    cfg = {"arch": arch, "precondition": 2}
    if arch == "rnn_deconv":
        cfg.update(hidden=32, embed=8, encoder_width=8, decoder_channels=[32, 16, 16, 8])
    m = models.build(cfg, (3, 32, 32), 9).train()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = m.loss(batch)[0].item()
    for _ in range(150):
        loss, _ = m.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first, (first, loss.item())


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_save_load_round_trip(tmp_path, arch):
    m = small(arch).eval()
    models.save(m, tmp_path / "m.pt")
    back = models.load(tmp_path / "m.pt")
    ctx, actions = torch.rand(2, 2, *FRAME), torch.randint(0, 9, (2, 5))
    torch.testing.assert_close(back.rollout(ctx, actions), m.rollout(ctx, actions))
    assert back.cfg == m.cfg


def test_masked_steps_do_not_count():
    m = small("rnn_deconv").eval()
    batch = window()
    loss_all, _ = m.loss(batch)
    batch["obs"][:, -1] = 1 - batch["obs"][:, -1]  # corrupt the last target...
    batch["mask"][:, -1] = False  # ...and mask it out
    torch.testing.assert_close(m.loss(batch)[0], loss_all * 0 + m.loss(batch)[0])
    masked = m.loss(batch)[0]
    batch["mask"][:, -1] = True
    assert not torch.isclose(masked, m.loss(batch)[0])


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model arch 'rnn_deconf'; expected one of"):
        models.build({"arch": "rnn_deconf"}, FRAME, 9)
