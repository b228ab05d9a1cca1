"""The single-file HTML report: inline CSS, PNG charts as base64 data URIs, no scripts, no external URLs.

Every string that came from the user (names, symbols, config, data span) goes through :func:`html.escape`,
so a strategy named ``<script>alert(1)</script>`` is shown as text. The page is readable from phone to
laptop widths: a centred column at most 1,100 px wide, charts scaled to it, wide tables scroll sideways.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
import pandas as pd

from reports.formatting import format_value, jsonable

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f6f7f9;color:#1d2329;font:15px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:16px}
header{border-bottom:3px solid #1f77b4;margin-bottom:12px}
h1{font-size:1.5rem;margin:.2em 0;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.4em 0 .5em}
.sub{color:#555;margin:.2em 0 .8em;overflow-wrap:anywhere}
section{background:#fff;border-radius:6px;padding:4px 14px 14px;margin:12px 0;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.wrap{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:.92rem}
th,td{padding:5px 10px;border-bottom:1px solid #e6e8eb;white-space:nowrap}
th{text-align:right;background:#f0f3f6;font-weight:600}
th:first-child,td:first-child{text-align:left}
td{text-align:right}
.metrics td:first-child{position:sticky;left:0;background:#fff}
.metrics td:nth-child(2),.metrics th:nth-child(2){background:#eaf2fb}
.neg{color:#b3261e}.pos{color:#1e7b34}
figure{margin:10px 0 18px}
figure img{display:block;width:100%;height:auto;border:1px solid #eceef1;border-radius:4px}
figcaption{color:#555;font-size:.88rem;margin-top:4px}
pre{background:#f3f4f6;padding:10px;border-radius:4px;overflow-x:auto;font-size:.85rem;white-space:pre}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;margin:0}
dt{color:#555}dd{margin:0;overflow-wrap:anywhere;min-width:0}
code{background:#f3f4f6;padding:1px 4px;border-radius:3px;overflow-wrap:anywhere}
footer{color:#777;font-size:.8rem;text-align:center;margin:20px 0}
.verdict{border-left:6px solid #8a8a8a}.verdict.good{border-left-color:#2e9e44}.verdict.bad{border-left-color:#d64541}
.verdict .say{font-size:1.15rem;font-weight:600;margin:.6em 0 .5em}
.verdict table{width:auto}.verdict td.l,.verdict th.l{text-align:left}
.small{color:#555;font-size:.86rem}
@media (max-width:600px){body{font-size:14px}main{padding:8px}section{padding:2px 8px 10px}
th,td{padding:4px 6px}h1{font-size:1.25rem}}
"""

_SIGNED = ("Return [%]", "CAGR [%]", "Sharpe", "Sortino", "Calmar", "Avg trade [%]",
           "Best trade [%]", "Worst trade [%]", "Avg trade PnL [USDT]")
"""Rows whose sign is coloured (red below zero, green above)."""


@dataclass
class Chart:
    """A PNG to embed: ``png`` bytes, a caption and the alt text."""

    title: str
    png: bytes
    caption: str = ""


def _cell(key: str, value: object) -> str:
    text = escape(format_value(key, value, missing="—"))
    if key in _SIGNED and isinstance(value, (int, float, np.number)) and np.isfinite(value) and value != 0:
        return f'<td class="{"neg" if value < 0 else "pos"}">{text}</td>'
    return f"<td>{text}</td>"


def metrics_table_html(columns: Sequence[tuple[str, pd.Series]]) -> str:
    """``<table>`` with one row per metric key (the union, in first-seen order) and one column per name."""
    keys: list[str] = []
    for _, m in columns:
        keys += [k for k in m.index if k not in keys]
    head = "".join(f"<th>{escape(name)}</th>" for name, _ in columns)
    rows = []
    for key in keys:
        cells = "".join(_cell(key, m.get(key)) if key in m.index else "<td>—</td>" for _, m in columns)
        rows.append(f"<tr><td>{escape(key)}</td>{cells}</tr>")
    return (f'<div class="wrap"><table class="metrics"><thead><tr><th>metric</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


_PRECISE = ("size",)
"""Columns shown to 6 significant figures (contract sizes such as 0.004321); other floats get 2 decimals."""


def frame_table_html(df: pd.DataFrame, limit: int = 50) -> str:
    """The first ``limit`` rows of a frame as an escaped ``<table>``: times to the minute (UTC), sizes to 6
    significant figures, other floats (prices, USDT, percent) to 2 decimals."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.head(limit).itertuples(index=False):
        cells = []
        for col, v in zip(df.columns, row):
            if v is None or v is pd.NaT:
                text = "—"
            elif isinstance(v, pd.Timestamp):
                text = format_value("", v)
            elif isinstance(v, (float, np.floating)):
                text = "—" if not np.isfinite(v) else f"{v:.6g}" if col in _PRECISE else f"{v:,.2f}"
            else:
                text = str(v)
            cells.append(f"<td>{escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _definition_list(items: dict) -> str:
    rows = "".join(f"<dt>{escape(str(k))}</dt><dd>{escape(_plain(v))}</dd>" for k, v in items.items())
    return f"<dl>{rows}</dl>"


def _plain(value: object) -> str:
    data = jsonable(value)
    return data if isinstance(data, str) else json.dumps(data, sort_keys=True)


def _attribution_html(attribution: dict | None) -> str:
    """PnL by source in USDT; the terms sum to the change in equity (``total``)."""
    if not attribution:
        return ""
    rows = {name.replace("_", " "): f"{value:,.2f} USDT" for name, value in attribution.items()}
    return ("<section><h2>PnL attribution</h2><p>Where the change in equity came from; the terms sum to the total."
            f"</p>{_definition_list(rows)}</section>")


def _manifest_html(manifest: dict | None) -> str:
    """The reproducibility section: data checksum, seed, checkpoints, package versions, the command line."""
    if not manifest:
        return ""
    data = manifest.get("data") or {}
    items = {"data": f"{data.get('start', '?')} → {data.get('end', '?')}, {data.get('rows', '?')} rows, "
                     f"{data.get('gaps', '?')} missing bar(s)",
             "data sha256": data.get("sha256", "—"), "source": data.get("source", "—"),
             "seed": manifest.get("seed", "—")}
    for k, ck in enumerate(manifest.get("checkpoints") or [], start=1):
        label = ck.get("name") or (f"fold {ck['fold']}" if "fold" in ck else f"checkpoint {k}")
        items[f"model {label}"] = ", ".join(f"{key} {value}" for key, value in ck.items() if key not in ("name", "fold"))
    packages = manifest.get("packages") or {}
    items["packages"] = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
    if manifest.get("platform"):
        items["platform"] = manifest["platform"]
    command = " ".join(str(a) for a in manifest.get("command") or [])
    return ("<section><h2>Reproducibility</h2><p>Everything below is in manifest.json; "
            "<code>lstmbt report RUN_DIR --rerun --out NEW_DIR</code> runs it again and checks metrics.json "
            f"byte for byte.</p>{_definition_list(items)}"
            + (f"<p>Command line:</p><pre>{escape(command)}</pre>" if command else "") + "</section>")


def _num(x: float, digits: int = 2) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _pval(p: float) -> str:
    return "—" if p is None or not np.isfinite(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def verdict_html(name: str, v, bh_name: str | None, trials: dict | None, dsr: float) -> str:
    """The verdict section: the sentence, then strategy / buy-and-hold / flat with Sharpe intervals, PSR and the
    two p-values, then how many configurations the trial ledger has seen on this span and the deflated Sharpe."""
    if v is None:
        return ("<section class=\"verdict\"><h2>Verdict</h2><p class=\"say\">No verdict: the run has no prices to "
                "build buy-and-hold from.</p></section>")
    from reports.verdict import CONFIDENT
    css = "good" if v.beats_bh == CONFIDENT else "bad"
    pct = f"{v.confidence:.0%}"
    rows = [
        f'<tr><td class="l">{escape(name)}</td><td>{_num(v.sharpe)}</td><td>[{_num(v.sharpe_low)}, '
        f'{_num(v.sharpe_high)}]</td><td>{_num(v.psr_vs_0, 3)}</td><td>—</td></tr>',
        f'<tr><td class="l">{escape(bh_name or "buy & hold")}</td><td>{_num(v.bh_sharpe)}</td>'
        f'<td>[{_num(v.bh_sharpe_low)}, {_num(v.bh_sharpe_high)}]</td><td>—</td><td>—</td></tr>',
        f'<tr><td class="l">{escape(name)} − buy &amp; hold</td><td>{_num(v.diff)}</td><td>[{_num(v.diff_low)}, '
        f'{_num(v.diff_high)}]</td><td>—</td><td>{_pval(v.p_vs_bh)}</td></tr>',
        f'<tr><td class="l">{escape(name)} vs flat (Sharpe 0)</td><td>{_num(v.sharpe)}</td><td></td><td></td>'
        f'<td>{_pval(v.p_vs_flat)}</td></tr>']
    table = (f'<div class="wrap"><table><thead><tr><th class="l"></th><th>Sharpe (ann.)</th><th>{pct} interval</th>'
             f'<th>PSR vs 0</th><th>p</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')
    if trials:
        count = int(trials.get("count", 0))
        tried = (f"{count} configuration{'s have' if count != 1 else ' has'} been tried on this span "
                 f"(this one included; trial ledger {escape(str(trials.get('ledger', '')))}). Deflated Sharpe ratio, "
                 f"the probability that the true Sharpe ratio beats the best of {count} tries by luck: "
                 f"{_num(dsr, 3)}.")
    else:
        tried = "The trial ledger was not consulted for this run, so the Sharpe ratio is not deflated."
    rf = f", after a risk-free rate of {v.risk_free:.2%} a year" if v.risk_free else ""
    method = (f"Intervals: {pct} circular block bootstrap of the bar returns ({v.n_boot:,} resamples, blocks of "
              f"{v.block} bars, seed {v.seed}{rf}). The test against buy-and-hold resamples both series on the same "
              "bars and treats both Sharpe ratios as estimates; against flat, whether the Sharpe ratio differs from 0. "
              f"'With confidence' means the difference is positive and p ≤ {1 - v.confidence:.2f}, i.e. its "
              f"{pct} interval lies above 0.")
    return (f'<section class="verdict {css}"><h2>Verdict</h2><p class="say">{escape(name)} '
            f"{escape(v.sentence)}.</p>{table}<p>{tried}</p><p class=\"small\">{escape(method)}</p></section>")


def _figures(charts: Sequence[Chart]) -> str:
    return "".join(
        f'<figure><img alt="{escape(c.title)}" src="data:image/png;base64,{base64.b64encode(c.png).decode("ascii")}">'
        + (f"<figcaption>{escape(c.caption)}</figcaption>" if c.caption else "") + "</figure>"
        for c in charts)


_FOLDS_INTRO = ("Each fold's model trains on its train span, stops early and tunes its confidence threshold on its "
                "validation span, and trades only its test span.")
_DRAWDOWNS_INTRO = ("The five deepest, from the peak before each to the first bar back at that peak (blank while it is "
                    "still going on).")


def _frame_section(title: str, intro: str, frame: pd.DataFrame | None) -> str:
    if frame is None or not len(frame):
        return ""
    return f"<section><h2>{escape(title)}</h2><p>{escape(intro)}</p>{frame_table_html(frame, 100)}</section>"


def render_report(*, title: str, subtitle: str, metrics: Sequence[tuple[str, pd.Series]], charts: Sequence[Chart],
                  trades: pd.DataFrame, config: dict, data_span: dict, notes: Sequence[str] = (),
                  attribution: dict | None = None, manifest: dict | None = None, verdict: str = "",
                  key_charts: Sequence[Chart] = (), folds: pd.DataFrame | None = None,
                  drawdowns: pd.DataFrame | None = None, portfolio: str = "", notices: Sequence[str] = ()) -> str:
    """The whole page as one string, in reading order: the ``verdict`` section (HTML from :func:`verdict_html`),
    the ``key_charts``, the metrics table (columns ``(name, metrics Series)``, the strategy first), the other
    ``charts``, the walk-forward ``folds``, the worst ``drawdowns``, attribution, trades, data, config, manifest.
    ``portfolio``: the HTML of a multi-symbol run's section (:mod:`reports.portfolio_section`), shown after the
    key charts; ``notices``: more lines for the red banner at the top (after the data span's)."""
    shown = min(len(trades), 50)
    conf = " The confidence column is the model's probability of the trade's side at the bar that decided it." \
        if "confidence" in trades.columns else ""
    trades_html = (f"<p>{len(trades):,} trades; the first {shown} below, all of them in trades.csv.{conf}</p>"
                   + frame_table_html(trades, 50)) if len(trades) else "<p>No trades.</p>"
    config_text = json.dumps(jsonable(config), sort_keys=True, indent=2)
    notes_html = "".join(f"<p>{escape(n)}</p>" for n in notes)
    # what the user must not miss (default market rules, missing funding/mark data, a wiped-out account)
    banner = "".join(f'<p class="banner" style="background:#fdecea;border-left:4px solid #c0392b;padding:.5em .8em;'
                     f'font-weight:600">{escape(str(n))}</p>'
                     for n in [*(data_span or {}).get("notices", []), *notices])
    dd = drawdowns
    if dd is not None and len(dd):
        dd = dd.assign(ongoing=np.where(dd["ongoing"].astype(bool), "yes", "no"))
    key_html = f"<section><h2>Key charts</h2>{_figures(key_charts)}</section>" if key_charts else ""
    more_html = f"<section><h2>More charts</h2>{_figures(charts)}</section>" if charts else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header><h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p></header>
{banner}
{verdict}
{key_html}{portfolio}
<section><h2>Performance</h2>{metrics_table_html(metrics)}{notes_html}</section>
{more_html}
{_frame_section("Walk-forward folds", _FOLDS_INTRO, folds)}
{_frame_section("Worst drawdowns", _DRAWDOWNS_INTRO, dd)}
{_attribution_html(attribution)}
<section><h2>Trades</h2>{trades_html}</section>
<section><h2>Data</h2>{_definition_list(data_span)}</section>
<section><h2>Configuration</h2><pre>{escape(config_text)}</pre></section>
{_manifest_html(manifest)}
<footer>lstmbt report</footer>
</main>
</body>
</html>
"""
