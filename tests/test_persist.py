"""Run folders: a result saved as Parquet + JSON reads back equal, without pickle, for synthetic and real runs."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from backtests.persist import RunFolderError, load_run, load_runs, save_run, save_runs
from backtests.result import BacktestResult
from test_reports import flat_baseline, make_result


def assert_results_equal(a: BacktestResult, b: BacktestResult) -> None:
    for f in dataclasses.fields(BacktestResult):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, pd.Series):
            assert_series_equal(x, y, check_freq=True)
            assert x.index.freq == y.index.freq, f.name
        elif isinstance(x, pd.DataFrame):
            assert_frame_equal(x, y, check_freq=True)
        else:
            assert x == y, f.name


def test_a_saved_result_loads_back_equal_with_dtypes_times_and_names(tmp_path):
    result = make_result()
    result.extras = {"note": "kept as plain data"}
    result.fold_boundaries = [pd.Timestamp("2024-01-30", tz="UTC")]
    result.models = [{"name": "fold-1", "weights_sha256": "ab", "data_sha256": "cd", "min_confidence": 0.4}]
    result.source = {"spec": "sma_cross", "class": "strategies.baselines.SmaCross", "file": None, "sha256": None}
    result.attribution = {"price": 1.5, "fees_taker": -0.25, "total": 1.25}
    save_run(result, tmp_path / "run")
    back = load_run(tmp_path / "run")
    assert_results_equal(result, back)
    assert back.equity.index.tz is not None and str(back.equity.index.tz) == "UTC"
    assert back.fills["time"].dtype == result.fills["time"].dtype
    assert not list((tmp_path / "run").glob("*.pkl")) and not list((tmp_path / "run").glob(".*"))


def test_a_folder_written_before_typed_model_fields_reads_them_from_extras(tmp_path):
    import json

    save_run(make_result(), tmp_path)
    meta = json.loads((tmp_path / "result.json").read_text())
    for key in ("models", "fold_boundaries", "source"):
        del meta[key]
    meta["extras"] = {"fold_boundaries": ["2024-01-30T00:00:00+00:00"], "checkpoints": [{"min_confidence": 0.4}]}
    (tmp_path / "result.json").write_text(json.dumps(meta))
    back = load_run(tmp_path)
    assert back.fold_boundaries == [pd.Timestamp("2024-01-30", tz="UTC")]
    assert back.models == [{"min_confidence": 0.4}] and back.source == {}


def test_a_result_without_predictions_and_with_empty_frames_round_trips(tmp_path):
    result = flat_baseline()
    assert result.predictions is None and result.trades.empty
    save_run(make_result(), tmp_path)               # a stale predictions file must not survive the next save
    save_run(result, tmp_path)
    assert_results_equal(result, load_run(tmp_path))


def test_a_real_engine_run_round_trips(tmp_path):
    from backtests import BacktestConfig
    from backtests.engine import run_backtest

    config = BacktestConfig(strategy="sma_cross", data=BacktestConfig().data.__class__(
        start="2024-03-01", end="2024-03-20"))
    result = run_backtest(config)
    assert len(result.fills) > 2                    # trades, so fills and trades are not empty
    save_run(result, tmp_path)
    back = load_run(tmp_path)
    config_as_json = {**result.config, "baselines": list(result.config["baselines"])}
    assert back.config == config_as_json
    back.config = result.config
    assert_results_equal(result, back)


def test_strategy_and_baselines_are_saved_in_order_under_data(tmp_path):
    main, base = make_result(name="<script>x</script>"), flat_baseline()
    save_runs(tmp_path, main, [base])
    got_main, got_base = load_runs(tmp_path)
    assert got_main.name == "<script>x</script>" and [b.name for b in got_base] == ["flat"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["0-_script_x_script_", "1-flat", "runs.json"]


def test_a_folder_without_saved_data_is_refused_with_a_message(tmp_path):
    with pytest.raises(RunFolderError, match="no saved run data"):
        load_runs(tmp_path)
    with pytest.raises(RunFolderError, match="no result.json"):
        load_run(tmp_path)
