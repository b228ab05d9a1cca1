"""After the trials: the trial table, the winner, its one evaluation on the final span, and the guards (PBO,
CPCV, deflated Sharpe, parameter importances)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtests.compare.executors import Executor, TaskFailure
from backtests.optimize.guards import cpcv_selection, default_slices, importances, pbo_cscv
from backtests.optimize.objective import METRICS, FoldTask, fold_market, metric_value, run_fold
from backtests.optimize.space import apply_values, uses_model
from backtests.optimize.study import load_returns, save_returns
from data_feeds import MarketData
from data_feeds.files import atomic_write
from backtests.ledger import config_hash, configs_on, ledger_path
from reports.statistics import expected_max_sharpe, probabilistic_sharpe_ratio, sharpe_ratio

if TYPE_CHECKING:
    from backtests.optimize.search import Search, SearchOutcome

FINAL_FILE = "final.json"


def trial_table(study, spec) -> pd.DataFrame:
    """One row per trial: number, state, objective values (named as written), parameters, fold values, trades,
    seconds, models trained / loaded from the cache, error."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        values = t.values if t.values is not None else [None] * len(spec.objectives)
        if t.state.name == "PRUNED" and t.values is None and t.intermediate_values:
            values = [t.intermediate_values[max(t.intermediate_values)]]
        for o, v in zip(spec.objectives, values):
            row[o.text] = v
        row.update({name: t.params.get(name) for name in spec.space.names})
        attrs = t.user_attrs
        row["folds_run"] = attrs.get("folds_run", 0)
        row["fold_values"] = " ".join(f"{v:.3f}" for v in attrs.get("fold_values", []))
        for key in ("trades", "seconds", "models_trained", "models_cached", "peak_mib"):
            row[key] = attrs.get(key)
        row["retry_of"] = attrs.get("retry_of")
        row["error"] = attrs.get("error", "" if "folds_run" in attrs or t.state.name != "FAIL"
                                 else "cut off: the search stopped during this trial; its parameters ran again")
        row["started"] = t.datetime_start.isoformat() if t.datetime_start else ""
        row["finished"] = t.datetime_complete.isoformat() if t.datetime_complete else ""
        rows.append(row)
    return pd.DataFrame(rows)


def choose_best(study, spec):
    """The single objective's best trial; with two, the Pareto-front trial with the best first objective."""
    try:
        if not spec.multi:
            return study.best_trial
        front = study.best_trials
    except ValueError:
        return None
    if not front:
        return None
    sign = 1 if spec.objectives[0].direction == "maximize" else -1
    return max(front, key=lambda t: (sign * t.values[0], -t.number))


def buy_hold_returns(candles: pd.DataFrame) -> np.ndarray:
    """Bar returns of holding the asset (1x, no fees): the first bar close/open, then close to close."""
    close = candles["close"].to_numpy(dtype="float64")
    if close.size == 0:
        return np.zeros(0)
    first = close[0] / float(candles["open"].iloc[0]) - 1.0
    return np.r_[first, close[1:] / close[:-1] - 1.0]


def span_metrics(returns: np.ndarray | None, timeframe: str, trades: int | None = None) -> dict:
    """Every objective metric, bars, trades and PSR (probability that the true Sharpe ratio is above 0)."""
    if returns is None or len(returns) == 0:
        return {}
    out = {m: metric_value(m, returns, timeframe) for m in METRICS}
    out["bars"] = int(len(returns))
    out["psr"] = probabilistic_sharpe_ratio(returns, 0.0)
    if trades is not None:
        out["trades"] = int(trades)
    return out


def _final_evaluation(search: "Search", best, config, full: MarketData, executor: Executor) -> dict:
    """Run the winner on the final span once; the result is kept in ``final.json`` (and ``final/<n>.npz``) so a
    rerun reads it instead of looking at the final span again. Every winner ever evaluated there is listed."""
    folder = search.folder
    path = folder / FINAL_FILE
    record = json.loads(path.read_text()) if path.exists() else {"evaluations": []}
    for entry in record["evaluations"]:
        if entry["trial"] == best.number:
            returns = load_returns(folder / "final", best.number)
            return {**entry, "returns": np.concatenate(returns) if returns else None,
                    "looks": len(record["evaluations"])}
    from backtests.optimize.search import segment_config

    tasks, error = [], None
    try:
        tasks = [FoldTask(best.number, seg, segment_config(config, seg.start, seg.stop), fold_market(full, config, seg))
                 for seg in search.plan.final]
    except ValueError as exc:
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    results: dict[int, Any] = {}
    if tasks:
        for i, value in executor.map_unordered(run_fold, tasks):
            results[i] = value
    returns, trades = [], 0
    for i in range(len(tasks)):
        out = results.get(i, TaskFailure("no result came back"))
        if isinstance(out, TaskFailure) or out.error:
            error = error or out.error
            break
        returns.append(out.returns)
        trades += out.trades
    entry = {"trial": best.number, "error": error, "trades": trades, "segments": len(returns),
             "evaluated": pd.Timestamp.now(tz="UTC").isoformat()}
    if not error:
        save_returns(folder / "final", best.number, returns)
        from backtests import ledger

        d, plan = config.data, search.plan
        ledger.record([ledger.make_entry("optimize-final", config.to_dict(), exchange=d.exchange, symbol=d.symbol,
                                         timeframe=d.timeframe, start=plan.final_start,
                                         end=plan.final[-1].stop - pd.Timedelta(seconds=1),
                                         sharpe=metric_value("sharpe", np.concatenate(returns), d.timeframe)
                                         if returns else None)], search.spec.ledger)
    record["evaluations"].append(entry)
    atomic_write(path, json.dumps(record, indent=2))
    return {**entry, "returns": np.concatenate(returns) if returns and not error else None,
            "looks": len(record["evaluations"])}


def _complete_matrix(folder: Path, table: pd.DataFrame, n_folds: int) -> tuple[list[int], np.ndarray | None]:
    numbers, columns = [], []
    for number in table.loc[table["state"] == "COMPLETE", "number"]:
        segs = load_returns(folder, int(number))
        if segs is None or len(segs) != n_folds:
            continue
        numbers.append(int(number))
        columns.append(np.concatenate(segs))
    if not columns:
        return [], None
    length = min(len(c) for c in columns)
    return numbers, np.column_stack([c[:length] for c in columns])


def analyse(search: "Search", study, full: MarketData, executor: Executor) -> "SearchOutcome":
    """Everything the report shows (see the module docstring)."""
    from backtests.optimize.search import SearchOutcome

    spec, folder, tf = search.spec, search.folder, search.timeframe
    table = trial_table(study, spec)
    best = choose_best(study, spec)
    plan = search.plan
    guards: dict[str, Any] = {}
    summary: dict[str, Any] = {
        "study": spec.study_name, "folder": str(folder), "strategy": spec.config.strategy,
        "symbol": spec.config.data.symbol, "timeframe": tf,
        "objectives": [o.text for o in spec.objectives],
        "search_span": [plan.search[0].start.isoformat(), plan.search[-1].stop.isoformat()],
        "search_bars": plan.search_bars, "folds": len(plan.search),
        "final_span": [plan.final_start.isoformat(), plan.final[-1].stop.isoformat()] if plan.final else None,
        "final_bars": plan.final_bars,
        "trials": {s: int((table["state"] == s).sum()) if len(table) else 0
                   for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
    }
    search_returns = final_returns = None
    final_error = None
    best_config = None
    if best is not None:
        best_config = apply_values(spec.config, {k: v for k, v in best.params.items()})
        segs = load_returns(folder, best.number)
        search_returns = np.concatenate(segs) if segs else None
        summary["best"] = {"trial": best.number, "params": dict(best.params),
                           "values": dict(zip([o.text for o in spec.objectives], best.values))}
        summary["search"] = span_metrics(search_returns, tf, best.user_attrs.get("trades"))
        search_candles = full.candles[(full.candles.index >= plan.search[0].start)
                                      & (full.candles.index < plan.final_start)]
        summary["search_buy_hold"] = span_metrics(buy_hold_returns(search_candles), tf)
        if plan.final:
            final = _final_evaluation(search, best, best_config, full, executor)
            final_returns, final_error = final["returns"], final["error"]
            summary["final"] = span_metrics(final_returns, tf, final.get("trades")) if final_returns is not None \
                else {}
            summary["final_looks"] = final["looks"]
            summary["final_error"] = final_error
            final_candles = full.candles[(full.candles.index >= plan.final_start)
                                         & (full.candles.index < plan.final[-1].stop)]
            summary["final_buy_hold"] = span_metrics(buy_hold_returns(final_candles), tf)

    # the deflated Sharpe ratio: every trial that produced returns counts (pruned ones over their folds), and so
    # does every other configuration the trial ledger holds for this symbol and timeframe over the search span
    trial_sharpes, hashes = [], set()
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number in table.loc[table["state"].isin(["COMPLETE", "PRUNED"]), "number"] if len(table) else []:
        segs = load_returns(folder, int(number))
        if segs:
            trial_sharpes.append(sharpe_ratio(np.concatenate(segs)))
            params = dict(by_number[int(number)].params)
            hashes.add(config_hash(apply_values(spec.config, params).to_dict()))
    finite = [s for s in trial_sharpes if math.isfinite(s)]
    d = spec.config.data
    others = {}
    try:
        held = configs_on(d.exchange, d.symbol, d.timeframe, plan.search[0].start,
                          plan.search[-1].stop - pd.Timedelta(seconds=1), path=spec.ledger)
        others = {h: v for h, v in held.items() if h not in hashes}
    except (OSError, ValueError):
        pass
    scale = math.sqrt(_periods(tf))
    other_sharpes = [float(v) / scale for v in others.values() if isinstance(v, (int, float)) and math.isfinite(v)]
    guards["n_trials_search"] = len(finite)
    guards["n_configs_search"] = len(hashes)
    guards["n_trials_ledger"] = len(others)
    guards["n_trials_dsr"] = len(hashes) + len(others) if hashes else len(finite)
    guards["ledger"] = str(ledger_path(spec.ledger))
    if search_returns is not None and finite:
        pooled = finite + other_sharpes
        variance = float(np.var(pooled, ddof=1)) if len(pooled) > 1 else 0.0
        guards["dsr"] = probabilistic_sharpe_ratio(search_returns,
                                                   expected_max_sharpe(guards["n_trials_dsr"], variance))
        guards["trial_sharpe_std_ann"] = float(np.std(pooled, ddof=1) * scale) if len(pooled) > 1 else 0.0

    numbers, matrix = _complete_matrix(folder, table, len(plan.search)) if len(table) else ([], None)
    guards["n_trials_matrix"] = len(numbers)
    if matrix is not None and matrix.shape[1] >= 2:
        slices = default_slices(matrix.shape[0], spec.pbo_slices)
        try:
            pbo = pbo_cscv(matrix, slices)
            guards["pbo"] = pbo
        except ValueError as exc:
            guards["pbo_error"] = str(exc)
        first = spec.objectives[0]
        scores = table.set_index("number").loc[numbers, first.text].astype(float).to_numpy()
        order = np.argsort(-scores if first.direction == "maximize" else scores, kind="stable")[: spec.top]
        top = [numbers[i] for i in order]
        purge = spec.purge
        if purge is None:
            purge = 0
            if best_config is not None:
                from strategies.registry import get_strategy

                cls = get_strategy(best_config.strategy)
                if uses_model(cls):
                    purge = int(cls.model_config(best_config).horizon)
        embargo = int(round(spec.embargo * matrix.shape[0]))
        try:
            guards["cpcv"] = cpcv_selection(matrix[:, order], spec.cpcv_groups, spec.cpcv_test_groups, purge=purge,
                                            embargo=embargo)
            guards["cpcv_candidates"] = top
        except ValueError as exc:
            guards["cpcv_error"] = str(exc)
        if "cpcv" in guards and _refits(spec):
            guards["cpcv_refit"] = _refit(search, spec, by_number, top, guards["cpcv"], executor)
    complete = table[table["state"] == "COMPLETE"] if len(table) else table
    if len(complete) >= 3:
        guards["importances"] = importances(complete[spec.space.names], complete[spec.objectives[0].text])
    summary["guards"] = {
        "dsr": guards.get("dsr"), "dsr_trials": guards.get("n_trials_dsr"),
        "dsr_search_trials": guards.get("n_trials_search"), "dsr_search_configs": guards.get("n_configs_search"),
        "dsr_ledger_trials": guards.get("n_trials_ledger"), "ledger": guards.get("ledger"),
        "pbo": guards["pbo"].pbo if "pbo" in guards else None,
        "pbo_slices": guards["pbo"].n_slices if "pbo" in guards else None,
        "pbo_trials": guards["pbo"].n_trials if "pbo" in guards else None,
        "pbo_prob_loss": guards["pbo"].prob_loss if "pbo" in guards else None,
        "cpcv_selected_oos_sharpe_median": float(np.nanmedian(guards["cpcv"].selected_test) * math.sqrt(_periods(tf)))
        if "cpcv" in guards else None,
        "cpcv_path_sharpes": [float(x * math.sqrt(_periods(tf))) for x in guards["cpcv"].path_sharpes]
        if "cpcv" in guards else None,
        **_refit_summary(guards.get("cpcv_refit"), tf),
    }
    if spec.multi:
        summary["front"] = [t.number for t in study.best_trials]
    end = plan.final[-1].stop if plan.final else plan.search[-1].stop
    span = full.candles[(full.candles.index >= plan.search[0].start) & (full.candles.index < end)]
    return SearchOutcome(folder, spec, plan, table, best, best_config, search_returns, final_returns, final_error,
                         summary, guards, market_index=span.index, buy_hold=buy_hold_returns(span))


def _refits(spec) -> bool:
    """Whether the CPCV refits models: ``cpcv_refit`` if set, else yes for a strategy with a model."""
    from strategies.registry import get_strategy

    if spec.cpcv_refit is not None:
        return bool(spec.cpcv_refit) and uses_model(get_strategy(spec.config.strategy))
    return uses_model(get_strategy(spec.config.strategy))


def _refit(search: "Search", spec, by_number: dict, top: list[int], cpcv, executor: Executor):
    """The CPCV's selection with each split's selected candidate retrained on the split's training groups
    (:mod:`backtests.optimize.refit`)."""
    from backtests.optimize.refit import refit_cpcv
    from strategies.lstm_strategy import label_cost
    from strategies.ml.features import warmup_bars
    from strategies.registry import get_strategy

    cls = get_strategy(spec.config.strategy)
    candidates = []
    for number in top:
        config = apply_values(spec.config, dict(by_number[number].params))
        cfg = cls.model_config(config)
        cost = cfg.label_cost if getattr(cfg, "label_cost", None) is not None else label_cost(config.broker)
        candidates.append((cfg, cost))
    market = search.search_market
    first = search.plan.search[0].start
    start = int((market.candles.index < first).sum())
    lead = max(warmup_bars(cfg.features) + cfg.window for cfg, _ in candidates) + 10
    trimmed = market.slice(market.candles.index[max(start - lead, 0)], search.plan.final_start)
    offset = int((trimmed.candles.index < first).sum())
    cache = spec.config.cache_dir
    if not cache:
        from strategies.lstm_strategy import default_cache_dir

        cache = str(default_cache_dir())
    return refit_cpcv(cpcv.splits, cpcv.selected, candidates, trimmed, offset, cpcv.n_groups, cpcv.n_test_groups,
                      executor, cache)


def _refit_summary(refit, timeframe: str) -> dict:
    if refit is None:
        return {"cpcv_refit": False}
    scale = math.sqrt(_periods(timeframe))
    finite = refit.selected_test[np.isfinite(refit.selected_test)]
    return {"cpcv_refit": True,
            "cpcv_refit_oos_sharpe_median": float(np.median(finite) * scale) if len(finite) else None,
            "cpcv_refit_split_sharpes": [float(x * scale) if math.isfinite(x) else None
                                         for x in refit.selected_test],
            "cpcv_refit_path_sharpes": [float(x * scale) if math.isfinite(x) else None for x in refit.path_sharpes],
            "cpcv_refit_trained": refit.trained, "cpcv_refit_cached": refit.cached,
            "cpcv_refit_seconds": round(refit.seconds, 1), "cpcv_refit_errors": refit.errors[:5]}


def _periods(timeframe: str) -> float:
    from data_feeds.timeframes import bars_per_year

    return float(bars_per_year(timeframe))


__all__ = ["analyse", "buy_hold_returns", "choose_best", "span_metrics", "trial_table"]
