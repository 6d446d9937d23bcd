"""Futures as distributions: the sample scores, the floor's posterior samples, and sampling
families, scored through the evaluation code the workflow runs."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import env_config, tiny
from forward_models import metrics, models
from forward_models.data.collect import collect
from forward_models.data.zarr_store import open_rollouts
from forward_models.evaluation import evaluate, run_metrics
from forward_models.leaderboard import leaderboard_markdown, leaderboards, summarize

LABELS = {"env": "pong", "seed": 0}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    spec = env_config("forward_models/TwoPlayerPong-v0", 32, 60, "pong", {"stochasticity": 0.3})
    path = tmp_path_factory.mktemp("futures") / "s.zarr"
    return open_rollouts(collect(spec, path, 8, seed=0, progress=False))


def model_of(arch, store, **over):
    cfg = {"arch": arch, "precondition": 3, **tiny(arch), **over}
    model = models.build(cfg, store.frame_shape, store.n_actions)
    model.prepare(store)
    return model


def test_the_energy_score_of_a_point_prediction_is_its_rmse():
    pred, truth = torch.rand(3, 5, 3, 8, 8), torch.rand(3, 5, 3, 8, 8)
    got = metrics.sample_scores(pred[:, None].expand(-1, 4, -1, -1, -1, -1), truth)
    rmse = (pred - truth).pow(2).flatten(2).mean(-1).sqrt().numpy()
    assert np.allclose(got["es"], rmse, rtol=1e-5) and (got["spread"] == 0).all()
    assert np.allclose(got["mse_best"], rmse**2, rtol=1e-5)


def test_on_two_equally_likely_futures_a_true_sampler_scores_a_quarter_and_the_midpoint_half():
    """Exact expectations, every (truth, sample, sample) draw enumerated: a sampler of the two
    modes scores d(A, B) / 4, their midpoint (the MSE-optimal point) d(A, B) / 2."""
    a, b = torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.6)
    d = float(metrics.rms_distance(a, b))
    sampled, mid = [], []
    for y, s1, s2 in itertools.product((a, b), repeat=3):
        samples = torch.stack([s1, s2])[None, :, None]  # (E=1, K=2, T=1, C, H, W)
        sampled.append(metrics.sample_scores(samples, y[None, None])["es"].item())
        midpoint = ((a + b) / 2)[None, None, None]
        mid.append(metrics.sample_scores(midpoint, y[None, None])["es"].item())
    assert np.isclose(np.mean(sampled), d / 4, rtol=1e-5)
    assert np.isclose(np.mean(mid), d / 2, rtol=1e-5)


def test_the_floors_posterior_samples_score_below_its_mean_on_pong_test_episodes(store):
    table, examples = evaluate(model_of("floor", store), store, 8, 6, {**LABELS, "model": "f"})
    run = table[table.predictor == "model"].groupby(["metric", "horizon"])["value"].mean()
    rmse_of_mean = table[(table.predictor == "model") & (table.metric == "mse")]
    rmse_of_mean = np.sqrt(rmse_of_mean.groupby("horizon")["value"].mean())
    assert run["es"].mean() < np.sqrt(run["mse"]).mean()  # the ES of its mean is its RMSE
    assert (run["spread"] > 0).all()  # the hidden heading leaves futures open
    assert run["es"].mean() < rmse_of_mean.mean()
    # Every sample is a frame the env renders: black and white, never the mean's grey.
    assert set(np.unique(examples["samples"])) <= {0, 255}


def test_a_deterministic_familys_spread_is_exactly_zero_and_its_es_its_rmse(store):
    table, _ = evaluate(model_of("rnn_deconv", store), store, 8, 4, {**LABELS, "model": "r"})
    model = table[table.predictor == "model"].pivot_table(
        index=["episode", "horizon"], columns="metric", values="value"
    )
    assert (model["spread"] == 0).all()
    assert np.allclose(model["es"], np.sqrt(model["mse"]), rtol=1e-5)
    assert np.allclose(model["mse_best"], model["mse"])


def test_a_sampling_family_draws_the_same_futures_from_the_same_seed(store):
    model = model_of("rssm", store)
    first, ex1 = evaluate(model, store, 6, 4, {**LABELS, "model": "s"}, samples=4)
    again, ex2 = evaluate(model, store, 6, 4, {**LABELS, "model": "s"}, samples=4)
    other, ex3 = evaluate(model, store, 6, 4, {**LABELS, "seed": 1, "model": "s"}, samples=4)
    pd.testing.assert_frame_equal(first, again)
    assert np.array_equal(ex1["samples"], ex2["samples"]) and ex1["samples"].shape[0] == 4
    assert not np.array_equal(ex1["samples"], ex3["samples"])
    spread = first[(first.predictor == "model") & (first.metric == "spread")]["value"]
    assert (spread > 0).all()  # an untrained sampler's futures differ


def test_x_es_floor_and_the_spread_ratio_in_mlflow_and_the_leaderboard(store):
    floor_table, _ = evaluate(model_of("floor", store), store, 8, 4, {**LABELS, "model": "floor"})
    tables = [floor_table]
    for arch in ("rssm", "copy_last"):
        tables.append(evaluate(model_of(arch, store), store, 8, 4, {**LABELS, "model": arch})[0])
    logged = run_metrics(tables[1], floor_table)
    assert {"eval/es_h1", "eval/x_es_floor_h8", "eval/spread_h1", "eval/mse_best_h1"} <= set(logged)
    assert logged["eval/spread_h1"] > 0
    board = leaderboards(summarize(tables), [1, 8]).set_index(["metric", "model", "horizon"])
    board = board.sort_index()
    assert np.allclose(board.loc[("es", "floor"), "x_floor"], 1)
    assert np.allclose(board.loc[("es", "floor"), "spread_ratio"], 1)
    assert (board.loc[("es", "copy_last"), "spread_ratio"] == 0).all()
    assert (board.loc[("es", "rssm"), "spread_ratio"] > 0).all()
    md = leaderboard_markdown(board.reset_index())
    assert "energy score" in md and "h=8 x ES floor" in md and "h=1 spread" in md
