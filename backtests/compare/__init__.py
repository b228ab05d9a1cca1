"""Compare strategies across date ranges and symbols: what ``lstmbt compare`` does.

Every cell of the grid (strategy x range x symbol) is one :func:`~backtests.engine.run_backtest` with the same
broker, fraction, seed and model settings. The client loads each symbol's market data once and sends it once to
each worker (local processes or a Dask cluster), so workers need no shared disk; each task names its cell's cut of
it (the range plus the history its strategy trains on, strictly before the range start), which the client checked. A cell that raises becomes an error row;
the others still finish. From Python::

    spec = load_compare_spec("backtests/configs/compare_example.toml")
    folder, comparison = run_and_write(spec)

A spec file is a backtest config (``[data]``, ``[broker]``, ``[model]`` ...) plus a ``[compare]`` table::

    [compare]
    strategies = ["lstm", "sma_cross", "buy_hold"]
    symbols = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    ranges = { bull = "2020-10-01:2021-04-15", bear = "2022-04-01:2022-12-31" }
    # or: rolling = "6M"  (consecutive windows over [data] start .. end)
    workers = 2                       # local process pool; 0 = in this process
    # scheduler = "tcp://scheduler-host:8786"   (a Dask cluster instead; start its workers with --nthreads 1, as
    #                                       LSTM training seeds torch's global generator per process)

    [params.sma_cross]                # strategy parameters, one table per strategy
    fast = 10
"""

from backtests.compare.command import add_compare_arguments, compare_command, spec_from_args
from backtests.compare.plan import CellTask, DataCut, Plan, plan_cells
from backtests.compare.run import record_trials, run_and_write, run_cell, run_comparison, worker_modules
from backtests.compare.spec import CompareSpec, load_compare_file, load_compare_spec, resolve_spec

__all__ = ["CellTask", "CompareSpec", "DataCut", "Plan", "add_compare_arguments", "compare_command",
           "load_compare_file", "load_compare_spec", "plan_cells", "record_trials", "resolve_spec", "run_and_write",
           "run_cell", "run_comparison", "spec_from_args", "worker_modules"]
