"""The README's "Write your own strategy" and "Plug in your own model" snippets run exactly as written: each Python
block is saved under the file name the README gives it, in an empty folder, and each command is run from there.

Only the comparison of every shipped model kind on the main job's two years (``compare --config
backtests/configs/btc_lstm_1h.toml ...``, minutes of training) is left out; its numbers are quoted from a run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from backtests.cli import main
from data_feeds import load_market

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"### {title}\n")
    end = README.index("\n### ", start + 1)
    return README[start:end]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[list[str]]:
    lines = block.replace("\\\n", " ").strip().splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("lstmbt ")]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_write_your_own_strategy_runs_as_written(folder, capsys):
    text = section("Write your own strategy")
    strategy, python = blocks(text, "python")[:2]
    assert "Save this as `my_rsi.py`" in text
    (folder / "my_rsi.py").write_text(strategy)
    cmds = commands(blocks(text, "bash")[0])
    assert [c[0] for c in cmds] == ["backtest", "compare", "check-lookahead"]
    fast = {"compare": ["--workers", "0", "--bootstrap", "100", "--no-cell-reports"], "check-lookahead": ["--bars", "5"]}
    for cmd in cmds:                       # as written, plus flags that only make the test faster
        extra = fast.get(cmd[0], [])
        assert main(cmd + extra) == 0, capsys.readouterr()
    # the Python block, with candles_df: "any DataFrame of OHLCV candles"
    candles_df = load_market("binanceusdm", "ETH/USDT:USDT", "1h", "2024-01-01", "2024-03-31").candles
    exec(compile(python, "README: Write your own strategy", "exec"), {"candles_df": candles_df})
    assert (folder / "runs" / "rsi" / "report.html").exists() and (folder / "runs" / "rsi" / "input").is_dir()


def test_plug_in_your_own_model_runs_as_written(folder, capsys):
    text = section("Plug in your own model")
    assert "Save this as `my_model.py`" in text
    (folder / "my_model.py").write_text(blocks(text, "python")[0])
    cmds = [c for c in commands(blocks(text, "bash")[0]) if "backtests/configs/btc_lstm_1h.toml" not in c]
    assert [c[:2] for c in cmds] == [["backtest", "--strategy"]]
    assert main(cmds[0]) == 0, capsys.readouterr()
    out = capsys.readouterr()
    assert "model: user model my_model.py:MyModel" in out.out + out.err
    assert len(list(folder.glob("runs/*/report.html"))) == 1
