"""train_model: reproducible, early-stopping, purged spans, and blind to everything at or after train_end."""

import re

import numpy as np
import pandas as pd
import pytest
import torch

from data_feeds import DataError
from strategies.lstm.config import ModelConfig
from strategies.lstm.features import compute_features, warmup_bars
from strategies.lstm.spans import plan_spans
from strategies.lstm.loop import EarlyStopping
from strategies.lstm.train import train_model, training_data_hash
from conftest import btc_1h_early_2023

TRAIN_END = pd.Timestamp("2023-02-10", tz="UTC")
TINY = ModelConfig(window=8, hidden=8, train_bars=400, val_bars=120, epochs=2, batch_size=64, lr=0.01)
COST = 0.001


market = btc_1h_early_2023


def train(cfg=TINY, candles=None, funding=None, **kw):
    c, f = market()
    return train_model(c if candles is None else candles, f if funding is None else funding, cfg, cost=COST,
                       train_end=TRAIN_END, **kw)


def states_equal(a, b) -> bool:
    sa, sb = a.model.state()[0], b.model.state()[0]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_gives_identical_weights_and_another_seed_does_not():
    assert states_equal(train(), train())
    assert not states_equal(train(), train(TINY.replace(seed=7)))


def test_training_leaves_global_rng_and_thread_count_as_they_were():
    threads = torch.get_num_threads()
    rng = torch.random.get_rng_state()
    train(TINY.replace(threads=2 if threads == 1 else 1))
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_progress_gets_one_line_per_epoch():
    lines = []
    train(progress=lines.append)
    assert len(lines) == 2
    pattern = r"epoch 2/2  train loss \d\.\d{4}  val loss \d\.\d{4}  val acc \d+\.\d%  \(\d+\.\d s\)"
    assert re.fullmatch(pattern, lines[1])


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    stopper = EarlyStopping(patience=2)
    assert [stopper.update(e, loss) for e, loss in enumerate([1.0, 0.9, 0.95, 0.93], start=1)] == [
        (True, False), (True, False), (False, False), (False, True)]
    assert (stopper.best_epoch, stopper.best_loss) == (2, 0.9)


def test_training_stops_early_and_returns_the_best_epochs_weights():
    cfg = TINY.replace(epochs=60, patience=2, lr=0.03, class_weighting=False)
    trained = train(cfg)
    run = trained.meta["training"]
    assert run["epochs_run"] < 60
    assert run["best_epoch"] == run["epochs_run"] - 2
    best = run["history"][run["best_epoch"] - 1]["val_loss"]
    assert trained.meta["validation"]["log_loss"] == pytest.approx(best, abs=1e-5)
    assert not trained.model.net.training


def test_purge_keeps_every_label_inside_its_span():
    candles, _ = market()
    plan = plan_spans(candles.index, TRAIN_END, TINY, warmup_bars(TINY.features), pd.Timedelta(hours=1))
    last_open_read = lambda ends: ends.max() + 1 + TINY.horizon  # noqa: E731  label of t reads open[t+1+h]
    assert last_open_read(plan.train_ends) == plan.val_start - 1
    assert last_open_read(plan.val_ends) == plan.end - 1
    assert candles.index[plan.end] == TRAIN_END
    assert len(plan.train_ends) == TINY.train_bars - TINY.horizon - 1
    assert len(plan.val_ends) == TINY.val_bars - TINY.horizon - 1


def test_nothing_at_or_after_train_end_changes_the_model():
    candles, funding = market()
    base = train()
    future = candles.copy()
    future.loc[future.index >= TRAIN_END, ["open", "high", "low", "close"]] *= 1.7
    future.loc[future.index >= TRAIN_END, "volume"] *= 9.0
    later_funding = funding.copy()
    later_funding.loc[later_funding.index > TRAIN_END, "funding_rate"] = 0.003
    other = train(candles=future, funding=later_funding)
    assert states_equal(base, other) and other.data_hash == base.data_hash
    assert other.meta["validation"] == base.meta["validation"]


def test_the_bar_just_before_train_end_does_reach_the_last_validation_label():
    candles, _ = market()
    base = train()
    changed = candles.copy()
    changed.loc[TRAIN_END - pd.Timedelta(hours=1), "open"] *= 1.5      # read by the last validation label
    changed.loc[TRAIN_END - pd.Timedelta(hours=1), "high"] *= 1.5
    other = train(candles=changed)
    assert other.data_hash != base.data_hash
    assert other.meta["validation"]["label_balance"] != base.meta["validation"]["label_balance"]


def test_scaler_stats_come_from_the_training_span_only():
    candles, funding = market()
    trained = train()
    start, end = trained.meta["spans"]["train"]
    feats = compute_features(candles, funding, TINY.features)
    rows = feats[(feats.index >= pd.Timestamp(start)) & (feats.index < pd.Timestamp(end))]
    assert len(rows) == TINY.train_bars
    np.testing.assert_allclose(trained.scaler.mean, rows.mean().to_numpy(), rtol=1e-9, atol=1e-15)


def test_metadata_records_spans_hash_versions_metrics_and_rule():
    trained = train()
    meta = trained.meta
    assert meta["spans"]["validation"] == ["2023-02-05T00:00:00+00:00", "2023-02-10T00:00:00+00:00"]
    assert meta["samples"] == {"train": 395, "validation": 115}
    assert meta["cost"] == COST and meta["seed"] == 42 and meta["features"] == list(TINY.features)
    assert meta["versions"]["torch"] == torch.__version__ and meta["versions"]["numpy"] == np.__version__
    assert meta["data_sha256"] == training_data_hash(*market(), TINY, TRAIN_END)
    assert {"accuracy", "log_loss", "label_balance", "long_hit_rate", "short_hit_rate"} <= set(meta["validation"])
    assert meta["decision_rule"]["min_confidence"] == 0.0
    assert sum(meta["validation"]["label_balance"].values()) == pytest.approx(1.0)


def test_too_little_history_says_how_much_is_needed():
    candles, funding = market()
    with pytest.raises(DataError, match=r"need 694 bars \(167 feature warm-up \+ 7 window \+ 400 train \+ 120 "
                                        r"validation\), have 600; load data from 2022-12-28 02:00"):
        train_model(candles, funding, TINY, cost=COST, train_end=candles.index[600])


def test_train_end_after_the_data_is_refused():
    candles, funding = market()
    with pytest.raises(DataError, match="after the last candle"):
        train_model(candles, funding, TINY, cost=COST, train_end=pd.Timestamp("2024-01-01", tz="UTC"))


def test_funding_that_starts_inside_the_training_windows_is_refused():
    candles, funding = market()
    late = funding[funding.index >= pd.Timestamp("2023-01-25", tz="UTC")]
    # bar 23:00 on the 24th sees the 00:00 settlement; the 8-bar window ending 05:00 still starts at 22:00
    with pytest.raises(DataError, match="training windows ending as late as 2023-01-25 05:00.*contain NaN"):
        train_model(candles, late, TINY, cost=COST, train_end=TRAIN_END)
