"""The search's output folder: ``report.html`` (self-contained: PNGs embedded, no scripts), the charts as PNG,
``trials.csv`` (one row per trial), ``best.toml`` (the winner as a config ``lstmbt backtest --config`` runs) and
``summary.json`` (the numbers of the report)."""

from __future__ import annotations

import base64
import json
import math
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from data_feeds.files import atomic_path, atomic_write  # noqa: E402
from data_feeds.timeframes import bars_per_year  # noqa: E402

if TYPE_CHECKING:
    from backtests.optimize.search import SearchOutcome

BLUE, ORANGE, GREY, RED, GREEN = "#1f77b4", "#ff7f0e", "#9aa3ad", "#b3261e", "#1e7b34"


# ---------------------------------------------------------------- best.toml

def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"TOML cannot hold {v}")
        return repr(v)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {value!r} to TOML")


def to_toml(values: dict, header: str = "") -> str:
    """Plain config data as TOML: scalars and lists first, then one ``[table]`` per dict (None values left out).
    ``tomllib.loads(to_toml(d))`` equals ``d`` without its None values."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    tables = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines += ["", f"[{key}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def best_toml(outcome: "SearchOutcome") -> str:
    """The winner as a backtest config over the whole config span (the search span and the final span)."""
    config = outcome.best_config.replace(name=f"{outcome.spec.study_name}-best")
    data = config.to_dict()
    data.pop("cache_dir", None)
    plan = outcome.plan
    header = (f"The winner of study {outcome.spec.study_name!r} (trial {outcome.best.number}), written by "
              f"lstmbt optimize.\nSearch span: {plan.search[0].start:%Y-%m-%d %H:%M} .. "
              f"{plan.final_start:%Y-%m-%d %H:%M} (exclusive); final span (never searched): "
              + (f"{plan.final_start:%Y-%m-%d %H:%M} onwards." if plan.final else "none.")
              + "\nRun it: lstmbt backtest --config best.toml (over the whole span, with its own walk-forward "
              "schedule:\nits models are retrained on that schedule, so its numbers differ a little from the "
              "segments the search scored).")
    return to_toml(data, header)


# ---------------------------------------------------------------- charts

def _figure(height: float = 3.6, ncols: int = 1, nrows: int = 1):
    fig = Figure(figsize=(11, height), dpi=100)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.grid(True, color="#e6e8eb", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, axes


def _png(fig: Figure, path: Path) -> bytes:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path.read_bytes()


def history_chart(table: pd.DataFrame, column: str, maximize: bool, path: Path) -> bytes:
    """Objective per trial (complete dots, pruned crosses at their last reported value) with the best so far."""
    fig, axes = _figure()
    ax = axes[0, 0]
    done = table[table["state"] == "COMPLETE"]
    pruned = table[table["state"] == "PRUNED"]
    ax.scatter(done["number"], done[column].astype(float), s=22, color=BLUE, label="complete", zorder=3)
    if len(pruned):
        ax.scatter(pruned["number"], pruned[column].astype(float), s=26, marker="x", color=GREY,
                   label="pruned (last fold reported)", zorder=2)
    if len(done):
        best = done[column].astype(float).cummax() if maximize else done[column].astype(float).cummin()
        ax.step(done["number"], best, where="post", color=ORANGE, linewidth=2, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(column)
    ax.set_title(f"Trial history: {column} over the search span (walk-forward, out of sample)", loc="left")
    ax.legend(loc="lower right" if maximize else "upper right", frameon=False)
    return _png(fig, path)


def _axis_label(objective: str) -> str:
    """``"-max_drawdown"`` -> ``"max drawdown [%] (lower is better)"``."""
    name = objective.lstrip("-")
    label = {"max_drawdown": "max drawdown [%]", "return": "return [%]"}.get(name, name)
    return f"{label} ({'lower' if objective.startswith('-') else 'higher'} is better)"


def pareto_chart(table: pd.DataFrame, columns: list[str], front: list[int], path: Path) -> bytes:
    fig, axes = _figure(4.2)
    ax = axes[0, 0]
    done = table[table["state"] == "COMPLETE"]
    ax.scatter(done[columns[0]].astype(float), done[columns[1]].astype(float), s=20, color=GREY, label="trials")
    on = done[done["number"].isin(front)]
    ax.scatter(on[columns[0]].astype(float), on[columns[1]].astype(float), s=36, color=ORANGE, label="Pareto front")
    ax.set_xlabel(_axis_label(columns[0]))
    ax.set_ylabel(_axis_label(columns[1]))
    ax.set_title("Two objectives: every complete trial and the Pareto front", loc="left")
    ax.legend(frameon=False)
    return _png(fig, path)


def importance_chart(imp: pd.Series, path: Path) -> bytes:
    fig, axes = _figure(0.6 + 0.4 * max(len(imp), 2))
    ax = axes[0, 0]
    ax.barh(list(imp.index)[::-1], list(imp.values)[::-1], color=BLUE)
    ax.set_xlabel("share of the objective's variance explained (correlation ratio, normalised)")
    ax.set_title("Parameter importances (complete trials)", loc="left")
    return _png(fig, path)


def slice_chart(table: pd.DataFrame, names: list[str], column: str, path: Path) -> bytes:
    """Objective against each parameter (complete trials; categories spread a little sideways)."""
    done = table[table["state"] == "COMPLETE"]
    ncols = min(3, max(len(names), 1))
    nrows = -(-max(len(names), 1) // ncols)
    fig, axes = _figure(2.8 * nrows, ncols, nrows)
    rng = np.random.default_rng(0)
    y = done[column].astype(float).to_numpy()
    for ax, name in zip(axes.ravel(), names):
        x = done[name]
        if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
            ax.scatter(x.astype(float), y, s=18, c=done["number"], cmap="viridis")
            if name.endswith((".lr", ".weight_decay")) and (x.astype(float) > 0).all():
                ax.set_xscale("log")
        else:
            cats = sorted(x.astype(str).unique())
            pos = x.astype(str).map({c: i for i, c in enumerate(cats)}).to_numpy(dtype=float)
            ax.scatter(pos + rng.uniform(-0.12, 0.12, len(pos)), y, s=18, c=done["number"], cmap="viridis")
            ax.set_xticks(range(len(cats)), cats)
        ax.set_title(name, loc="left", fontsize=10)
        ax.set_ylabel(column, fontsize=9)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    return _png(fig, path)


def pbo_chart(pbo, path: Path) -> bytes:
    fig, axes = _figure(3.4)
    ax = axes[0, 0]
    logits = pbo.logits[np.isfinite(pbo.logits)]
    ax.hist(logits, bins=min(40, max(10, len(np.unique(logits)))), color=BLUE, alpha=0.85)
    ax.axvline(0, color=RED, linewidth=1.5)
    ax.set_xlabel("logit of the in-sample winner's out-of-sample relative rank (left of 0: below the median trial)")
    ax.set_ylabel("combinations")
    ax.set_title(f"Probability of backtest overfitting: PBO = {pbo.pbo:.2f} ({pbo.n_trials} trials, "
                 f"{pbo.n_slices} slices, {len(pbo.logits):,} combinations)", loc="left")
    return _png(fig, path)


def cpcv_chart(cpcv, labels: list[str], scale: float, path: Path, refit=None) -> bytes:
    fig, axes = _figure(3.8)
    ax = axes[0, 0]
    data = [cpcv.test_sharpes[:, j] * scale for j in range(cpcv.test_sharpes.shape[1])]
    data = [d[np.isfinite(d)] for d in data] + [cpcv.selected_test[np.isfinite(cpcv.selected_test)] * scale]
    names = labels + ["selected"]
    if refit is not None:
        data.append(refit.selected_test[np.isfinite(refit.selected_test)] * scale)
        names.append("selected,\nrefitted")
    ax.boxplot(data, tick_labels=names, showmeans=True)
    paths = cpcv.path_sharpes[np.isfinite(cpcv.path_sharpes)] * scale
    ax.scatter(np.full(len(paths), len(labels) + 1.0), paths, color=ORANGE, zorder=3, s=24,
               label=f"{len(paths)} backtest paths of the selection")
    if refit is not None:
        rpaths = refit.path_sharpes[np.isfinite(refit.path_sharpes)] * scale
        ax.scatter(np.full(len(rpaths), len(labels) + 2.0), rpaths, color=ORANGE, zorder=3, s=24)
    ax.axhline(0, color=GREY, linewidth=1)
    ax.set_ylabel("annualised Sharpe on test groups")
    ax.set_title(f"CPCV: out-of-sample Sharpe of the top candidates (N={cpcv.n_groups}, k={cpcv.n_test_groups}, "
                 f"purge {cpcv.purge} bars, embargo {cpcv.embargo} bars)", loc="left")
    ax.legend(frameon=False, loc="lower left")
    return _png(fig, path)


def folds_chart(labels: list[str], values: list[float], final_from: int, metric: str, path: Path) -> bytes:
    fig, axes = _figure(3.2)
    ax = axes[0, 0]
    colors = [BLUE if i < final_from else ORANGE for i in range(len(values))]
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, rotation=20, ha="right", fontsize=8)
    ax.axhline(0, color=GREY, linewidth=1)
    ax.set_ylabel(metric)
    ax.set_title(f"The winner segment by segment: search folds (blue), final span (orange), {metric} of each",
                 loc="left")
    return _png(fig, path)


def equity_chart(index: pd.DatetimeIndex, returns: np.ndarray, buy_hold: np.ndarray, final_start, path: Path) -> bytes:
    fig, axes = _figure(3.6)
    ax = axes[0, 0]
    ax.plot(index, np.cumprod(1 + returns), color=BLUE, label="winner (segments glued, each from the same cash)")
    ax.plot(index, np.cumprod(1 + buy_hold), color=GREY, label="buy & hold (1x, no fees)")
    if final_start is not None and final_start <= index[-1]:
        ax.axvspan(final_start, index[-1], color=ORANGE, alpha=0.12, label="final span (never searched)")
    ax.set_ylabel("growth of 1")
    ax.set_title("The winner over the search span and the final span", loc="left")
    ax.legend(frameon=False, loc="upper left")
    return _png(fig, path)


# ---------------------------------------------------------------- the page

_CSS = """*{box-sizing:border-box}body{margin:0;background:#f6f7f9;color:#1d2329;font:15px/1.45 -apple-system,
BlinkMacSystemFont,"Segoe UI",Roboto,Arial,sans-serif}main{max-width:1100px;margin:0 auto;padding:16px}
header{border-bottom:3px solid #1f77b4;margin-bottom:12px}h1{font-size:1.5rem;margin:.2em 0}
h2{font-size:1.15rem;margin:1.2em 0 .5em}.sub{color:#555}section{background:#fff;border-radius:6px;
padding:4px 14px 14px;margin:12px 0;box-shadow:0 1px 2px rgba(0,0,0,.06)}.wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:.9rem}
th,td{padding:4px 9px;border-bottom:1px solid #e6e8eb;white-space:nowrap;text-align:right}
th{background:#f0f3f6}th:first-child,td:first-child{text-align:left}figure{margin:10px 0 16px}
figure img{display:block;width:100%;height:auto;border:1px solid #eceef1}figcaption{color:#555;font-size:.88rem}
.big{font-size:1.25rem;font-weight:600}.warn{color:#b3261e}.ok{color:#1e7b34}
pre{background:#f3f4f6;padding:10px;overflow-x:auto;font-size:.85rem}footer{color:#777;font-size:.8rem;
text-align:center;margin:20px 0}"""


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):,.{digits}f}"
    return escape(str(value))


def _img(png: bytes, alt: str, caption: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _side_by_side(summary: dict) -> str:
    rows = [("Sharpe (ann.)", "sharpe"), ("Sortino (ann.)", "sortino"), ("Return [%]", "return"),
            ("Max drawdown [%]", "max_drawdown"), ("Calmar", "calmar"), ("PSR (true Sharpe > 0)", "psr"),
            ("Trades", "trades"), ("Bars", "bars")]
    cols = [("winner, search span", summary.get("search", {})), ("winner, final span", summary.get("final", {})),
            ("buy & hold, search span", summary.get("search_buy_hold", {})),
            ("buy & hold, final span", summary.get("final_buy_hold", {}))]
    def cell(key: str, value) -> str:
        if value is None:
            return "n/a"
        return f"{int(value):,}" if key in ("trades", "bars") else _fmt(value)

    df = pd.DataFrame({"": [r[0] for r in rows],
                       **{name: [cell(k, d.get(k)) for _, k in rows] for name, d in cols}})
    return _table(df)


def render_html(outcome: "SearchOutcome", charts: dict[str, bytes]) -> str:
    s, spec, g = outcome.summary, outcome.spec, outcome.summary["guards"]
    tf = spec.config.data.timeframe
    trials = s["trials"]
    title = f"Search: {spec.config.strategy} on {spec.config.data.symbol} {tf} ({spec.study_name})"
    sub = (f"{sum(trials.values())} trials ({trials['COMPLETE']} complete, {trials['PRUNED']} pruned, "
           f"{trials['FAIL']} failed); objective{'s' if spec.multi else ''}: "
           f"{', '.join(o.text for o in spec.objectives)}; search span {s['search_span'][0][:16]} .. "
           f"{s['search_span'][1][:16]} in {s['folds']} walk-forward folds ({s['search_bars']:,} bars); final span "
           + (f"{s['final_span'][0][:16]} .. {s['final_span'][1][:16]} ({s['final_bars']:,} bars)"
              if s.get("final_span") else "none"))
    parts = [f"<header><h1>{escape(title)}</h1><p class='sub'>{escape(sub)}</p></header>"]
    if outcome.best is None:
        parts.append("<section><h2>No winner</h2><p>No trial completed; see trials.csv for the errors.</p></section>")
    else:
        best = s["best"]
        params = "".join(f"<tr><td>{escape(k)}</td><td>{_fmt(v, 6)}</td></tr>" for k, v in best["params"].items())
        final_note = ""
        if s.get("final_error"):
            final_note = f"<p class='warn'>The final span could not be run: {escape(s['final_error'])}</p>"
        elif s.get("final_looks", 0) > 1:
            final_note = (f"<p class='warn'>The final span has now been looked at for {s['final_looks']} different "
                          f"winners of this study; each look spends some of its independence.</p>")
        parts.append(f"""<section><h2>The winner: trial {best['trial']}</h2>
<div class="wrap"><table><thead><tr><th>parameter</th><th>value</th></tr></thead><tbody>{params}</tbody></table></div>
<h2>In the search vs. on the final span</h2>{_side_by_side(s)}{final_note}
<p>The search saw only the search span; the final span was run once, for the winner, after the search. Every number
comes from out-of-sample segments (models trained only on bars before each segment). best.toml runs the winner:
<code>lstmbt backtest --config {escape(str(outcome.folder / 'best.toml'))}</code></p></section>""")
    dsr, pbo = g.get("dsr"), g.get("pbo")
    verdict = []
    if pbo is not None:
        cls = "warn" if pbo >= 0.5 else "ok" if pbo < 0.2 else ""
        verdict.append(f"<p class='big {cls}'>PBO = {pbo:.2f}</p><p>Probability that the configuration picked as best "
                       f"in-sample ranks below the median trial out of sample, by combinatorially symmetric "
                       f"cross-validation over {g['pbo_trials']} complete trials and {g['pbo_slices']} time slices. "
                       f"Around 0.5 or above: the search picks noise. In {_fmt(g['pbo_prob_loss'] * 100, 1)} % of the "
                       f"combinations the in-sample winner lost money out of sample.</p>")
    else:
        verdict.append("<p>PBO needs at least two complete trials.</p>")
    if dsr is not None:
        cls = "ok" if dsr >= 0.95 else "warn"
        verdict.append(f"<p class='big {cls}'>Deflated Sharpe ratio = {dsr:.3f}</p><p>Probability that the winner's "
                       f"true Sharpe ratio over the search span is above zero after accounting for "
                       f"{g['dsr_trials']} configurations tried: {_fmt(g.get('dsr_search_configs'), 0)} distinct ones in "
                       f"this search ({_fmt(g.get('dsr_search_trials'), 0)} complete and pruned trials) and "
                       f"{_fmt(g.get('dsr_ledger_trials'), 0)} others the trial ledger "
                       f"(<code>{escape(str(g.get('ledger') or ''))}</code>) holds for this symbol and timeframe over "
                       f"the search span (Bailey and López de Prado 2014). "
                       f"0.95 or more: significant at 5 %.</p>")
    if g.get("cpcv_path_sharpes") is not None:
        paths = ", ".join(f"{x:.2f}" for x in g["cpcv_path_sharpes"])
        verdict.append(f"<p>CPCV: median out-of-sample Sharpe of the candidate selected on the training groups "
                       f"{_fmt(g['cpcv_selected_oos_sharpe_median'], 2)}; the selection's backtest paths: {paths}.</p>")
    if g.get("cpcv_refit"):
        paths = ", ".join("n/a" if x is None else f"{x:.2f}" for x in g.get("cpcv_refit_path_sharpes") or [])
        errors = g.get("cpcv_refit_errors") or []
        verdict.append(f"<p>CPCV with refitted models: in each split the selected candidate's model was retrained on "
                       f"the split's training groups only (purged and embargoed) and traded on its test groups "
                       f"(a vectorised replay: next-open fills, half the round-trip cost per position change, no "
                       f"funding): median out-of-sample Sharpe {_fmt(g.get('cpcv_refit_oos_sharpe_median'), 2)}; "
                       f"paths: {escape(paths)}. {_fmt(g.get('cpcv_refit_trained'), 0)} model(s) trained, "
                       f"{_fmt(g.get('cpcv_refit_cached'), 0)} read from the cache, "
                       f"{_fmt(g.get('cpcv_refit_seconds'), 1)} s."
                       + (f" Failed: {escape('; '.join(errors))}." if errors else "") + "</p>")
    parts.append(f"<section><h2>Overfitting guards</h2>{''.join(verdict)}</section>")
    captions = {
        "equity": "Growth of 1 over the search span and the final span (shaded).",
        "folds": "The winner's objective in each walk-forward segment.",
        "history": "Each trial's objective over the search span; crosses are trials pruned after a fold.",
        "pareto": "Both objectives of every complete trial.",
        "pbo": "Logits of the in-sample winner's out-of-sample rank over every split of the time slices.",
        "cpcv": "Test-group Sharpe ratios of the top candidates across the CPCV splits; 'selected' is the one "
                "chosen on the training groups (purged and embargoed) in each split; 'refitted': the same choice "
                "with its model retrained on the split's training groups only.",
        "importances": "How much of the objective's spread each parameter explains on its own.",
        "slices": "The objective against each parameter (colour: trial number).",
    }
    figures = "".join(_img(charts[k], k, captions[k]) for k in captions if k in charts)
    parts.append(f"<section><h2>Charts</h2>{figures}</section>")
    table = outcome.trials.copy()
    if len(table):
        first = spec.objectives[0]
        table = table.sort_values(first.text, ascending=first.direction != "maximize", na_position="last")
        cols = ["number", "state", *[o.text for o in spec.objectives], *spec.space.names, "folds_run", "trades",
                "seconds", "error"]
        parts.append(f"<section><h2>Trials (best first; all in trials.csv)</h2>{_table(table[cols].head(40))}"
                     f"</section>")
    parts.append(f"<section><h2>Search space</h2><pre>{escape(json.dumps(spec.space.to_dict(), indent=1))}</pre>"
                 f"</section>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>{''.join(parts)}"
            "<footer>lstmbt optimize</footer></main></body></html>\n")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_outputs(outcome: "SearchOutcome") -> Path:
    """Write the folder's report files; returns the path of ``report.html``."""
    folder, spec, table = outcome.folder, outcome.spec, outcome.trials
    atomic_write(folder / "trials.csv", table.to_csv(index=False))
    atomic_write(folder / "summary.json", json.dumps(_jsonable(outcome.summary), indent=2))
    charts: dict[str, bytes] = {}
    first = spec.objectives[0]
    scale = math.sqrt(bars_per_year(spec.config.data.timeframe))
    if len(table):
        charts["history"] = history_chart(table, first.text, first.direction == "maximize", folder / "history.png")
        if spec.multi and outcome.best is not None:
            front = [int(n) for n in table.loc[table["state"] == "COMPLETE", "number"]]
            charts["pareto"] = pareto_chart(table, [o.text for o in spec.objectives],
                                            [t for t in front if t in outcome.summary.get("front", front)],
                                            folder / "pareto.png")
        if (table["state"] == "COMPLETE").sum() >= 2:
            charts["slices"] = slice_chart(table, spec.space.names, first.text, folder / "slices.png")
    g = outcome.guards
    if "pbo" in g:
        charts["pbo"] = pbo_chart(g["pbo"], folder / "pbo.png")
    if "cpcv" in g:
        labels = [f"#{n}" for n in g["cpcv_candidates"]]
        charts["cpcv"] = cpcv_chart(g["cpcv"], labels, scale, folder / "cpcv.png", g.get("cpcv_refit"))
    if "importances" in g and len(g["importances"]):
        charts["importances"] = importance_chart(g["importances"], folder / "importances.png")
    if outcome.best is not None:
        atomic_write(folder / "best.toml", best_toml(outcome))
        from backtests.optimize.objective import metric_value
        from backtests.optimize.study import load_returns

        segs = load_returns(folder, outcome.best.number) or []
        finals = load_returns(folder / "final", outcome.best.number) or []
        plan = outcome.plan
        labels = [f"{s.start:%Y-%m-%d}" for s in plan.search[:len(segs)]] + \
                 [f"final {s.start:%Y-%m-%d}" for s in plan.final[:len(finals)]]
        values = [metric_value(first.metric, r, spec.config.data.timeframe) for r in [*segs, *finals]]
        charts["folds"] = folds_chart(labels, [0.0 if not math.isfinite(v) else v for v in values], len(segs),
                                      first.text, folder / "folds.png")
        returns = np.concatenate([*segs, *finals]) if segs else None
        if returns is not None and outcome.market_index is not None and len(outcome.market_index) == len(returns):
            charts["equity"] = equity_chart(outcome.market_index, returns, outcome.buy_hold, plan.final_start
                                            if finals else None, folder / "equity.png")
    path = folder / "report.html"
    atomic_write(path, render_html(outcome, charts))
    return path


__all__ = ["best_toml", "render_html", "to_toml", "write_outputs"]
