"""The speed benchmark measures what it says: its cold LSTM run runs the network on an empty prediction cache, its
warm run reads the cache; batched inference gives the same numbers on any thread count."""

import numpy as np
import pytest
import torch

from backtests import BacktestConfig, DataConfig, run_backtest
from benchmarks.engine_speed import count_forward_calls, lstm_cases, prediction_files
from strategies.lstm.inference import THREADS_ENV, batch_threads, free_cores, predict_probabilities, torch_threads
from strategies.lstm.model import SignalNet

TINY = {"window": 8, "hidden": 4, "train_bars": 600, "val_bars": 200, "epochs": 1}
SPAN = DataConfig(symbol="BTC/USDT:USDT", timeframe="1h", start="2024-03-01", end="2024-03-06")


def test_cold_case_runs_the_network_on_an_empty_cache_and_warm_case_reads_it(tmp_path, monkeypatch):
    from backtests.engine import load_run_data
    from strategies.registry import get_strategy

    config = BacktestConfig(strategy="lstm", data=SPAN, model=TINY, cache_dir=str(tmp_path))
    market, _, _ = load_run_data(config, get_strategy("lstm").history_bars(config))
    run_backtest(config, market=market)                       # trains the model (the benchmark does it untimed)
    assert prediction_files(tmp_path)                         # ... and fills the prediction cache
    cold, warm = lstm_cases(config, market)

    calls = []
    from strategies.lstm.networks import TorchModel
    real = TorchModel.predict_proba

    def spy(model, windows):
        calls.append(len(windows))
        assert not prediction_files(tmp_path), "the cold run found predictions cached"
        return real(model, windows)

    monkeypatch.setattr(TorchModel, "predict_proba", spy)
    cold.setup()
    assert not prediction_files(tmp_path)                     # empty when the timed part starts
    cold.run()
    assert sum(calls) == len(market.slice(*_span(config)).candles)   # one batched pass over every traded bar
    assert cold.notes and int(cold.notes[0].split()[0]) > 0    # forward calls of the net, counted by hooks

    calls.clear()
    warm.setup()
    assert prediction_files(tmp_path)
    warm.run()
    assert calls == [] and warm.notes == ["0 forward calls"]


def _span(config):
    from data_feeds import parse_span

    return parse_span(config.data.start, config.data.end)


def test_forward_call_counter_counts_top_level_calls_only():
    net = SignalNet(3, 4)
    with count_forward_calls() as calls:
        net(torch.zeros(2, 5, 3))
        net(torch.zeros(1, 5, 3))
    assert calls[0] == 2


def test_batched_probabilities_are_bit_identical_on_one_and_two_threads():
    torch.manual_seed(0)
    net = SignalNet(6, 16)
    windows = np.random.default_rng(0).standard_normal((700, 24, 6)).astype(np.float32)
    with torch_threads(1):
        one = predict_probabilities(net, windows, 256)
    with torch_threads(2):
        two = predict_probabilities(net, windows, 256)
    assert np.array_equal(one, two)


def test_batch_threads_follow_the_setting_else_the_free_cores(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert batch_threads() == 3
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ValueError, match=THREADS_ENV):
        batch_threads()
    monkeypatch.delenv(THREADS_ENV)
    assert 1 <= batch_threads() <= free_cores()
