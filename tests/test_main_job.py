"""The main job is one configuration: README command 1, plain `lstmbt backtest` and the example script agree,
its settings were chosen on a span that ends before the span it trades, and the selection rule is fixed."""

from __future__ import annotations

import re

from backtests.btc_lstm_1h import script_config
from backtests.cli import build_config, make_parser
from backtests.config import MAIN_JOB_CONFIG, load_config, main_job_config
from backtests.select_main_job import SELECTION_END, SELECTION_START, candidate_configs, pick
from data_feeds import parse_span


def test_readme_command_plain_backtest_and_the_script_run_the_same_job():
    readme = load_config("backtests/configs/btc_lstm_1h.toml")
    plain = build_config(make_parser().parse_args(["backtest"]))
    script, out = script_config([])
    assert readme == plain == script == main_job_config() and out is None
    # a strategy flag without --config still starts from the plain defaults, not from the main job
    other = build_config(make_parser().parse_args(["backtest", "--strategy", "sma_cross"]))
    assert other.strategy == "sma_cross" and other.model == {}


def test_the_settings_were_chosen_on_a_span_before_the_traded_one():
    job = main_job_config()
    _, selection_end = parse_span(SELECTION_START, SELECTION_END)
    start, _ = parse_span(job.data.start, job.data.end)
    assert selection_end <= start
    header = MAIN_JOB_CONFIG.read_text().split("\nname", 1)[0]
    assert f"{SELECTION_START} .. {SELECTION_END}" in header and "select_main_job.py" in header
    chosen = re.search(r"horizon = (\d+)", MAIN_JOB_CONFIG.read_text())
    assert chosen and int(chosen.group(1)) == job.model["horizon"]


def test_candidates_differ_only_in_horizon_and_the_rule_picks_the_best_sharpe_ties_to_shorter():
    job = main_job_config()
    cands = candidate_configs(job, [4, 24], SELECTION_START, SELECTION_END)
    for (label, config), h in zip(cands, [4, 24]):
        assert config.model == {**job.model, "horizon": h} and config.broker == job.broker
        assert (config.data.start, config.data.end) == (SELECTION_START, SELECTION_END)
    rows = [{"horizon": 4, "Sharpe": 0.3}, {"horizon": 8, "Sharpe": 0.3}, {"horizon": 24, "Sharpe": float("nan")},
            {"horizon": None, "Sharpe": 2.0}]             # buy-and-hold's reference row never wins
    assert pick(rows)["horizon"] == 4
