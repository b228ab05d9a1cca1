"""How the main job's settings were chosen: walk-forward backtests of a few candidates on a SELECTION span only.

The main job (``backtests/configs/btc_lstm_1h.toml``) trades 2024-07-01 .. 2025-12-31. Its label horizon was
chosen here, on 2022-07-01 .. 2024-06-30, which ends the day before the final span starts, so the final span's
numbers are not the best of several tries on that span. Rerun it from the repository root::

    python backtests/select_main_job.py                      # about 5-10 minutes on 2 CPU cores
    python backtests/select_main_job.py --horizons 4,24 --out runs/selection

Each candidate is the main job's config with one ``[model] horizon``, backtested walk-forward (each fold's model
trains only on bars before its test span, as in the main job) over the selection span with the same broker.
The rule, fixed before looking at the results: **the candidate with the highest Sharpe ratio on the selection
span wins; ties go to the shorter horizon**. Buy-and-hold over the same span is printed for reference, not used
in the rule. Models go to a temporary cache unless ``--cache-dir`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):                   # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MAIN_CONFIG = Path(__file__).resolve().parent / "configs" / "btc_lstm_1h.toml"
SELECTION_START = "2022-07-01"
SELECTION_END = "2024-06-30"
HORIZONS = (4, 8, 12, 24, 48)
RULE = "highest Sharpe of the LSTM on the selection span; ties go to the shorter horizon"
COLUMNS = ("Sharpe", "Return [%]", "Max drawdown [%]", "Trades", "Exposure [%]")


def candidate_configs(base, horizons, start: str, end: str) -> list[tuple[str, object]]:
    """(label, config) per horizon: ``base`` on ``start .. end`` with ``[model] horizon`` replaced."""
    out = []
    for h in horizons:
        model = {**base.model, "horizon": int(h)}
        out.append((f"horizon {h}", base.replace(name=f"select-h{h}", model=model, baselines=(),
                                                 data={"start": start, "end": end})))
    return out


def pick(rows: list[dict]) -> dict:
    """The winning row under :data:`RULE`: highest finite Sharpe, ties to the shorter horizon."""
    scored = [r for r in rows if r.get("horizon") is not None and math.isfinite(r["Sharpe"])]
    if not scored:
        raise ValueError("no candidate has a finite Sharpe ratio on the selection span")
    return max(scored, key=lambda r: (round(r["Sharpe"], 6), -r["horizon"]))


def _row(label: str, horizon, result) -> dict:
    from reports.metrics import result_metrics

    m = result_metrics(result)
    row = {"candidate": label, "horizon": horizon}
    for key in COLUMNS:
        value = m.get(key, float("nan"))
        row[key] = float(value) if value is not None else float("nan")
    quality = [c.get("metrics", {}) for c in result.extras.get("checkpoints", [])]
    row["folds"] = len(quality)
    row["folds below majority (val acc)"] = sum(bool(q.get("val_worse_than_majority")) for q in quality) \
        if quality else None
    row["folds flat (threshold not trusted)"] = sum(q.get("threshold_trusted") is False for q in quality) \
        if quality else None
    return row


def format_table(rows: list[dict]) -> str:
    """Markdown table of the candidates and buy-and-hold."""
    head = ["candidate", *COLUMNS, "folds", "folds below majority (val acc)", "folds flat (threshold not trusted)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["candidate"]]
        for key in head[1:]:
            v = r.get(key)
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                cells.append("-")
            elif key == "Trades":
                cells.append(f"{v:.0f}")
            else:
                cells.append(f"{v:.2f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(MAIN_CONFIG), help="the main job's config (default: %(default)s)")
    parser.add_argument("--start", default=SELECTION_START, help="selection span start (default %(default)s)")
    parser.add_argument("--end", default=SELECTION_END, help="selection span end, inclusive (default %(default)s)")
    parser.add_argument("--horizons", default=",".join(map(str, HORIZONS)), help="label horizons to try, in bars")
    parser.add_argument("--cache-dir", help="model cache (default: a temporary folder, removed at the end)")
    parser.add_argument("--out", help="folder for selection.md and selection.json")
    args = parser.parse_args(argv)

    from backtests.config import load_config
    from backtests.engine import load_run_data, run_backtest
    from data_feeds import parse_span
    from strategies.registry import get_strategy

    base = load_config(args.config)
    final_start, _ = parse_span(base.data.start, base.data.end)
    _, sel_end = parse_span(args.start, args.end)
    if sel_end > final_start:
        print(f"warning: the selection span {args.start} .. {args.end} overlaps the config's final span "
              f"(from {base.data.start}): its numbers would no longer be out of the selection", file=sys.stderr)
    horizons = [int(h) for h in args.horizons.split(",") if h.strip()]
    with tempfile.TemporaryDirectory(prefix="lstmbt-select-") as tmp:
        cache = args.cache_dir or tmp
        candidates = candidate_configs(base.replace(cache_dir=cache), horizons, args.start, args.end)
        history = max(get_strategy("lstm").history_bars(c) for _, c in candidates)
        market, _, _ = load_run_data(candidates[0][1], history)
        rows = []
        for (label, config), h in zip(candidates, horizons):
            print(f"{label}: walk-forward backtest {args.start} .. {args.end}", flush=True)
            rows.append(_row(label, h, run_backtest(config, market=market)))
            print(f"  Sharpe {rows[-1]['Sharpe']:.2f}, return {rows[-1]['Return [%]']:.2f} %", flush=True)
        bh = run_backtest(candidates[0][1].replace(strategy="buy_hold", params={}), market=market)
        rows.append(_row("buy_hold (reference)", None, bh))
    best = pick(rows)
    table = format_table(rows)
    text = (f"Selection span {args.start} .. {args.end} ({base.data.symbol} {base.data.timeframe}); final span of "
            f"{args.config}: {base.data.start} .. {base.data.end}.\nRule: {RULE}.\n\n{table}\n\n"
            f"chosen: {best['candidate']} -> set [model] horizon = {best['horizon']} in {args.config}")
    print()
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "selection.md").write_text(text + "\n")
        (out / "selection.json").write_text(json.dumps({"span": [args.start, args.end], "rule": RULE, "rows": rows,
                                                        "chosen_horizon": best["horizon"]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
