import numpy as np
import pytest
import torch
from forward_models import models
from forward_models.data.collect import collect
from forward_models.data.zarr_store import open_rollouts
from forward_models.evaluation import evaluate, step_errors
from forward_models.leaderboard import summarize


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from conftest import env_config

    spec = env_config("forward_models/TwoPlayerPong-v0", 32, 60, "pong", {"stochasticity": 0.3})
    return open_rollouts(
        collect(spec, tmp_path_factory.mktemp("e") / "s.zarr", 6, seed=0, progress=False)
    )


def test_metrics_of_a_perfect_and_a_wrong_prediction():
    truth = torch.rand(2, 3, 3, 32, 32)
    perfect, wrong = step_errors(truth, truth), step_errors(1 - truth, truth)
    assert np.allclose(perfect["ssim"], 1) and (perfect["psnr"] == 100).all()
    assert (wrong["mse"] > 0.1).all() and (wrong["ssim"] < 0.5).all()


def test_evaluate_reports_every_predictor_and_metric(store):
    model = models.build(
        {"arch": "conv_gru_residual", "precondition": 2, "channels": 8, "hidden": 8}, (3, 32, 32), 9
    )
    table, examples = evaluate(model, store, 8, 4, {"env": "pong", "model": "m", "seed": 0})
    assert set(table["predictor"]) == {"model", "model_one_step"}  # no references inside a run
    assert set(table["metric"]) == {"mse", "psnr", "ssim"} and not table["reference"].any()
    assert table.groupby(["predictor", "metric"]).size().eq(4 * 8).all()  # episodes x horizons
    assert examples["prediction"].shape == (4, 8, 32, 32, 3) and examples["context"].shape[1] == 2
    s = summarize([table])
    assert {"mean", "std", "episodes"} <= set(s.columns) and (s["episodes"] == 4).all()


@pytest.mark.parametrize("arch", ["copy_last", "mean_frame"])
def test_a_reference_is_evaluated_as_a_model_with_its_flag(store, arch):
    """References go through the same code as every model, once, flagged by their family."""
    model = models.build({"arch": arch, "precondition": 3}, (3, 32, 32), 9)
    model.prepare(store.array("obs"))
    table, _ = evaluate(model, store, 8, 4, {"env": "pong", "model": arch, "seed": 0})
    assert set(table["predictor"]) == {"model"} and table["reference"].all()
    if arch == "copy_last":  # the last precondition frame, compared with each later true frame
        obs = store.array("obs")
        s = int(store.episode_starts[0])
        last, later = obs[s + 2] / 255, obs[s + 3 : s + 11] / 255
        want = ((later - last) ** 2).mean(axis=(1, 2, 3))
        got = table[(table.metric == "mse") & (table.episode == 0)].sort_values("horizon")
        assert np.allclose(got["value"], np.maximum(want, 1e-10), rtol=1e-5)


def test_one_step_error_is_not_worse_than_open_loop_for_copying(store):
    """A copy-prior model at init: reading true frames (one step) beats reading its own (open loop)."""
    torch.manual_seed(0)
    model = models.build(
        {"arch": "conv_gru_residual", "precondition": 2, "channels": 8, "hidden": 8}, (3, 32, 32), 9
    )
    table, _ = evaluate(model, store, 8, 4, {"env": "pong"})
    mse = table[table.metric == "mse"].groupby(["predictor", "horizon"])["value"].mean()
    assert mse["model_one_step"][8] <= mse["model"][8]


def test_leaderboard_interval_over_seeds_and_order():
    import pandas as pd
    from forward_models.leaderboard import leaderboard, leaderboard_markdown

    rows = []
    for seed, (good, bad) in enumerate([(0.010, 0.030), (0.012, 0.034), (0.014, 0.032)]):
        for model, value in (("good", good), ("bad", bad), ("copy_last", 0.05)):
            for predictor in ("model", "model_one_step"):
                rows.append(
                    dict(
                        env="pong",
                        model=model,
                        seed=seed,
                        reference=model == "copy_last",
                        predictor=predictor,
                        horizon=1,
                        metric="mse",
                        mean=value if predictor == "model" else 0.0,
                    )
                )
    board = leaderboard(pd.DataFrame(rows), [1])
    good = board[board.model == "good"].iloc[0]
    assert good["seeds"] == 3 and np.isclose(good["mean"], 0.012)  # open loop, not one step
    assert np.isclose(good["ci95"], 4.302652729911275 * 0.002 / np.sqrt(3))  # t(0.975, 2) sd/√n
    assert board[board.model == "copy_last"].iloc[0]["seeds"] == 3
    md = leaderboard_markdown(board)
    assert md.index("| good ") < md.index("| bad ") < md.index("| copy_last (reference) ")
    assert "0.0120 ± " in md


def test_error_figure_draws_references_dashed(tmp_path):
    import pandas as pd
    from forward_models.figures import error_vs_horizon

    rows = [
        dict(env="pong", model=m, seed=0, reference=m == "copy_last", predictor="model",
             horizon=h, metric="mse", mean=v * h)
        for m, v in (("rnn", 0.01), ("copy_last", 0.05))
        for h in (1, 2)
    ]  # fmt: skip
    error_vs_horizon(pd.DataFrame(rows), tmp_path / "e.png")
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
