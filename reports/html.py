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
@media (max-width:600px){body{font-size:14px}main{padding:8px}section{padding:2px 8px 10px}
th,td{padding:4px 6px}h1{font-size:1.25rem}}
"""

_SIGNED = ("Return [%]", "Buy & hold return [%]", "CAGR [%]", "Sharpe", "Sortino", "Calmar", "Avg trade [%]",
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
            if isinstance(v, pd.Timestamp):
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


def render_report(*, title: str, subtitle: str, metrics: Sequence[tuple[str, pd.Series]], charts: Sequence[Chart],
                  trades: pd.DataFrame, config: dict, data_span: dict, notes: Sequence[str] = (),
                  attribution: dict | None = None, manifest: dict | None = None) -> str:
    """The whole page as one string; ``metrics`` columns are ``(name, metrics Series)``, the strategy first."""
    figures = "".join(
        f'<figure><img alt="{escape(c.title)}" src="data:image/png;base64,{base64.b64encode(c.png).decode("ascii")}">'
        + (f"<figcaption>{escape(c.caption)}</figcaption>" if c.caption else "") + "</figure>"
        for c in charts)
    shown = min(len(trades), 50)
    trades_html = (f"<p>{len(trades):,} trades; the first {shown} below, all of them in trades.csv.</p>"
                   + frame_table_html(trades, 50)) if len(trades) else "<p>No trades.</p>"
    config_text = json.dumps(jsonable(config), sort_keys=True, indent=2)
    notes_html = "".join(f"<p>{escape(n)}</p>" for n in notes)
    # what the user must not miss (default market rules, missing funding/mark data, a wiped-out account)
    banner = "".join(f'<p class="banner" style="background:#fdecea;border-left:4px solid #c0392b;padding:.5em .8em;'
                     f'font-weight:600">{escape(str(n))}</p>' for n in (data_span or {}).get("notices", []))
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
<section><h2>Performance</h2>{metrics_table_html(metrics)}{notes_html}</section>
<section><h2>Charts</h2>{figures}</section>
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
