"""Example backtest script: an LSTM on BTC/USDT:USDT 1h against baselines, using the public API.

Run it from the repository root:  python backtests/btc_lstm_1h.py [--out runs/my-run]
Copy it and change the config to study your own idea.
"""

import argparse

from backtests import BacktestConfig, DataConfig, BrokerConfig
from backtests.session import run_and_report
from reports import format_metrics_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="report folder (default runs/<UTC time>-btc-lstm-1h-script)")
    parser.add_argument("--start", default="2024-07-01")
    parser.add_argument("--end", default="2025-12-31")
    args = parser.parse_args()

    config = BacktestConfig(
        name="btc-lstm-1h-script",
        strategy="lstm",
        baselines=("buy_hold", "sma_cross", "flat"),
        data=DataConfig(symbol="BTC/USDT:USDT", timeframe="1h", start=args.start, end=args.end),
        broker=BrokerConfig(cash=10_000, leverage=1, taker_fee=0.0005, slippage_bps=1),
        model={"window": 48, "hidden": 32, "horizon": 4, "epochs": 12},
    )
    folder, result, baselines = run_and_report(config, args.out, progress=print)
    print()
    print(format_metrics_table([result, *baselines]))
    print(f"\nreport: {folder / 'report.html'}")


if __name__ == "__main__":
    main()
