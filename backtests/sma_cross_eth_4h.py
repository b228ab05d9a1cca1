"""Example backtest script: a long/short SMA cross on ETH 4h at 2x leverage, with a parameter sweep.

Run it from the repository root:  python backtests/sma_cross_eth_4h.py
Shows how to run several configs on the same data and print their metrics side by side.
"""

from backtests import BacktestConfig, BrokerConfig, DataConfig, run_backtest
from reports import format_metrics_table


def main() -> None:
    base = BacktestConfig(
        name="eth-sma-sweep", strategy="sma_cross",
        data=DataConfig(symbol="ETH/USDT:USDT", timeframe="4h", start="2023-01-01", end="2024-12-31"),
        broker=BrokerConfig(leverage=2),
    )
    results = []
    for fast, slow in [(10, 30), (12, 48), (20, 100)]:
        result = run_backtest(base.replace(params={"fast": fast, "slow": slow}))
        result.name = f"sma {fast}/{slow}"
        results.append(result)
    results.append(run_backtest(base, strategy="buy_hold"))
    print(format_metrics_table(results))


if __name__ == "__main__":
    main()
