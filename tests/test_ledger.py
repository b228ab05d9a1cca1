"""The trial ledger: what it records, what it counts, and that concurrent writers never tear a line."""

from __future__ import annotations

import json
import multiprocessing

from backtests.ledger import config_hash, ledger_path, make_entry, read, record, trials_on

BASE = {"name": "a", "strategy": "lstm", "seed": 42, "broker": {"leverage": 1.0}, "params": {}, "model": {"horizon": 24},
        "data": {"symbol": "BTC/USDT:USDT", "start": "2024-01-01", "end": "2024-06-30"}, "out_dir": "runs"}


def _entry(config, start="2024-01-01", end="2024-06-30", symbol="BTC/USDT:USDT", sharpe=1.0):
    return make_entry("backtest", config, exchange="binanceusdm", symbol=symbol, timeframe="1h",
                      start=f"{start}T00:00:00Z", end=f"{end}T23:00:00Z", sharpe=sharpe)


def test_hash_ignores_name_output_and_span_but_not_settings():
    other_span = {**BASE, "name": "b", "out_dir": "x", "data": {**BASE["data"], "start": "2023-01-01"}}
    assert config_hash(other_span) == config_hash(BASE)
    assert config_hash({**BASE, "model": {"horizon": 4}}) != config_hash(BASE)


def test_counts_distinct_configurations_on_overlapping_spans_only(tmp_path):
    path = tmp_path / "ledger.jsonl"
    h4 = {**BASE, "model": {"horizon": 4}}
    record([_entry(BASE, sharpe=1.3), _entry(BASE, sharpe=1.2),          # the same config twice: one trial
            _entry(h4, start="2024-06-01", end="2024-12-31", sharpe=-0.1),  # overlaps by a month
            _entry({**BASE, "seed": 1}, start="2025-01-01", end="2025-06-30"),  # after the span
            _entry({**BASE, "seed": 2}, symbol="ETH/USDT:USDT")], path)         # another symbol
    t = trials_on("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-06-30 23:00", path=path)
    assert t.count == 2 and sorted(t.sharpes) == [-0.1, 1.2]


def test_environment_variable_chooses_the_file_and_a_torn_line_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMBT_LEDGER", str(tmp_path / "env.jsonl"))
    assert ledger_path() == tmp_path / "env.jsonl"
    record([_entry(BASE)])
    with open(tmp_path / "env.jsonl", "a") as fh:
        fh.write('{"v": 1, "config_ha')          # a writer killed mid-line
    assert len(read()) == 1 and read()[0]["summary"].startswith("lstm seed=42 lev=1.0")


def _writer(args):
    path, k = args
    record([_entry({**BASE, "seed": k * 100 + i}) for i in range(25)], path)


def test_concurrent_writers_append_whole_lines(tmp_path):
    path = str(tmp_path / "ledger.jsonl")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_writer, [(path, k) for k in range(4)])
    lines = open(path).read().splitlines()
    assert len(lines) == 100 and all(json.loads(line)["v"] == 1 for line in lines)
    assert trials_on("binanceusdm", "BTC/USDT:USDT", "1h", "2024-03-01", "2024-03-02", path=path).count == 100
