"""The main job as a plain Python script: an LSTM on BTC/USDT:USDT 1h against baselines, on the public API.

It runs exactly what ``lstmbt backtest --config backtests/configs/btc_lstm_1h.toml`` (and plain
``lstmbt backtest``) runs: the same TOML file, read by :func:`backtests.config.main_job_config`; how its
settings were chosen (on a span before the one it trades) is written at the top of that file.

Run it from the repository root:  python backtests/btc_lstm_1h.py [--out runs/my-run]
Copy it and change the config to study your own idea.
"""

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):                   # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backtests.config import MAIN_JOB_CONFIG, main_job_config  # noqa: E402
from backtests.session import run_and_report  # noqa: E402
from reports import format_metrics_table  # noqa: E402


def script_config(argv: list[str] | None = None):
    """The run's config: the main job's TOML with the flags given applied on top; returns (config, out)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="report folder (default runs/<UTC time>-btc-lstm-1h)")
    parser.add_argument("--start", help=f"first day, YYYY-MM-DD (default: {MAIN_JOB_CONFIG.name}'s)")
    parser.add_argument("--end", help=f"last day, inclusive (default: {MAIN_JOB_CONFIG.name}'s)")
    parser.add_argument("--seed", type=int, help="random seed of the models (default: the config's, 42)")
    parser.add_argument("--cache-dir", help="folder for trained models (default: user cache)")
    args = parser.parse_args(argv)
    data = {k: v for k, v in (("start", args.start), ("end", args.end)) if v is not None}
    top = {k: v for k, v in (("seed", args.seed), ("cache_dir", args.cache_dir)) if v is not None}
    return main_job_config().replace(data=data, **top), args.out


def main() -> None:
    config, out = script_config()
    folder, result, baselines = run_and_report(config, out, progress=print)
    print()
    print(format_metrics_table([result, *baselines]))
    print(f"\nreport: {folder / 'report.html'}")


if __name__ == "__main__":
    main()
