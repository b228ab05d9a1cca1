"""Issue 12's hostile inputs through the real entry point (``backtests.cli.main``): each is one line on stderr and
exit 2 before any work starts (or a correct result), never a traceback, never a file outside the output folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtests import cli
from backtests.config import config_from_dict, load_config
from conftest import make_candles
from data_feeds import parse_span

ROOT = Path(__file__).parent.parent
SHORT = ["--start", "2024-01-01", "--end", "2024-01-10"]


def run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    got = capsys.readouterr()
    return code, got.out, got.err


def one_line_exit_2(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstmbt: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.fixture()
def work(tmp_path, monkeypatch):
    """A working folder as cwd; returns it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- TOML values and flags, typed before any work

TOML_CASES = {
    "data = 5": ("data = 5\n", "data must be a [data] table"),
    "params = 5": ("params = 5\n", "params must be a table"),
    "model = big": ('model = "big"\n', "model must be a table"),
    "strategy list": ('strategy = ["lstm"]\n', "strategy must be text"),
    "symbol = 5": ("[data]\nsymbol = 5\n", "symbol must be text"),
    "cash = inf": ("[broker]\ncash = inf\n", "cash must be a finite number"),
    "leverage = true": ("[broker]\nleverage = true\n", "leverage must be a number"),
    "funding = no": ('[broker]\nfunding = "no"\n', "funding must be true or false"),
    "start = 20240101": ("[data]\nstart = 20240101\n", "start must be a date"),
    "hidden = 1e9": ('strategy = "lstm"\n[model]\nhidden = 1e9\n', "training would need about"),
    "hidden = 10**9": ('strategy = "lstm"\n[model]\nhidden = 1000000000\n', "training would need about"),
    "seed = 1.5": ("seed = 1.5\n", "seed must be a whole number"),
    "name = 300 chars": (f'name = "{"n" * 300}"\n', "name is 300 characters long"),
}


@pytest.mark.parametrize("case", sorted(TOML_CASES))
def test_bad_toml_value_is_one_line_exit_2_before_any_work(case, work, capsys):
    text, message = TOML_CASES[case]
    (work / "bad.toml").write_text(text)
    before = files_under(work)
    code, out, err = run(["backtest", "--config", "bad.toml", "--out", "out"], capsys)
    one_line_exit_2(code, err, message)
    assert out == "" and files_under(work) == before


@pytest.mark.parametrize("flags,message", [
    (["--cash", "inf"], "cash must be a finite number"),
    (["--cash", "nan"], "cash must be a finite number"),
    (["--symbol", "A" * 5000 + "/USDT:USDT"], "symbol is 5,010 characters long"),
    (["--name", "x" * 300], "name is 300 characters long"),
    (["--exchange", "../../etc"], "invalid exchange id"),
    (["--data-dir", "FILE"], "is a file, not a folder"),
    (["--cache-dir", "FILE"], "is a file, not a folder"),
])
def test_bad_flag_is_one_line_exit_2_before_any_work(flags, message, work, capsys):
    (work / "FILE").write_text("not a folder")
    before = files_under(work)
    code, out, err = run(["backtest", "--strategy", "flat", "--baselines", "", *SHORT, "--out", "out", *flags],
                         capsys)
    one_line_exit_2(code, err, message)
    assert files_under(work) == before


def test_train_with_a_file_as_cache_dir_or_a_huge_model_is_one_line(work, capsys):
    (work / "FILE").write_text("x")
    code, _, err = run(["train", *SHORT, "--cache-dir", "FILE"], capsys)
    one_line_exit_2(code, err, "is a file, not a folder")
    (work / "big.toml").write_text("[model]\nhidden = 1000000000\n")
    code, _, err = run(["train", "--config", "big.toml", *SHORT], capsys)
    one_line_exit_2(code, err, "training would need about")


def test_string_baselines_toml_dates_and_inclusive_end(tmp_path):
    (tmp_path / "c.toml").write_text('baselines = "sma_cross"\n[data]\nstart = 2024-01-01\nend = 2024-01-31\n')
    config = load_config(tmp_path / "c.toml")
    assert config.baselines == ("sma_cross",)
    assert (config.data.start, config.data.end) == ("2024-01-01", "2024-01-31")
    # a TOML date as end covers that whole day, exactly as the text spelling does
    assert parse_span(config.data.start, config.data.end) == parse_span("2024-01-01", "2024-01-31")
    assert parse_span(config.data.start, config.data.end)[1] == pd.Timestamp("2024-02-01", tz="UTC")


def test_python_api_gets_the_same_checks():
    with pytest.raises(ValueError, match="leverage must be a number"):
        config_from_dict({"broker": {"leverage": True}})
    with pytest.raises(ValueError, match="must be a table of settings"):
        config_from_dict(None)


# ---------------------------------------------------------------- download

def test_download_refuses_a_text_timeout_a_file_as_data_dir_and_reports_http_401(work, capsys):
    base = ["download", "--symbol", "BTC/USDT:USDT", "--timeframe", "1h", *SHORT]
    (work / "ex.toml").write_text('timeout = "fast"\n')
    code, _, err = run([*base, "--exchange-config", "ex.toml", "--data-dir", "store"], capsys)
    one_line_exit_2(code, err, "timeout must be a positive number")
    (work / "FILE").write_text("x")
    code, _, err = run([*base, "--data-dir", "FILE"], capsys)
    one_line_exit_2(code, err, "is a file, not a folder")
    long = ["download", "--symbol", "A" * 5000 + "/USDT:USDT", "--timeframe", "1h", *SHORT, "--data-dir", "store"]
    code, _, err = run(long, capsys)
    one_line_exit_2(code, err, "malformed symbol", "at most 40 characters")

    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b'{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        api = {k: f"{url}/{k}" for k in ("public", "private", "fapiPublic", "fapiPrivate", "fapiPublicV2",
                                          "fapiPublicV3", "fapiPrivateV2", "fapiPrivateV3", "fapiData", "sapi",
                                          "dapiPublic", "dapiPrivate", "dapiData", "eapiPublic", "eapiPrivate",
                                          "papi", "v1")}
        (work / "ex.json").write_text(json.dumps({"urls": {"api": api}, "timeout": 3000, "rateLimit": 1}))
        code, _, err = run([*base, "--exchange-config", "ex.json", "--data-dir", "store"], capsys)
    finally:
        server.shutdown()
        server.server_close()
    one_line_exit_2(code, err, "nothing was downloaded")


# ---------------------------------------------------------------- corrupt data files

def test_corrupt_funding_or_mark_store_file_is_exit_2_naming_it(work, capsys, monkeypatch):
    from data_feeds.store import Store

    store = Store(work / "store")
    monkeypatch.setenv("LSTMBT_DATA_DIR", str(store.root))
    frame = make_candles(np.linspace(100, 110, 240))
    store.write(frame, "binanceusdm", "BTC/USDT:USDT", "1h")
    funding = store.write(pd.DataFrame({"funding_rate": np.full(30, 1e-4)},
                                       index=pd.date_range("2024-01-01", periods=30, freq="8h", tz="UTC",
                                                           name="timestamp")),
                          "binanceusdm", "BTC/USDT:USDT", "1h", "funding")
    funding.write_bytes(funding.read_bytes()[: len(funding.read_bytes()) // 2])      # truncated
    argv = ["backtest", "--strategy", "flat", "--baselines", "", *SHORT, "--out", "out"]
    code, _, err = run(argv, capsys)
    one_line_exit_2(code, err, "corrupt store file", str(funding))
    funding.unlink()
    mark = frame.copy()
    mark.iloc[5, 1] = mark.iloc[5, 2] * 0.5      # high below low: one bad row
    store.write(mark, "binanceusdm", "BTC/USDT:USDT", "1h", "mark")
    code, _, err = run(argv, capsys)
    one_line_exit_2(code, err, "mark")
    assert not (work / "out").exists()


def test_byte_flipped_store_file_fails_its_checksum(work):
    from data_feeds.errors import DataError
    from data_feeds.store import Store

    store = Store(work / "store")
    path = store.write(make_candles(np.linspace(100, 200, 500)), "binanceusdm", "BTC/USDT:USDT", "1h")
    blob = bytearray(path.read_bytes())
    blob[200] ^= 0xFF                # inside the first data page
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="corrupt store file"):
        store.read("binanceusdm", "BTC/USDT:USDT", "1h")


def test_parquet_data_with_text_close_is_one_line_before_any_run_folder(work, capsys):
    frame = make_candles(np.linspace(100, 110, 240))
    frame.index = frame.index.as_unit("ms").asi8
    frame = frame.rename_axis("timestamp").reset_index()
    frame["close"] = frame["close"].map(lambda v: f"{v:.2f} USD")
    frame.to_parquet(work / "mine.parquet")
    code, _, err = run(["backtest", "--strategy", "buy_hold", "--baselines", "", "--data", "mine.parquet", *SHORT,
                        "--out", "out"], capsys)
    one_line_exit_2(code, err, "mine.parquet", "NaN")
    assert sorted(p.name for p in work.iterdir()) == ["mine.parquet"]


def test_partial_store_download_gives_way_to_the_shipped_sample_with_a_note(work, capsys, monkeypatch):
    from data_feeds import load
    from data_feeds.store import Store

    store = Store(work / "store")
    sample = load("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-10")
    store.write(sample.iloc[:30], "binanceusdm", "BTC/USDT:USDT", "1h")   # a download killed after 30 bars
    got = load("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-10", store_dir=store.root)
    assert len(got) == 240 and "shipped sample" in got.attrs["source"]
    assert "the store holds only 2024-01-01 00:00 .. 2024-01-02 05:00" in got.attrs["source"]
    covered = load("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-01", store_dir=store.root)
    assert "store" in covered.attrs["source"] and "sample" not in covered.attrs["source"]


# ---------------------------------------------------------------- run folders: paths, --out, failures, report

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One small real run folder (buy-and-hold, ten days), made once and copied by the tests that tamper with it."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    proc = subprocess.run([sys.executable, "-m", "backtests.cli", "backtest", "--strategy", "buy_hold",
                           "--baselines", "flat", *SHORT, "--out", str(folder)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return folder


def copy_run(finished_run, work) -> Path:
    target = work / "run"
    shutil.copytree(finished_run, target)
    return target


def test_hostile_names_stay_inside_the_output_folder(work, capsys):
    code, out, err = run(["backtest", "--strategy", "flat", "--baselines", "", *SHORT, "--name", "/../../../x"],
                         capsys)
    assert code == 0, err
    made = [p for p in (work / "runs").iterdir()]
    assert len(made) == 1 and made[0].name.endswith("-x") and (made[0] / "report.html").exists()
    assert sorted(p.name for p in work.iterdir()) == ["runs"]


def test_out_into_a_non_empty_folder_is_refused_unless_force(finished_run, work, capsys):
    target = copy_run(finished_run, work)
    (target / "stale.txt").write_text("from before")
    argv = ["backtest", "--strategy", "flat", "--baselines", "", *SHORT, "--out", "run"]
    code, _, err = run(argv, capsys)
    one_line_exit_2(code, err, "is not empty", "--force")
    assert (target / "stale.txt").exists()
    code, _, err = run([*argv, "--force"], capsys)
    assert code == 0, err
    assert not (target / "stale.txt").exists() and (target / "report.html").exists()
    assert sorted(p.name for p in work.iterdir()) == ["run"]      # no staging or old folder left


def test_a_failed_run_leaves_no_folder(work, capsys, monkeypatch):
    import backtests.persist as persist

    def boom(*args, **kwargs):
        raise ValueError("disk full while writing the report")

    monkeypatch.setattr(persist, "write_run_folder", boom)
    code, _, err = run(["backtest", "--strategy", "flat", "--baselines", "", *SHORT, "--out", "out"], capsys)
    one_line_exit_2(code, err, "disk full")
    assert list(work.iterdir()) == []


def test_report_on_tampered_run_folders_is_one_line(finished_run, work, capsys):
    target = copy_run(finished_run, work)
    data = target / "data"
    pristine = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}

    def restore():
        for p, blob in pristine.items():
            p.write_bytes(blob)

    def tamper_result():
        meta = json.loads((data / "0-buy_hold" / "result.json").read_text())
        meta["initial_cash"] = "lots"
        meta["series_names"] = None
        (data / "0-buy_hold" / "result.json").write_text(json.dumps(meta))

    def flip_parquet():
        path = data / "0-buy_hold" / "equity.parquet"
        blob = bytearray(path.read_bytes())
        blob[120] ^= 0xFF
        path.write_bytes(bytes(blob))

    cases = [
        (tamper_result, ["report", "run"], "result.json"),
        (lambda: (data / "runs.json").write_text(""), ["report", "run"], "runs.json"),
        (lambda: (data / "runs.json").write_text('{"runs": []}'), ["report", "run"], "lists no runs"),
        (lambda: (data / "runs.json").write_text(json.dumps({"runs": [{"folder": str(finished_run / "data" /
                                                                                    "0-buy_hold")}]})),
         ["report", "run"], "points outside"),
        (lambda: (data / "runs.json").write_text('{"runs": [{"folder": "../../run"}]}'), ["report", "run"],
         "points outside"),
        (flip_parquet, ["report", "run"], "equity.parquet"),
        (lambda: (target / "manifest.json").write_text(json.dumps({**json.loads(pristine[target / "manifest.json"]),
                                                                    "config": None})),
         ["report", "run", "--rerun", "--out", "again"], "must be a table of settings"),
        (lambda: (target / "manifest.json").write_text(json.dumps({**json.loads(pristine[target / "manifest.json"]),
                                                                    "config": {"out_dir": "/tmp/elsewhere"}})),
         ["report", "run", "--rerun"], "points outside"),
    ]
    for tamper, argv, message in cases:
        restore()
        tamper()
        code, _, err = run(argv, capsys)
        one_line_exit_2(code, err, message)
    assert sorted(p.name for p in work.iterdir()) == ["run"]


def test_backtest_piped_into_head_exits_cleanly_with_a_complete_folder(tmp_path):
    out = tmp_path / "out"
    cmd = (f"{sys.executable} -m backtests.cli backtest --strategy buy_hold --baselines flat {' '.join(SHORT)} "
           f"--out {out} | head -2")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert len(proc.stdout.splitlines()) == 2
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.html").exists() and (out / "data" / "runs.json").exists()


def test_implausible_values_run_with_a_warning(work, capsys):
    frame = make_candles(np.linspace(100, 110, 240))
    frame.iloc[100:, :4] *= 50                      # a price that jumps 50x in one bar
    frame.index = frame.index.as_unit("ms").asi8
    frame.rename_axis("timestamp").reset_index().to_csv(work / "mine.csv", index=False)
    funding = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=30, freq="8h", tz="UTC").as_unit("ms")
                            .asi8, "funding_rate": [1e6] + [1e-4] * 29})
    funding.to_csv(work / "funding.csv", index=False)
    code, out, err = run(["backtest", "--strategy", "buy_hold", "--baselines", "", "--data", "mine.csv",
                          "--funding-data", "funding.csv", *SHORT, "--taker-fee", "0.02", "--out", "out"], capsys)
    assert code == 0, err
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert any("taker_fee" in w for w in warnings), out
    assert any("funding rate" in w for w in warnings), out
    assert any("moves more than 10x" in w for w in warnings), out


# ---------------------------------------------------------------- caches: verified on read, recomputed when bad

def test_poisoned_prediction_cache_and_tampered_checkpoint_are_recomputed_and_said(work, capsys):
    (work / "tiny.toml").write_text('strategy = "lstm"\nbaselines = []\n[data]\nstart = "2023-03-01"\n'
                                    'end = "2023-03-10"\n[model]\nwindow = 8\nhidden = 4\ntrain_bars = 600\n'
                                    'val_bars = 200\nepochs = 1\n')
    argv = ["backtest", "--config", "tiny.toml", "--cache-dir", "models", "--out", "out", "--force"]
    code, first, err = run(argv, capsys)
    assert code == 0, err
    metrics = (work / "out" / "metrics.json").read_bytes()
    [entry] = list((work / "models" / "predictions").glob("*.npy"))
    probs = np.load(entry)
    np.save(entry, np.roll(probs, 1, axis=1))              # well-formed, wrong: the attack in the issue
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert f"warning: prediction cache entry {Path('models') / 'predictions' / entry.name}" in out, out
    assert (work / "out" / "metrics.json").read_bytes() == metrics

    [meta] = list((work / "models").glob("*/meta.json"))
    doc = json.loads(meta.read_text())
    doc["scaler"]["mean"] = [m + 1.0 for m in doc["scaler"]["mean"]]     # a plausible, silent change
    meta.write_text(json.dumps(doc))
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "warning: cached model refused" in out and "does not match its checksum" in out, out
    assert "warning: prediction cache" not in out       # the entry recomputed above is trusted again
    assert (work / "out" / "metrics.json").read_bytes() == metrics


def test_staging_folders_of_dead_runs_are_cleaned_and_live_ones_kept(work, capsys):
    import os

    from backtests.session import staged_folder

    runs = work / "runs"
    runs.mkdir()
    dead = runs / ".20260101-x.999999999.abc123.building"      # no such pid
    live = runs / f".20260101-y.{os.getppid()}.def456.building"     # a process that is alive
    dead.mkdir()
    live.mkdir()
    with staged_folder(runs / "new") as tmp:
        (tmp / "report.html").write_text("ok")
    assert not dead.exists() and live.exists()
    assert (runs / "new" / "report.html").exists()
