"""The stateful recurrent kinds (lstm_stateful, gru_stateful): trained with truncated backpropagation, one step per
bar online, batched and online equal, causal (the future and extra past leave decisions unchanged), cached and
checkpointed like every kind, and refused with one line when configured on a kind without recurrent state."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from backtests.config import BacktestConfig
from backtests.engine import run_backtest
from backtests.lookahead import audit_lookahead
from strategies.ml import (ConfigError, ModelConfig, Predictor, cache_key, load_checkpoint, save_checkpoint,
                           train_model, train_or_load)
from strategies.lstm.stateful import StatefulNet
from strategies.ml.protocol import SequenceModel
from strategies.ml.train import TrainedModel
from conftest import btc_1h_early_2023

TRAIN_END = pd.Timestamp("2023-02-10", tz="UTC")
TINY = ModelConfig(kind="lstm_stateful", window=8, hidden=8, train_bars=400, val_bars=120, epochs=2, lr=0.01,
                   options={"tbptt": 64})
SPAN = 120
TOL = 1e-6          # probabilities: batched pass vs one step per bar (float32 rounding of a chunked vs single step)


@functools.lru_cache(maxsize=1)
def trained() -> TrainedModel:
    return train_model(*btc_1h_early_2023(), TINY, cost=0.001, train_end=TRAIN_END)


def attached(mode: str, model: TrainedModel | None = None, *, cut: pd.Timestamp | None = None,
             history_from: pd.Timestamp | None = None) -> Predictor:
    """A predictor over SPAN bars from TRAIN_END; ``cut``: the candles end at that bar (funding settled by its
    close); ``history_from``: the candles start there instead of the start of the data."""
    candles, funding = btc_1h_early_2023()
    end = cut + pd.Timedelta(hours=1) if cut is not None else TRAIN_END + pd.Timedelta(hours=SPAN)
    candles = candles[candles.index < end]
    if history_from is not None:
        candles = candles[candles.index >= history_from]
    funding = funding[funding.index <= end]
    p = Predictor(model or trained(), mode)
    p.attach(candles, funding, TRAIN_END)
    return p


def test_same_seed_trains_identical_weights_and_a_new_seed_does_not():
    again = train_model(*btc_1h_early_2023(), TINY, cost=0.001, train_end=TRAIN_END)
    assert again.weights_sha256 == trained().weights_sha256
    other = train_model(*btc_1h_early_2023(), TINY.replace(seed=7), cost=0.001, train_end=TRAIN_END)
    assert other.weights_sha256 != trained().weights_sha256
    info = trained().meta["training"]
    assert info["tbptt"] == 64 and info["epochs_run"] == 2
    assert trained().meta["model"]["input_kind"] == "sequence" and isinstance(trained().model, SequenceModel)


def test_batched_pass_equals_one_step_per_bar_online_in_probabilities_and_positions():
    batched, online = attached("batched"), attached("online")
    steps: list[int] = []
    model = online.trained.model
    original = model.predict_sequence

    def counted(x, state=None):
        steps.append(len(x))
        return original(x, state)

    model.predict_sequence = counted
    try:
        for i in range(SPAN):
            np.testing.assert_allclose(online.probabilities(i), batched.probabilities(i), rtol=0, atol=TOL)
        assert [online.signal(i) for i in range(SPAN)] == [batched.signal(i) for i in range(SPAN)]
    finally:
        del model.predict_sequence
    # the burn-in (window - 1 bars) once, then exactly one recurrent step per bar
    assert steps == [TINY.window - 1] + [1] * SPAN
    assert len({batched.signal(i) for i in range(SPAN)}) > 1        # the positions compared are not all alike


def test_the_gru_cell_carries_its_state_the_same_way():
    gru = train_model(*btc_1h_early_2023(), TINY.replace(kind="gru_stateful"), cost=0.001, train_end=TRAIN_END)
    batched, online = attached("batched", gru), attached("online", gru)
    np.testing.assert_allclose([online.probabilities(i) for i in range(SPAN)],
                               batched.probability_frame().to_numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_one_bar_cell_step_equals_the_sequence_pass_through_stacked_layers(cell):
    torch.manual_seed(0)
    net = StatefulNet(5, hidden=6, layers=2, cell=cell).eval()
    x = torch.randn(1, 30, 5)
    with torch.inference_mode():
        whole, last = net(x)
        state, steps = None, []
        for t in range(30):
            logits, state = net.step(x[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), whole, rtol=0, atol=1e-5)
    for a, b in zip(state if cell == "lstm" else [state], last if cell == "lstm" else [last]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_online_answers_an_earlier_bar_from_memory_and_a_later_one_by_stepping_through():
    online, batched = attached("online"), attached("batched")
    np.testing.assert_allclose(online.probabilities(30), batched.probabilities(30), rtol=0, atol=TOL)
    np.testing.assert_allclose(online.probabilities(4), batched.probabilities(4), rtol=0, atol=TOL)
    assert list(online.probability_frame().index) == [online.index[4], online.index[30]]


@pytest.mark.parametrize("t", [0, 45, SPAN - 2])
def test_cutting_the_candles_after_bar_t_leaves_every_decision_up_to_t_unchanged(t):
    full = attached("batched")
    for mode in ("batched", "online"):
        short = attached(mode, cut=TRAIN_END + pd.Timedelta(hours=t))
        assert len(short) == t + 1
        probs = np.array([short.probabilities(i) for i in range(t + 1)])
        np.testing.assert_allclose(probs, full.probability_frame().to_numpy()[:t + 1], rtol=0, atol=TOL)
        assert [short.signal(i) for i in range(t + 1)] == [full.signal(i) for i in range(t + 1)]


def test_the_state_starts_at_the_span_start_not_at_the_first_candle_loaded():
    full = attached("batched")
    lean = attached("batched", history_from=TRAIN_END - pd.Timedelta(hours=400))   # far less history, same start
    np.testing.assert_allclose(lean.probability_frame().to_numpy(), full.probability_frame().to_numpy(),
                               rtol=0, atol=TOL)


def test_checkpoint_round_trip_and_cache_key_tell_stateful_from_windowed(tmp_path):
    model = trained()
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "ckpt"))        # torch.load(weights_only=True)
    assert type(loaded.model).__name__ == "StatefulRecurrentModel" and loaded.weights_sha256 == model.weights_sha256
    np.testing.assert_array_equal(attached("batched", loaded).probability_frame().to_numpy(),
                                  attached("batched").probability_frame().to_numpy())
    windowed = TINY.replace(kind="lstm", options={})
    assert cache_key(TINY, "d" * 64, 0.001) != cache_key(windowed, "d" * 64, 0.001)
    assert cache_key(TINY, "d" * 64, 0.001) != cache_key(TINY.replace(options={"tbptt": 32}), "d" * 64, 0.001)
    assert cache_key(TINY.replace(kind="gru_stateful"), "d" * 64, 0.001) != cache_key(TINY, "d" * 64, 0.001)
    lines: list[str] = []
    first, where = train_or_load(tmp_path / "cache", *btc_1h_early_2023(), TINY, cost=0.001, train_end=TRAIN_END)
    second, again = train_or_load(tmp_path / "cache", *btc_1h_early_2023(), TINY, cost=0.001, train_end=TRAIN_END,
                                  progress=lines.append)
    assert again == where and lines == [f"using cached model {where}"]
    assert second.weights_sha256 == first.weights_sha256 == model.weights_sha256


BACKTEST_MODEL = {"kind": "lstm_stateful", "window": 8, "hidden": 4, "train_bars": 600, "val_bars": 200,
                  "epochs": 1, "options": {"tbptt": 100}}
BACKTEST_SPAN = {"start": "2024-01-01", "end": "2024-01-10"}


def test_backtest_with_the_stateful_kind_trades_the_same_positions_in_batched_and_online_mode(tmp_path):
    config = BacktestConfig(strategy="lstm", model=BACKTEST_MODEL, cache_dir=str(tmp_path)).replace(
        data=BACKTEST_SPAN)
    batched = run_backtest(config)
    online = run_backtest(config.replace(params={"mode": "online"}))
    assert batched.models[0]["kind"] == "lstm_stateful"
    assert len(batched.equity) > 200 and len(batched.trades) >= 2
    pd.testing.assert_series_equal(batched.equity, online.equity)
    assert batched.trades.equals(online.trades)


def test_the_stateful_kind_passes_the_lookahead_audit_across_walk_forward_folds(tmp_path):
    config = BacktestConfig(strategy="lstm", cache_dir=str(tmp_path),
                            model={**BACKTEST_MODEL, "walk_forward_test_bars": 60}).replace(data=BACKTEST_SPAN)
    report = audit_lookahead(config, bars=5, seed=2)
    assert report.ok, report.format()
    assert list(report.components) == ["features", "scaler", "predictor", "target", "truncated"]
    # cutoffs late in the span compare rows answered by several folds' models, each with its own burn-in
    assert max(report.cutoffs) > pd.Timestamp(BACKTEST_SPAN["start"], tz="UTC") + pd.Timedelta(hours=120)


@pytest.mark.parametrize("table, message", [
    ({"kind": "transformer", "options": {"stateful": True}},
     "model config: options.stateful is not an option of kind 'transformer'; for a stateful recurrent model use "
     "kind = \"lstm_stateful\" or \"gru_stateful\" (kind 'transformer' has no recurrent state)"),
    ({"kind": "lstm", "options": {"stateful": True}},
     "model config: options.stateful is not an option of kind 'lstm'; for a stateful recurrent model use "
     "kind = \"lstm_stateful\""),
])
def test_asking_a_windowed_kind_to_be_stateful_is_one_line_naming_the_stateful_kind(table, message):
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict(table)
    assert str(err.value) == message


def test_a_stateful_kind_names_its_cell_and_refuses_a_bad_tbptt():
    assert ModelConfig.from_dict({"kind": "lstm_stateful", "cell": "gru"}).kind == "gru_stateful"
    assert ModelConfig.from_dict({"kind": "gru_stateful"}).cell == "gru"
    with pytest.raises(ConfigError, match=r"options.tbptt must be a whole number of bars >= 1, got 0"):
        train_model(*btc_1h_early_2023(), TINY.replace(options={"tbptt": 0}), cost=0.001, train_end=TRAIN_END)


def lstmbt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backtests.cli", *args], capture_output=True, text=True)


SMALL_TOML = """strategy = "lstm"
[data]
symbol = "BTC/USDT:USDT"
timeframe = "1h"
start = "2024-01-01"
end = "2024-01-05"
[model]
kind = "{kind}"
window = 8
hidden = 4
train_bars = 300
val_bars = 100
epochs = 1
[model.options]
{option}
"""


def test_cli_backtest_runs_the_stateful_kind_and_refuses_stateful_transformer_in_one_line(tmp_path):
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(SMALL_TOML.format(kind="gru_stateful", option="tbptt = 50"))
    bad.write_text(SMALL_TOML.format(kind="transformer", option="stateful = true"))
    common = ("--baselines", "", "--cache-dir", str(tmp_path / "cache"))
    ok = lstmbt("backtest", "--config", str(good), "--out", str(tmp_path / "runs"), *common)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "GRU_STATEFUL" in ok.stdout + ok.stderr
    refused = lstmbt("backtest", "--config", str(bad), "--out", str(tmp_path / "runs2"), *common)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "lstmbt: error: model config: options.stateful is not an option of kind 'transformer'; for a stateful recurrent "
        "model use kind = \"lstm_stateful\" or \"gru_stateful\" (kind 'transformer' has no recurrent state)"]


def test_a_user_sequence_model_without_predict_sequence_is_refused_in_one_line():
    from strategies.ml.kinds import ModelError, check_model_class

    class Half:
        input_kind = "sequence"

        def fit(self, train, val, *, seed, progress=None): ...
        def predict_proba(self, x): ...
        def state(self): ...
        @classmethod
        def from_state(cls, spec, tensors, meta): ...

    with pytest.raises(ModelError, match=r"^here: Half has input_kind 'sequence' but no predict_sequence\(x, state\)"):
        check_model_class(Half, "here")
