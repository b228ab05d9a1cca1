"""``lstmbt optimize``: its flags and the command (the CLI module only registers it)."""

from __future__ import annotations

import argparse
import time

EXAMPLES = """examples:
  lstmbt optimize --config backtests/configs/btc_lstm_1h.toml --trials 60 --workers 2          # default space
  lstmbt optimize --config backtests/configs/optimize_example.toml --study btc-lstm
  lstmbt optimize --config my.toml --trials 500 --scheduler tcp://HOST:8786 --study btc-lstm   # resumable by name
  lstmbt optimize --config backtests/configs/sma_cross.toml --trials 40 --objectives=sharpe,-max_drawdown
  lstmbt backtest --config runs/optimize-btc-lstm/best.toml                                     # run the winner"""


def add_optimize_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``lstmbt optimize``; they override the config file's ``[optimize]`` table."""
    from backtests.flags import add_flags

    parser.epilog = EXAMPLES
    parser.add_argument("--config", required=True,
                        help="TOML file: a backtest config plus [search] (and optionally [optimize]) tables")
    g = parser.add_argument_group("search")
    g.add_argument("--trials", type=int, help="finished trials the study should hold (default 30); a rerun continues")
    g.add_argument("--objectives", help="one or two of sharpe, sortino, return, calmar, -max_drawdown "
                                        "(comma-separated; default sharpe)")
    g.add_argument("--folds", type=int, help="walk-forward segments of the search span (default 5)")
    g.add_argument("--final-fraction", type=float,
                   help="share of the span kept back, at its end, for one final evaluation (default 0.2)")
    g.add_argument("--no-prune", dest="prune", action="store_false", default=None,
                   help="run every trial to its last fold (default: median pruning)")
    add_flags(g, "--seed", seed="seed of the sampler and the models (default: the config's, 42)")
    r = parser.add_argument_group("running")
    add_flags(r, "--workers", "--scheduler",
              workers="trials run together on local worker processes (default one per core; 0 = in this process) "
                      "or on Dask (default: its worker count); the same number gives the same trial values anywhere")
    r.add_argument("--study", help="study name: its folder is runs/optimize-NAME, and a rerun resumes it")
    r.add_argument("--out", help="run folder (default runs/<UTC time>-optimize, or runs/optimize-NAME)")
    add_flags(r, "--ledger", ledger="trial ledger file every trial is recorded in (default $LSTMBT_LEDGER or "
                                    "ledger.jsonl in the user cache)")
    g.add_argument("--cpcv-refit", dest="cpcv_refit", action=argparse.BooleanOptionalAction, default=None,
                   help="retrain each CPCV split's selected candidate on the split's training groups (default: on "
                        "for a model strategy; --no-cpcv-refit reuses the walk-forward returns only)")
    add_flags(r, "--cache-dir", "--data-dir", "--start", "--end",
              start="first day of the span (search + final), YYYY-MM-DD", end="last day of the span, inclusive")


def spec_from_args(args: argparse.Namespace):
    from backtests.config import ConfigError
    from backtests.optimize.study import load_optimize_file, resolve_spec

    config, search, table = load_optimize_file(args.config)
    data = {k: getattr(args, k) for k in ("start", "end", "store_dir") if getattr(args, k, None) is not None}
    top = {k: getattr(args, k) for k in ("seed", "cache_dir") if getattr(args, k, None) is not None}
    try:
        config = config.replace(data=data, **top)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    flags = {"trials": args.trials, "objectives": args.objectives, "folds": args.folds,
             "final_fraction": args.final_fraction, "prune": args.prune, "workers": args.workers,
             "scheduler": args.scheduler, "study": args.study, "out": args.out,
             "ledger": getattr(args, "ledger", None), "cpcv_refit": getattr(args, "cpcv_refit", None)}
    return resolve_spec(config, search, {**table, **{k: v for k, v in flags.items() if v is not None}},
                        str(args.config))


def optimize_command(args: argparse.Namespace) -> int:
    """``lstmbt optimize``: 0 when a trial completed, 1 when none did (user errors raise ValueError)."""
    from backtests.optimize.search import default_folder, run_search

    spec = spec_from_args(args)
    where = f"Dask at {spec.scheduler}" if spec.scheduler else \
        "this process" if spec.workers == 0 else f"{spec.workers or 'one per core'} local worker(s)"
    print(f"lstmbt optimize: {spec.config.strategy} on {spec.config.data.symbol} {spec.config.data.timeframe} "
          f"{spec.config.data.start} .. {spec.config.data.end}; {len(spec.space.dimensions)} dimension(s), "
          f"{spec.trials} trials, objective(s) {', '.join(o.text for o in spec.objectives)}, {where}; "
          f"folder {default_folder(spec)}", flush=True)
    started = time.perf_counter()
    outcome = run_search(spec, progress=lambda line: print(line, flush=True))
    s, g = outcome.summary, outcome.summary["guards"]
    print(f"\n{outcome.ran_now} trial(s) run now; study holds {sum(s['trials'].values())} "
          f"({s['trials']['COMPLETE']} complete, {s['trials']['PRUNED']} pruned, {s['trials']['FAIL']} failed) "
          f"in {time.perf_counter() - started:.1f} s")
    if outcome.best is None:
        print("no trial completed; see trials.csv for the errors")
        print(f"report: {outcome.folder / 'report.html'}")
        return 1

    def fmt(x, digits=3):
        return "n/a" if x is None else f"{x:.{digits}f}"

    print(f"winner: trial {s['best']['trial']}: "
          + ", ".join(f"{k}={v}" for k, v in s["best"]["params"].items()))
    search, final = s.get("search", {}), s.get("final", {})
    print(f"  search span: Sharpe {fmt(search.get('sharpe'), 2)}, return {fmt(search.get('return'), 1)} %, "
          f"max drawdown {fmt(search.get('max_drawdown'), 1)} %")
    if s.get("final_span"):
        print(f"  final span:  Sharpe {fmt(final.get('sharpe'), 2)}, return {fmt(final.get('return'), 1)} %, "
              f"max drawdown {fmt(final.get('max_drawdown'), 1)} %, PSR {fmt(final.get('psr'))}"
              + (f"  ({s['final_error']})" if s.get("final_error") else ""))
    print(f"  guards: PBO {fmt(g.get('pbo'), 2)}, deflated Sharpe {fmt(g.get('dsr'))} over {g.get('dsr_trials')} "
          f"configurations ({g.get('dsr_search_configs')} in this search + {g.get('dsr_ledger_trials')} more in the "
          f"ledger), CPCV median OOS Sharpe of the selection {fmt(g.get('cpcv_selected_oos_sharpe_median'), 2)}")
    if g.get("cpcv_refit"):
        print(f"  CPCV refitted per split: median OOS Sharpe of the selection "
              f"{fmt(g.get('cpcv_refit_oos_sharpe_median'), 2)} ({g.get('cpcv_refit_trained')} model(s) trained, "
              f"{g.get('cpcv_refit_cached')} from the cache, {fmt(g.get('cpcv_refit_seconds'), 1)} s)"
              + (f"; {len(g['cpcv_refit_errors'])} split(s) failed: {g['cpcv_refit_errors'][0]}"
                 if g.get("cpcv_refit_errors") else ""))
    print(f"best config: {outcome.folder / 'best.toml'}")
    print(f"report: {outcome.folder / 'report.html'}")
    return 0


__all__ = ["add_optimize_arguments", "optimize_command"]
