"""Threshold tuning: the validation-span trading return picks min_confidence; the Predictor uses the stored choice."""

import functools

import numpy as np
import pandas as pd
import pytest

from strategies.lstm import ModelConfig, Predictor, train_model, train_or_load
from strategies.lstm.decision import decide
from strategies.lstm.threshold import (DEFAULT_CANDIDATES, MIN_VALIDATION_TRADES, NO_TRADE_CONFIDENCE,
                                       count_trades, next_bar_returns, signal_net_return, tune_min_confidence)
from conftest import btc_1h_early_2023

PROBS = np.array([[0.10, 0.35, 0.55],      # LONG at 0.55
                  [0.45, 0.20, 0.35],      # SHORT at 0.45
                  [0.10, 0.25, 0.65]])     # LONG at 0.65
RETURNS = np.array([0.02, 0.01, 0.03])


def test_net_return_pays_half_the_round_trip_per_unit_of_position_change():
    net, changes, held = signal_net_return(np.array([1, 1, -1, 0]), np.array([0.01, 0.02, -0.01, 0.05]), 0.002)
    assert net == pytest.approx(0.01 + 0.02 + 0.01 - 0.001 * (1 + 0 + 2 + 1))
    assert (changes, held) == (3, 0.75)


def test_next_bar_returns_earn_from_the_next_open_to_the_one_after():
    opens = np.array([100.0, 100.0, 110.0, 121.0])
    np.testing.assert_allclose(next_bar_returns(opens, np.array([0, 1])), [np.log(1.1), np.log(1.1)])
    with pytest.raises(ValueError, match="needs open\\[4\\]"):
        next_bar_returns(opens, np.array([2]))


def test_the_threshold_with_the_best_net_return_wins_by_hand():
    # cost/2 = 0.002 per unit change. 0.4: [1,-1,1] 0.04 - 5*0.002 = 0.030; 0.5: [1,0,1] 0.05 - 3*0.002 = 0.044;
    # 0.6: [0,0,1] 0.03 - 1*0.002 = 0.028
    choice = tune_min_confidence(PROBS, RETURNS, cost=0.004, candidates=(0.6, 0.4, 0.5))
    assert choice.min_confidence == 0.5
    assert [row["min_confidence"] for row in choice.table] == [0.4, 0.5, 0.6]
    np.testing.assert_allclose([row["net_log_return"] for row in choice.table], [0.030, 0.044, 0.028])
    assert [row["position_changes"] for row in choice.table] == [3, 3, 1]


def test_ties_go_to_the_higher_threshold():
    # 0.56 and 0.6 give the same signals [0, 0, 1] and both earn 0.03
    choice = tune_min_confidence(PROBS, np.array([0.0, 0.0, 0.03]), cost=0.0, candidates=(0.56, 0.6))
    assert choice.min_confidence == 0.6
    flat_market = tune_min_confidence(PROBS, np.zeros(3), cost=0.0)
    assert flat_market.min_confidence == max(DEFAULT_CANDIDATES)


def test_trades_count_positions_opened_including_flips():
    assert count_trades(np.array([0, 1, 1, -1, 0, 0, 1])) == 3
    assert count_trades(np.array([-1, -1])) == 1 and count_trades(np.zeros(5)) == 0


def test_a_threshold_chosen_on_too_few_validation_trades_is_not_trusted():
    # 0.6 trades once ([0, 0, 1]) and earns most: one trade is far below MIN_VALIDATION_TRADES
    few = tune_min_confidence(PROBS, np.array([0.0, 0.0, 0.03]), cost=0.0, candidates=(0.4, 0.6))
    assert (few.min_confidence, few.trades, few.trusted) == (0.6, 1, False)
    assert few.to_dict()["trusted"] is False and few.to_dict()["min_trades"] == MIN_VALIDATION_TRADES
    # 40 bars alternating LONG / SHORT at 0.4: 40 positions opened, trusted
    probs = np.tile(PROBS[:2], (20, 1))
    many = tune_min_confidence(probs, np.tile([0.02, -0.02], 20), cost=0.0, candidates=(0.4,))
    assert (many.trades, many.trusted) == (40, True)
    assert decide(PROBS, NO_TRADE_CONFIDENCE).tolist() == [0, 0, 0]     # an untrusted fold stays flat


TRAIN_END = pd.Timestamp("2023-02-10", tz="UTC")
TINY = ModelConfig(window=8, hidden=8, train_bars=400, val_bars=120, epochs=1, batch_size=64, lr=0.01,
                   tune_threshold=True)
COST = 0.001


market = btc_1h_early_2023


@functools.lru_cache(maxsize=1)
def tuned():
    return train_model(*market(), TINY, cost=COST, train_end=TRAIN_END)


def test_training_tunes_on_the_validation_bars_only_and_stores_the_table():
    candles, funding = market()
    trained = tuned()
    rule = trained.meta["decision_rule"]
    tuning = rule["tuning"]
    assert tuning["min_confidence"] in DEFAULT_CANDIDATES
    expected = tuning["min_confidence"] if tuning["trusted"] else NO_TRADE_CONFIDENCE
    assert trained.min_confidence == rule["tuned_min_confidence"] == expected
    # recompute: predictions for the purged validation decision bars, from candles cut at train_end
    val_start = pd.Timestamp(trained.meta["spans"]["validation"][0])
    seen = candles[candles.index < TRAIN_END]
    p = Predictor(trained)
    p.attach(seen, funding, val_start)
    n = trained.meta["samples"]["validation"]
    first = int(seen.index.searchsorted(val_start))
    returns = next_bar_returns(seen["open"].to_numpy(), np.arange(first, first + n))
    again = tune_min_confidence(p.probability_frame().to_numpy()[:n], returns, COST)
    assert again.min_confidence == tuning["min_confidence"]
    assert again.trades == tuning["trades"] and again.trusted == tuning["trusted"]
    np.testing.assert_allclose([r["net_log_return"] for r in rule["tuning"]["table"]],
                               [r["net_log_return"] for r in again.table], atol=1e-6)


def test_the_predictor_trades_with_the_tuned_threshold_even_after_a_cache_load(tmp_path):
    candles, funding = market()
    cfg = TINY.replace(min_confidence=0.0)
    first, _ = train_or_load(tmp_path, candles, funding, cfg, cost=COST, train_end=TRAIN_END)
    loaded, _ = train_or_load(tmp_path, candles, funding, cfg, cost=COST, train_end=TRAIN_END,
                              progress=lambda line: None)
    assert loaded.min_confidence == first.min_confidence == tuned().min_confidence
    p = Predictor(loaded)
    p.attach(candles, funding, TRAIN_END)
    probs = p.probability_frame().to_numpy()
    assert [int(p.signal(i)) for i in range(len(p))] == decide(probs, first.min_confidence).tolist()
