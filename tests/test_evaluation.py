from pathlib import Path

import numpy as np
import pytest
import torch
from forward_models import models
from forward_models.data.collect import collect
from forward_models.data.zarr_store import open_rollouts
from forward_models.evaluation import eval_windows, evaluate
from forward_models.floor import floor_for_env
from forward_models.frames import uint8_frames
from forward_models.leaderboard import summarize
from forward_models.metrics import step_errors

ROOT = Path(__file__).resolve().parents[1]


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


def test_ssim_in_slices_is_each_frames_own_ssim():
    """SSIM is computed a slice of frames at a time (metrics.SSIM_FRAMES): every frame keeps
    the value torchmetrics (the reference, a test dependency only) gives it alone, across slice
    edges, on noisy frames and on Pong's (flat black with a few white shapes); horizon_mse is
    step_errors' MSE."""
    from forward_models.metrics import SSIM_FRAMES, horizon_mse
    from torchmetrics.functional.image import structural_similarity_index_measure as reference

    g = torch.Generator().manual_seed(0)
    truth = torch.rand(3, SSIM_FRAMES - 1, 3, 32, 32, generator=g)
    truth[0] = (truth[0] > 0.97).float()  # sparse white squares on black, as in Pong
    pred = (truth + 0.2 * torch.randn(truth.shape, generator=g)).clamp(0, 1)
    pred[0, 0] = truth[0, 0]  # an exact step: SSIM 1
    errors = step_errors(pred, truth)
    for e, t in [(0, 0), (0, 5), (1, 1), (2, SSIM_FRAMES - 2)]:
        alone = reference(pred[e, t, None], truth[e, t, None], data_range=1.0, reduction="none")
        assert errors["ssim"][e, t] == pytest.approx(alone.item(), abs=1e-6)
    assert errors["ssim"][0, 0] == pytest.approx(1.0, abs=1e-6)
    assert len(np.unique(errors["ssim"])) == errors["ssim"].size  # no slice repeated
    assert np.allclose(horizon_mse(pred, truth), errors["mse"].mean(0))


def test_evaluate_reports_every_predictor_and_metric(store):
    model = models.build(
        {"arch": "conv_gru_residual", "precondition": 2, "channels": 8, "hidden": 8}, (3, 32, 32), 9
    )
    table, examples = evaluate(model, store, 8, 4, {"env": "pong", "model": "m", "seed": 0})
    predictors = {"model", "model_shuffled_actions", "model_one_step"}
    assert set(table["predictor"]) == predictors  # no references inside a run
    point = {"mse", "psnr", "ssim"}  # the sample scores are the open-loop predictor's only
    metrics = table.groupby("predictor")["metric"].agg(set)
    assert metrics["model"] == point | {"es", "spread", "mse_best"}
    assert metrics["model_shuffled_actions"] == metrics["model_one_step"] == point
    assert not table["reference"].any()
    assert table.groupby(["predictor", "metric"]).size().eq(4 * 8).all()  # episodes x horizons
    assert examples["prediction"].shape == (4, 8, 32, 32, 3) and examples["context"].shape[1] == 2
    s = summarize([table])
    assert {"mean", "std", "episodes"} <= set(s.columns) and (s["episodes"] == 4).all()


@pytest.mark.parametrize("arch", ["copy_last", "mean_frame"])
def test_a_reference_is_evaluated_as_a_model_with_its_flag(store, arch):
    """References go through the same code as every model, once, flagged by their family."""
    model = models.build({"arch": arch, "precondition": 3}, (3, 32, 32), 9)
    model.prepare(store)
    table, _ = evaluate(model, store, 8, 4, {"env": "pong", "model": arch, "seed": 0})
    assert set(table["predictor"]) == {"model", "model_shuffled_actions"}
    assert table["reference"].all()
    if arch == "copy_last":  # the last precondition frame, compared with each later true frame
        obs = store.array("obs")
        s = int(store.episode_starts[0])
        last, later = obs[s + 2] / 255, obs[s + 3 : s + 11] / 255
        want = ((later - last) ** 2).mean(axis=(1, 2, 3))
        got = table[(table.metric == "mse") & (table.episode == 0) & (table.predictor == "model")]
        got = got.sort_values("horizon")
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
        runs = (("good", good), ("bad", bad), ("copy_last", 0.05), ("floor", 0.004))
        for model, value in runs:
            for predictor in ("model", "model_one_step"):
                rows.append(
                    dict(
                        env="pong",
                        model=model,
                        precondition=3,
                        seed=seed,
                        reference=model in ("copy_last", "floor"),
                        floor=model == "floor",
                        predictor=predictor,
                        horizon=1,
                        metric="mse",
                        mean=value if predictor == "model" else 0.0,
                        episodes=50 - (model == "bad") * seed,  # bad's seed 2 saw 48 episodes
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
    assert np.isclose(good["x_floor"], 3.0) and np.isclose(good["db_above_floor"], 10 * np.log10(3))
    assert "3.00x (+4.8 dB)" in md and "1.00x (+0.0 dB)" in md  # the floor is 1x itself
    # The episodes each model was scored on, the fewest over its seeds.
    lines = md.splitlines()
    head = [c.strip() for c in next(x for x in lines if x.startswith("| model")).split("|")]
    row = [c.strip() for c in next(x for x in lines if x.startswith("| bad ")).split("|")]
    assert (row[head.index("seeds")], row[head.index("P")], row[head.index("episodes")]) == (
        "3",
        "3",
        "48",
    )


def test_x_floor_is_against_the_floor_at_the_models_own_precondition(tmp_path, capsys):
    """A P=2 model predicts other frames of the episode than the P=3 floor does, and sees less:
    its distance is to the floor run at P=2 (the old alignment divided by the P=3 floor)."""
    import pandas as pd
    from forward_models import config
    from forward_models.cli import main
    from forward_models.leaderboard import leaderboard

    cfg = config.load_yaml(ROOT / "config/config.yaml")  # the default: one P=2 family
    ps = {m: c.precondition for m, c in cfg.models.items()}
    assert ps["frame_transformer_dense"] == 2 and ps["floor"] == 3 and ps["floor_p2"] == 2
    assert cfg.floor_model("pong", 2) == "floor_p2" and cfg.floor_model("pong", 3) == "floor"
    runs = {"floor": (3, 0.001), "floor_p2": (2, 0.003), "p3": (3, 0.004), "p2": (2, 0.006)}
    rows = pd.DataFrame(
        [dict(env="pong", model=m, precondition=p, seed=0, reference=m.startswith("floor"),
              floor=m.startswith("floor"), predictor="model", horizon=1, metric="mse",
              mean=v, episodes=50) for m, (p, v) in runs.items()]
    )  # fmt: skip
    board = leaderboard(rows, [1]).set_index("model")["x_floor"]
    assert np.isclose(board["p2"], 2.0) and np.isclose(board["p3"], 4.0)  # not 6.0 for p2
    assert np.isclose(board["floor"], 1.0) and np.isclose(board["floor_p2"], 1.0)
    rows.to_csv(tmp_path / "summary.csv", index=False)
    main(["results-table", str(tmp_path / "summary.csv"), "--horizons", "1"])
    table = {line.split("|")[1].strip(): line.split("|")[-2].strip()
             for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}  # fmt: skip
    assert table["p2"] == "**2.00**" and table["p3"] == "4.00"


def test_without_a_floor_the_distance_to_it_is_empty_not_invented():
    import pandas as pd
    from forward_models.leaderboard import leaderboard, leaderboard_markdown

    rows = [
        dict(env="cartpole", model="m", precondition=3, seed=0, reference=False, floor=False,
             predictor="model", horizon=1, metric="mse", mean=0.01, episodes=50)
    ]  # fmt: skip
    board = leaderboard(pd.DataFrame(rows), [1])
    assert board["x_floor"].isna().all() and "x floor" not in leaderboard_markdown(board)


def test_no_multiple_of_an_exact_floor_is_shown():
    """CubeCrash's floor is exact (0 up to float rounding): a model's MSE, ES or spread over it
    is no number (it read 99442x and, for the ES, -302x) and the leaderboard leaves it out."""
    import pandas as pd
    from forward_models import metrics
    from forward_models.leaderboard import leaderboard, leaderboard_markdown

    assert metrics.x_floor(0.002, 0.001) == 2 and np.isnan(metrics.x_floor(0.002, 2e-10))
    h = [1, 8]
    both = metrics.x_floor(pd.Series([0.002, 0.004], h), pd.Series([0.001, -1e-12], h))
    assert both[1] == 2 and np.isnan(both[8]) and list(both.index) == [1, 8]
    assert np.isnan(metrics.spread_ratio(np.array([0.0]), np.array([0.0]))).all()
    rows = [
        dict(env="cube", model=m, precondition=3, seed=0, reference=m == "floor",
             floor=m == "floor", predictor="model", horizon=1, metric="mse", mean=v, episodes=71)
        for m, v in (("floor", 2e-10), ("m", 2e-5))
    ]  # fmt: skip
    board = leaderboard(pd.DataFrame(rows), [1])
    assert board["x_floor"].isna().all() and "x floor" not in leaderboard_markdown(board)


def test_the_results_table_is_generated_from_a_summary_floor_first_best_in_bold(tmp_path, capsys):
    import pandas as pd
    from forward_models.cli import main

    rows = [
        dict(env="pong", model=m, seed=seed, reference=m in ("floor", "copy_last"),
             floor=m == "floor", predictor=p, horizon=h, metric="mse",
             mean=(v + 0.001 * seed) * h if p == "model" else 9.0)
        for m, v in (("floor", 0.001), ("copy_last", 0.002), ("good", 0.003), ("bad", 0.03))
        for seed in (0, 1)
        for h in (1, 2, 4)
        for p in ("model", "model_shuffled_actions")
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "summary.csv", index=False)
    main(["results-table", str(tmp_path / "summary.csv"), "--horizons", "1", "4"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [line.split("|")[1].strip() for line in lines] == [
        "*floor* (best achievable)",
        "copy_last (reference)",
        "good",
        "bad",
    ]
    good = [c.strip() for c in lines[2].split("|")[2:-1]]
    # seeds, h=1 (mean of 0.003 and 0.004), h=4, mean over h=1, 2, 4, and x the floor's mean
    assert good == ["2", "**0.0035**", "**0.0140**", "**0.0082**", "**2.33**"]
    assert "**" not in lines[1]  # a reference is never the best learned value


def test_training_figures_of_a_config_of_references_only_say_why_they_are_empty(tmp_path):
    import pandas as pd
    from conftest import tally
    from forward_models.figures import error_vs_compute, training_curves

    logs = pd.DataFrame(columns=["step", "split", "metric", "value", "env", "model", "seed"])
    summary = pd.DataFrame(
        [dict(env="pong", model="copy_last", seed=0, reference=True, floor=False,
              predictor="model", horizon=1, metric="mse", mean=0.02)]
    )  # fmt: skip
    training_curves(logs, tmp_path / "curves.png")
    error_vs_compute(logs, summary, tmp_path / "compute.png")
    tally(all((tmp_path / f).read_bytes()[:4] == b"\x89PNG" for f in ("curves.png", "compute.png")))


def test_fewer_long_enough_episodes_than_asked_are_said_and_counted(store, caplog):
    from conftest import tally
    from forward_models.evaluation import run_metrics

    model = models.build({"arch": "copy_last", "precondition": 3}, (3, 32, 32), 9)
    with caplog.at_level("WARNING"):
        table, _ = evaluate(model, store, 8, 100, {"env": "pong", "model": "c", "seed": 0})
    n = table["episode"].nunique()
    warned = any(f"only {n} of the 100 test episodes" in r.getMessage() for r in caplog.records)
    tally(n < 100 and warned and run_metrics(table)["eval/episodes"] == n)


def test_error_figure_draws_references_dashed(tmp_path):
    import pandas as pd
    from forward_models.figures import error_vs_horizon

    rows = [
        dict(env="pong", model=m, seed=0, reference=m != "rnn", floor=m == "floor",
             predictor="model", horizon=h, metric="mse", mean=v * h)
        for m, v in (("rnn", 0.01), ("copy_last", 0.05), ("floor", 0.002))
        for h in (1, 2)
    ]  # fmt: skip
    error_vs_horizon(pd.DataFrame(rows), tmp_path / "e.png")
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


def test_the_floor_as_a_model_equals_the_floor_computation_and_survives_a_checkpoint(
    store, tmp_path
):
    model = models.build({"arch": "floor", "precondition": 3}, (3, 32, 32), 9)
    model.prepare(store)
    models.save(model, tmp_path / "floor.pt")
    back = models.load(tmp_path / "floor.pt")  # the env it replays travels in the checkpoint
    table, _ = evaluate(back, store, 8, 4, {"env": "pong", "model": "floor", "seed": 0})
    assert table["reference"].all() and table["floor"].all()
    open_loop = table[(table.metric == "mse") & (table.predictor == "model")]
    got = open_loop.pivot(index="episode", columns="horizon", values="value")
    batch = eval_windows(store, 3, 8, 4)  # evaluation's windows, through the floor package
    context = uint8_frames(batch["obs"][:, :3])
    truth = batch["obs"][:, 3:].permute(0, 1, 3, 4, 2).numpy()
    env = store.attrs["env"]
    pred = floor_for_env(
        env["id"], env.get("kwargs"), 32, context, batch["action"][:, :-1].numpy(), 8
    )
    want = ((pred - truth) ** 2).reshape(4, 8, -1).mean(-1)
    assert np.allclose(got.to_numpy(), np.maximum(want, 1e-10), rtol=1e-5)
    assert (want > 0).any()  # the hidden heading makes some future uncertain


def test_the_floor_is_exactly_zero_when_nothing_is_hidden(tmp_path):
    from conftest import env_config

    spec = env_config(
        "forward_models/TwoPlayerPongFixed-v0", 32, 60, "pong", {"stochasticity": 0.3}
    )
    fixed = open_rollouts(collect(spec, tmp_path / "f.zarr", 4, seed=0, progress=False))
    model = models.build({"arch": "floor", "precondition": 3}, (3, 32, 32), 9)
    model.prepare(fixed)
    table, _ = evaluate(model, fixed, 8, 4, {"env": "fixed", "model": "floor", "seed": 0})
    mse = table[(table.metric == "mse") & (table.predictor == "model")]["value"]
    assert np.allclose(mse, 1e-10)  # MSE 0 (clamped for PSNR)


def test_controllability_is_zero_for_a_model_that_ignores_its_actions(store):
    """Fed another episode's actions, copy-last predicts the same (delta 0); the floor, whose
    paddles follow the actions, gets worse."""
    from forward_models.leaderboard import leaderboard, summarize

    tables = []
    for arch in ("copy_last", "floor"):
        model = models.build({"arch": arch, "precondition": 3}, (3, 32, 32), 9)
        model.prepare(store)
        labels = {"env": "pong", "model": arch, "seed": 0}
        tables.append(evaluate(model, store, 8, 4, labels)[0])
    board = leaderboard(summarize(tables), [1, 4, 8]).set_index(["model", "horizon"])
    assert (board.loc["copy_last", "delta_shuffled"] == 0).all()
    assert (board.loc["floor", "delta_shuffled"] > 0).any()


def test_no_learned_model_beats_the_floor_on_the_same_episodes(store, tmp_path):
    from forward_models.data.windows import WindowSampler
    from forward_models.model_config import TrainConfig
    from forward_models.training import train

    labels = {"env": "pong", "seed": 0}
    learned = models.build(
        {"arch": "conv_gru_residual", "precondition": 3, "channels": 8, "hidden": 8}, (3, 32, 32), 9
    )
    cfg = TrainConfig(steps=30, batch_size=4, seq_len=12, lr=3e-3)
    train(
        learned, WindowSampler(store, 12, seed=0), None, cfg, tmp_path, device="cpu", progress=False
    )
    best = models.build({"arch": "floor", "precondition": 3}, (3, 32, 32), 9)
    best.prepare(store)
    mse = {}
    for name, model in (("learned", learned), ("floor", best)):
        table, _ = evaluate(model, store, 8, 4, {**labels, "model": name})
        rows = table[(table.metric == "mse") & (table.predictor == "model")]
        mse[name] = rows.groupby("horizon")["value"].mean()
    assert (mse["floor"] <= mse["learned"]).all()
