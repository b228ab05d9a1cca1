"""Predictor: batched answers equal per-bar online answers, and the future never changes a past answer."""

import functools

import numpy as np
import pandas as pd
import pytest

from data_feeds import DataError
from strategies.lstm import ModelConfig, Predictor, train_model
from strategies.lstm.decision import decide
from strategies.lstm.train import TrainedModel
from strategies.signal import CLASS_NAMES, Signal
from conftest import btc_1h_early_2023

TRAIN_END = pd.Timestamp("2023-02-10", tz="UTC")
TINY = ModelConfig(window=8, hidden=8, train_bars=400, val_bars=120, epochs=2, batch_size=64, lr=0.01)
SPAN = 120


market = btc_1h_early_2023


@functools.lru_cache(maxsize=1)
def trained_model() -> TrainedModel:
    return train_model(*market(), TINY, cost=0.001, train_end=TRAIN_END)


def attached(mode: str, candles=None, funding=None, trained=None) -> Predictor:
    c, f = market()
    p = Predictor(trained or trained_model(), mode, chunk=32)
    end = TRAIN_END + pd.Timedelta(hours=SPAN)
    c = c if candles is None else candles
    p.attach(c[c.index < end], f if funding is None else funding, TRAIN_END)
    return p


def test_batched_and_online_give_the_same_probabilities_and_signals_for_every_bar():
    batched, online = attached("batched"), attached("online")
    assert len(batched) == len(online) == SPAN
    for i in range(SPAN):
        np.testing.assert_allclose(online.probabilities(i), batched.probabilities(i), rtol=0, atol=1e-6)
        assert online.signal(i) == batched.signal(i)
    frame = batched.probability_frame()
    assert list(frame.columns) == list(CLASS_NAMES) and frame.index[0] == TRAIN_END
    np.testing.assert_allclose(frame.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(online.probability_frame().to_numpy(), frame.to_numpy(), atol=1e-6)


def test_online_frame_holds_only_the_bars_queried_so_far():
    online = attached("online")
    online.probabilities(5)
    online.signal(2)
    assert list(online.probability_frame().index) == [online.index[2], online.index[5]]


@pytest.mark.parametrize("t", [0, 17, 63, SPAN - 2])
def test_removing_candles_after_bar_t_does_not_change_predictions_up_to_t(t):
    full = attached("batched")
    candles, funding = market()
    cut = candles[candles.index <= TRAIN_END + pd.Timedelta(hours=t)]
    known = funding[funding.index <= cut.index[-1] + pd.Timedelta(hours=1)]    # settled by bar t's close
    short = attached("batched", candles=cut, funding=known)
    assert len(short) == t + 1
    np.testing.assert_allclose(short.probability_frame().to_numpy(),
                               full.probability_frame().to_numpy()[:t + 1], rtol=0, atol=1e-6)
    assert [short.signal(i) for i in range(t + 1)] == [full.signal(i) for i in range(t + 1)]


def test_changing_a_later_bar_changes_that_bar_but_not_earlier_ones():
    candles, _ = market()
    base = attached("batched")
    shocked = candles.copy()
    shocked.loc[TRAIN_END + pd.Timedelta(hours=50), ["high", "close"]] *= 1.05
    other = attached("batched", candles=shocked)
    a, b = base.probability_frame().to_numpy(), other.probability_frame().to_numpy()
    np.testing.assert_allclose(b[:50], a[:50], rtol=0, atol=1e-6)
    assert np.abs(b[50] - a[50]).max() > 1e-4


def test_signals_follow_the_decision_rule_with_the_stored_min_confidence():
    plain = attached("batched")
    probs = plain.probability_frame().to_numpy()
    assert [int(plain.signal(i)) for i in range(SPAN)] == decide(probs, 0.0).tolist()
    threshold = float(np.median(probs.max(axis=1)))
    base = trained_model()
    strict = TrainedModel(base.model, dict(base.meta, decision_rule={"rule": "argmax", "min_confidence": threshold}))
    cautious = attached("batched", trained=strict)
    signals = [cautious.signal(i) for i in range(SPAN)]
    weak = probs.max(axis=1) < threshold
    assert all(s == Signal.FLAT for s, w in zip(signals, weak) if w)
    assert signals == [Signal(int(v)) for v in decide(probs, threshold)]


def test_too_little_warm_up_history_is_refused_with_where_to_start():
    candles, funding = market()
    p = Predictor(trained_model())
    with pytest.raises(DataError, match=r"need 174 bars of warm-up .* have 100; load candles and funding from "
                                        r"2023-02-02 18:00"):
        p.attach(candles[candles.index >= TRAIN_END - pd.Timedelta(hours=100)], funding, TRAIN_END)


def test_queries_outside_the_span_or_before_attach_are_errors():
    with pytest.raises(RuntimeError, match="call Predictor.attach"):
        Predictor(trained_model()).signal(0)
    p = attached("batched")
    with pytest.raises(IndexError, match="outside the attached span of 120 bars"):
        p.probabilities(SPAN)
    with pytest.raises(ValueError, match="mode must be one of batched, online"):
        Predictor(trained_model(), "streaming")
