import numpy as np
import pytest
import torch
from forward_models import models
from forward_models.data.collect import collect
from forward_models.data.zarr_store import open_rollouts
from forward_models.evaluation import evaluate, step_errors, summarize


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from forward_models.data.collect import EnvSpec

    spec = EnvSpec("forward_models/TwoPlayerPong-v0", 32, {}, 60, "pong", {"stochasticity": 0.3})
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
    table, examples = evaluate(
        model, store, 8, 4, {"env": "pong", "model": "m", "seed": 0}, store.array("obs")
    )
    assert set(table["predictor"]) == {"model", "model_one_step", "copy_last", "mean_frame"}
    assert set(table["metric"]) == {"mse", "psnr", "ssim"}
    assert table.groupby(["predictor", "metric"]).size().eq(4 * 8).all()  # episodes x horizons
    assert examples["prediction"].shape == (4, 8, 32, 32, 3) and examples["context"].shape[1] == 2
    s = summarize([table])
    assert {"mean", "std", "episodes"} <= set(s.columns) and (s["episodes"] == 4).all()


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
    from forward_models.evaluation import leaderboard, leaderboard_markdown

    rows = []
    for seed, (good, bad) in enumerate([(0.010, 0.030), (0.012, 0.034), (0.014, 0.032)]):
        for model, value in (("good", good), ("bad", bad)):
            for predictor, mean in (("model", value), ("copy_last", 0.05)):
                rows.append(
                    dict(
                        env="pong",
                        model=model,
                        seed=seed,
                        predictor=predictor,
                        horizon=1,
                        metric="mse",
                        mean=mean,
                    )
                )
    board = leaderboard(pd.DataFrame(rows), [1])
    good = board[board.model == "good"].iloc[0]
    assert good["seeds"] == 3 and np.isclose(good["mean"], 0.012)
    assert np.isclose(
        good["ci95"], 4.302652729911275 * 0.002 / np.sqrt(3)
    )  # t(0.975, 2) * sd / sqrt(n)
    assert (
        board[board.model == "copy_last"].iloc[0]["seeds"] == 3
    )  # counted once per seed, not per model
    md = leaderboard_markdown(board)
    assert md.index("| good |") < md.index("| bad |") < md.index("| copy_last |")


def test_a_model_that_is_a_baseline_is_drawn_once():
    import pandas as pd
    from forward_models.figures import with_baselines

    rows = []
    for model, own in (("rnn", 0.01), ("copy_last", 0.05)):  # copy_last configured as a model
        for predictor, mean in (("model", own), ("copy_last", 0.05), ("mean_frame", 0.04)):
            for horizon in (1, 2):
                rows.append(
                    dict(
                        env="pong",
                        model=model,
                        seed=0,
                        predictor=predictor,
                        horizon=horizon,
                        metric="mse",
                        mean=mean * horizon,
                    )
                )
    lines = with_baselines(pd.DataFrame(rows))
    assert sorted(lines["model"].unique()) == ["copy_last", "mean training frame", "rnn"]
    assert len(lines) == 6  # 3 lines x 2 horizons: the copy-last baseline is not repeated
