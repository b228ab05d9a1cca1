"""Property-based fuzzing of user inputs (CSV and Parquet candles, TOML configs) through the real entry point,
``backtests.cli.main``, in this process: every run exits 0, or 2 with exactly one line on stderr; never a
traceback; nothing is written outside its output folder. Examples are bounded so the test stays a few seconds."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtests import cli

FUZZ = settings(max_examples=int(os.environ.get("LSTMBT_FUZZ_EXAMPLES", "8")), deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck), database=None)
START = pd.Timestamp("2024-01-01", tz="UTC")


def run_in(folder: Path, argv: list[str]) -> tuple[int, str, str]:
    """``cli.main(argv)`` with ``folder`` as the working directory and store; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    cwd, env = os.getcwd(), os.environ.get("LSTMBT_DATA_DIR")
    os.chdir(folder)
    os.environ["LSTMBT_DATA_DIR"] = str(folder / "store")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:              # argparse refusing a flag: its usage line, exit 2
                code = exc.code
    finally:
        os.chdir(cwd)
        if env is None:
            os.environ.pop("LSTMBT_DATA_DIR", None)
        else:
            os.environ["LSTMBT_DATA_DIR"] = env
    return code, out.getvalue(), err.getvalue()


def check_outcome(folder: Path, inputs: set[str], code: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 or lines[0].startswith("usage:"), err
    written = {p.name for p in folder.iterdir()} - inputs
    assert written <= {"out"}, written                     # nothing outside the output folder
    if code == 0:
        assert (folder / "out" / "report.html").exists()
    else:
        assert not (folder / "out").exists()                # a refused or failed run leaves no folder


# ---------------------------------------------------------------- candles files

def _candles(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([close[:1], close[:-1]])
    return pd.DataFrame({"timestamp": (START + pd.to_timedelta(np.arange(n), unit="h")).as_unit("ms").asi8,
                         "open": open_, "high": np.maximum(open_, close) * 1.002,
                         "low": np.minimum(open_, close) * 0.998, "close": close, "volume": rng.uniform(1, 10, n)})


BAD_VALUES = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 1e308, 1e-300, "abc", "", None, True])
MUTATIONS = st.lists(st.tuples(st.sampled_from(["cell", "drop_col", "dup_row", "shuffle", "drop_rows", "rename",
                                                "ts_text", "ts_float"]),
                               st.integers(0, 10_000), BAD_VALUES), max_size=3)


def mutate(frame: pd.DataFrame, mutations) -> pd.DataFrame:
    frame = frame.astype(object)
    for kind, k, value in mutations:
        n = len(frame)
        if n == 0:
            break
        col = frame.columns[k % len(frame.columns)]
        if kind == "cell":
            frame.iat[k % n, k % len(frame.columns)] = value
        elif kind == "drop_col":
            frame = frame.drop(columns=[col])
        elif kind == "dup_row":
            frame = pd.concat([frame, frame.iloc[[k % n]]])
        elif kind == "shuffle":
            frame = frame.sample(frac=1.0, random_state=k)
        elif kind == "drop_rows":
            frame = frame.iloc[: k % n]
        elif kind == "rename":
            frame = frame.rename(columns={col: str(value)})
        elif kind == "ts_text" and "timestamp" in frame:
            frame["timestamp"] = [str(pd.Timestamp(int(t), unit="ms")) if isinstance(t, (int, np.integer)) else t
                                  for t in frame["timestamp"]]
        elif kind == "ts_float" and "timestamp" in frame:
            frame["timestamp"] = [float(t) * 1.5 if isinstance(t, (int, np.integer)) else t for t in frame["timestamp"]]
    return frame


@FUZZ
@given(n=st.integers(0, 120), seed=st.integers(0, 100), mutations=MUTATIONS, parquet=st.booleans())
def test_fuzzed_candle_files_exit_0_or_one_line_2(n, seed, mutations, parquet):
    frame = mutate(_candles(n, seed), mutations)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        name = "candles.parquet" if parquet else "candles.csv"
        if parquet:
            try:
                frame.to_parquet(folder / name)
            except Exception:                     # a frame Arrow cannot hold as one type per column: write text
                frame.astype(str).to_parquet(folder / name)
        else:
            frame.to_csv(folder / name, index=False)
        code, out, err = run_in(folder, ["backtest", "--strategy", "buy_hold", "--baselines", "", "--data", name,
                                         "--start", "2024-01-01", "--end", "2024-01-05", "--out", "out"])
        check_outcome(folder, {name}, code, err)


# ---------------------------------------------------------------- TOML configs

def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, (int,)):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


SCALARS = st.one_of(st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=30), st.dates(dt.date(2018, 1, 1), dt.date(2026, 12, 31)),
                    st.sampled_from(["2024-01-01", "2024-01-05", "flat", "buy_hold", "sma_cross", "../../x",
                                     "BTC/USDT:USDT", "1h", "4h", "/../../etc"]))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
TOP = ["name", "strategy", "baselines", "fraction", "seed", "params", "model", "out_dir", "bogus"]
DATA = ["exchange", "symbol", "timeframe", "start", "end", "path", "store_dir"]
BROKER = ["cash", "leverage", "taker_fee", "maker_fee", "slippage_bps", "funding", "slippage", "liquidation"]


@FUZZ
@given(top=st.dictionaries(st.sampled_from(TOP), VALUES, max_size=3),
       data=st.dictionaries(st.sampled_from(DATA), VALUES, max_size=3),
       broker=st.dictionaries(st.sampled_from(BROKER), VALUES, max_size=3),
       garbage=st.one_of(st.none(), st.text(max_size=40)))
def test_fuzzed_toml_configs_exit_0_or_one_line_2(top, data, broker, garbage):
    base = {"strategy": "flat", "baselines": [], "out_dir": "out"}
    lines = [f"{k} = {toml_value(v)}" for k, v in {**base, **top}.items()]
    base_data = {"start": "2024-01-01", "end": "2024-01-05"}
    lines += ["[data]"] + [f"{k} = {toml_value(v)}" for k, v in {**base_data, **data}.items()]
    lines += ["[broker]"] + [f"{k} = {toml_value(v)}" for k, v in broker.items()]
    text = "\n".join(lines) + "\n" + (garbage or "")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "c.toml").write_text(text, encoding="utf-8", errors="surrogatepass")
        code, out, err = run_in(folder, ["backtest", "--config", "c.toml", "--out", "out"])
        check_outcome(folder, {"c.toml"}, code, err)
