"""The LSTM strategy in the engine: online per-bar inference and the batched pass choose the same positions."""

import pandas as pd

from backtests import BacktestConfig, DataConfig, run_backtest

TINY = {"window": 8, "hidden": 4, "train_bars": 600, "val_bars": 200, "epochs": 1}
SPAN = DataConfig(symbol="BTC/USDT:USDT", timeframe="1h", start="2024-03-01", end="2024-03-06")


def test_online_mode_runs_the_network_each_bar_and_trades_like_batched(tmp_path):
    config = BacktestConfig(strategy="lstm", data=SPAN, model=TINY, cache_dir=str(tmp_path))
    batched = run_backtest(config)
    online = run_backtest(config.replace(params={"mode": "online"}))
    pd.testing.assert_series_equal(batched.target, online.target)
    pd.testing.assert_frame_equal(batched.fills, online.fills)
    # every bar was queried online: the probability frame covers the whole span
    assert len(online.predictions) == len(online.equity)
    pd.testing.assert_frame_equal(batched.predictions, online.predictions, atol=1e-6)


def test_walk_forward_records_each_fold_model_and_boundary(tmp_path):
    config = BacktestConfig(strategy="lstm", data=SPAN, cache_dir=str(tmp_path),
                            model={**TINY, "walk_forward_test_bars": 48})
    result = run_backtest(config)
    boundaries = pd.DatetimeIndex(result.fold_boundaries)
    assert boundaries[0] == result.equity.index[0] and len(boundaries) == 3
    assert (boundaries[1:] - boundaries[:-1] == pd.Timedelta(hours=48)).all()
    hashes = [c["weights_sha256"] for c in result.models]
    assert len(hashes) == 3 and len(set(hashes)) == 3
