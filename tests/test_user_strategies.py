"""A user's own strategy, from a file or a module, wherever a strategy name is taken; bad specs are one line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from backtests.cli import main
from backtests.compare import resolve_spec, run_comparison
from backtests.config import BacktestConfig
from backtests.engine import run_backtest
from backtests.compare.executors import DaskExecutor, InlineExecutor, ProcessExecutor
from strategies import registry
from strategies.registry import get_strategy, register_strategy

EXAMPLE = Path(__file__).resolve().parents[1] / "strategies" / "examples" / "rsi_long_short.py"
SPAN = ["--symbol", "ETH/USDT:USDT", "--timeframe", "1h", "--start", "2024-01-01", "--end", "2024-01-10"]

PEEKING_SCHEDULE = '''
from strategies import Signal, TargetPositionStrategy

class EndAnchored(TargetPositionStrategy):
    """Long for the first half of the data, short for the rest: it knows where the data ends."""
    def target(self):
        return Signal.LONG if 2 * len(self) <= self.data.buflen() else Signal.SHORT
'''

BUGGY = '''
from strategies import Signal, TargetPositionStrategy

class Buggy(TargetPositionStrategy):
    def target(self):
        return self.ratio()

    def ratio(self):
        return 1 / 0
'''


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A folder outside the repository holding a copy of the RSI example as my_rsi.py, as the current folder."""
    shutil.copy(EXAMPLE, tmp_path / "my_rsi.py")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def fail_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("content, spec, expected", [
    (None, "nowhere.py:Rsi", "strategy file not found: .*nowhere.py"),
    ("x = 1\n", "bad.py:Rsi", r"bad.py: no class 'Rsi'; it defines no TargetPositionStrategy subclass"),
    ("import json\nRsi = json\n", "bad.py:Rsi", r"bad.py: Rsi is not a strategy"),
    ("import talib_not_installed\n", "bad.py:Rsi", r"bad.py: cannot load it \(line 1\): ModuleNotFoundError"),
    ("def broken(:\n", "bad.py:Rsi", r"bad.py: line 1: SyntaxError"),
    ("raise RuntimeError('needs an API key')\n", "bad.py:Rsi", r"bad.py: cannot load it \(line 1\): RuntimeError"),
    (None, "my_rsi.py", r"name the class too, e.g. my_rsi.py:MyStrategy"),
    (None, "my_rsi.py:RsiLongShor", r"no class 'RsiLongShor'; strategies there: RsiLongShort"),
    (None, "no_such_pkg.signals:Trend", r"strategy module 'no_such_pkg.signals' not found"),
    (None, "sma_cros", r"unknown strategy 'sma_cros'; did you mean 'sma_cross'\?"),
])
def test_a_strategy_spec_that_cannot_be_loaded_is_one_line_naming_the_file_and_exit_2(
        user_dir, capsys, content, spec, expected):
    import re

    if content is not None:
        (user_dir / "bad.py").write_text(content)
    assert main(["backtest", "--strategy", spec, *SPAN, "--out", str(user_dir / "out")]) == 2
    line = fail_line(capsys)
    assert line.startswith("lstmbt: error: ") and re.search(expected, line), line


def test_an_exception_in_the_users_code_shows_their_frames_then_one_summary_line(user_dir, capsys):
    (user_dir / "buggy.py").write_text(BUGGY)
    assert main(["backtest", "--strategy", "buggy.py:Buggy", "--baselines", "", *SPAN,
                 "--out", str(user_dir / "out")]) == 2
    err = capsys.readouterr().err
    assert "your strategy's frames" in err and "return 1 / 0" in err and "in ratio" in err
    assert "backtrader" not in err and "engine.py" not in err       # our frames are not their bug
    assert err.strip().splitlines()[-1].startswith("lstmbt: error: your strategy raised ZeroDivisionError")


def test_a_file_strategy_runs_in_backtest_and_rerun_warns_when_the_file_changed(user_dir, capsys):
    out = user_dir / "run"
    assert main(["backtest", "--strategy", "my_rsi.py:RsiLongShort", "--baselines", "buy_hold", *SPAN,
                 "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    mine = manifest["strategies"][0]
    assert mine["name"] == "my_rsi.py:RsiLongShort" and mine["file"] == str(user_dir / "my_rsi.py")
    assert len(mine["sha256"]) == 64 and manifest["config"]["strategy"] == f"{user_dir / 'my_rsi.py'}:RsiLongShort"
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["name"] for r in metrics["results"]] == ["my_rsi.py:RsiLongShort", "buy_hold"]
    capsys.readouterr()
    with open(user_dir / "my_rsi.py", "a") as f:
        f.write("\n# edited after the run\n")
    assert main(["report", str(out), "--rerun", "--out", str(user_dir / "again")]) == 0
    printed = capsys.readouterr().out
    assert "warning: strategy my_rsi.py:RsiLongShort: source file" in printed and "changed since the run" in printed
    assert "metrics.json: identical to the original" in printed


def test_a_toml_config_names_a_file_strategy_with_its_params(user_dir):
    from backtests.config import load_config

    (user_dir / "rsi.toml").write_text('strategy = "my_rsi.py:RsiLongShort"\nbaselines = ["my_rsi.py:RsiLongShort"]\n'
                                       '[data]\nsymbol = "ETH/USDT:USDT"\nstart = "2024-01-01"\nend = "2024-01-10"\n'
                                       '[params]\nperiod = 6\nlower = 40\n')
    config = load_config(user_dir / "rsi.toml")
    assert config.strategy == config.baselines[0] == f"{user_dir / 'my_rsi.py'}:RsiLongShort"   # absolute
    tuned = run_backtest(config)
    default = run_backtest(config.replace(params={}))
    assert tuned.config["params"] == {"period": 6, "lower": 40} and tuned.final_equity != default.final_equity


def test_a_module_spec_imports_from_the_current_folder(user_dir, clean_registry):
    (user_dir / "mypkg").mkdir()
    (user_dir / "mypkg" / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, user_dir / "mypkg" / "signals.py")
    try:
        cls = get_strategy("mypkg.signals:RsiLongShort")
        assert cls.__name__ == "RsiLongShort" and cls.__module__ == "mypkg.signals"
    finally:
        for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
            del sys.modules[name]


def test_a_strategy_file_imports_a_helper_module_that_sits_next_to_it(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "my_levels.py").write_text("LOWER = 25.0\n")
    (tmp_path / "lib" / "strat.py").write_text(
        EXAMPLE.read_text() + "\n\nfrom my_levels import LOWER\n\nclass Tuned(RsiLongShort):\n"
        "    params = (('lower', LOWER),)\n")
    try:
        cls = get_strategy(f"{tmp_path}/lib/strat.py:Tuned")
        assert cls.params.lower == 25.0 and str(tmp_path / "lib") not in sys.path
    finally:
        sys.modules.pop("my_levels", None)


def test_registered_names_run_and_builtins_cannot_be_replaced(user_dir, clean_registry):
    register_strategy("rsi", "my_rsi.py:RsiLongShort")
    config = BacktestConfig(strategy="rsi", params={"period": 6}).replace(
        data={"symbol": "ETH/USDT:USDT", "start": "2024-01-01", "end": "2024-01-05"})
    by_name = run_backtest(config)
    by_spec = run_backtest(config.replace(strategy="my_rsi.py:RsiLongShort"))
    assert by_name.name == "rsi" and by_name.final_equity == by_spec.final_equity
    register_strategy("rsi_class", get_strategy("rsi"))      # compare sends workers what they can resolve
    assert registry.portable_spec("rsi") == "my_rsi.py:RsiLongShort"
    assert registry.portable_spec("rsi_class") == f"{user_dir / 'my_rsi.py'}:RsiLongShort"
    assert registry.portable_spec("sma_cross") == "sma_cross"
    with pytest.raises(ValueError, match="built-in"):
        register_strategy("lstm", get_strategy("rsi"))
    with pytest.raises(ValueError, match="TargetPositionStrategy subclass"):
        register_strategy("thing", dict)


def test_compare_workers_load_a_user_file_on_a_process_pool_and_on_dask(user_dir):
    distributed = pytest.importorskip("distributed")
    grid = {"strategies": ["my_rsi.py:RsiLongShort", "buy_hold"], "symbols": ["ETH/USDT:USDT"],
            "ranges": "jan=2024-01-01:2024-01-10", "cell_reports": False, "bootstrap": 200}
    spec = resolve_spec(BacktestConfig(strategy="buy_hold"), grid)
    equity = {}
    with ProcessExecutor(2) as pool:
        equity["pool"] = [o.result.final_equity for o in run_comparison(spec, pool, show_bar=False)]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client, DaskExecutor(client) as dask:
        equity["dask"] = [o.result.final_equity for o in run_comparison(spec, dask, show_bar=False)]
    equity["here"] = [o.result.final_equity for o in run_comparison(spec, InlineExecutor(), show_bar=False)]
    assert equity["pool"] == equity["dask"] == equity["here"] and equity["here"][0] != 10_000.0


def test_a_compare_task_carries_the_strategy_file_so_a_worker_needs_no_shared_disk(user_dir):
    from backtests.compare import plan_cells, run_cell
    from strategies import loader

    grid = {"strategies": ["my_rsi.py:RsiLongShort"], "symbols": ["ETH/USDT:USDT"],
            "ranges": "jan=2024-01-01:2024-01-05", "cell_reports": False, "bootstrap": 200}
    plan = plan_cells(resolve_spec(BacktestConfig(strategy="buy_hold"), grid))
    (task,) = plan.tasks
    path = str(user_dir / "my_rsi.py")
    assert task.sources == {path: (user_dir / "my_rsi.py").read_text()}
    elsewhere = str(user_dir / "not_on_this_worker" / "my_rsi.py")     # the client's path, absent here
    task.sources = {elsewhere: task.sources[path]}
    task.config = task.config.replace(strategy=f"{elsewhere}:RsiLongShort")
    try:
        outcome = run_cell(task, plan.data)
    finally:
        loader._SOURCES.pop(elsewhere, None)
    assert outcome.ok, outcome.detail
    assert outcome.result.final_equity == run_backtest(task.config.replace(strategy="my_rsi.py:RsiLongShort"),
                                                       market=task.market(plan.data)).final_equity


def test_check_lookahead_flags_a_peeking_strategy_loaded_from_a_file(user_dir, capsys):
    assert main(["check-lookahead", "--strategy", "my_rsi.py:RsiLongShort", "--bars", "4", *SPAN]) == 0
    assert "no lookahead found" in capsys.readouterr().out
    (user_dir / "peek.py").write_text(PEEKING_SCHEDULE)
    assert main(["check-lookahead", "--strategy", "peek.py:EndAnchored", "--bars", "4", *SPAN]) == 1
    out = capsys.readouterr().out
    assert "LOOKAHEAD: truncated changed" in out
