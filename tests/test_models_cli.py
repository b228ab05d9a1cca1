"""Model kinds end to end: a user's model file from a folder outside the repo through ``lstmbt backtest``, bad
model files as one line with exit 2, and the lookahead audit for the logreg and Transformer kinds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from backtests.cli import main
from backtests.config import BacktestConfig
from backtests.lookahead import audit_lookahead

ROOT = Path(__file__).resolve().parents[1]
try:
    import lightgbm  # noqa: F401
    NO_GBM = False
except (ImportError, OSError):
    NO_GBM = True
TINY_MODEL = {"window": 8, "hidden": 4, "train_bars": 600, "val_bars": 200, "epochs": 1}
USER_CONFIG = """
name = "my-model"
strategy = "lstm"
baselines = ["buy_hold"]
[data]
symbol = "BTC/USDT:USDT"
timeframe = "1h"
start = "2024-03-01"
end = "2024-03-06"
[model]
kind = "{kind}"
window = 8
train_bars = 600
val_bars = 200
tune_threshold = true
[model.options]
hidden = 4
steps = 50
"""


def test_a_user_model_file_runs_through_the_backtest_command_from_another_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                     # the user's own folder: relative paths resolve from here
    shutil.copy(ROOT / "strategies" / "examples" / "my_model.py", tmp_path / "my_model.py")
    (tmp_path / "my.toml").write_text(USER_CONFIG.format(kind="my_model.py:MyModel"))
    assert main(["backtest", "--config", "my.toml", "--out", "run", "--cache-dir", "models"]) == 0
    out = capsys.readouterr()
    assert "model: user model my_model.py:MyModel" in out.err + out.out and "my_model step 50" in out.err + out.out
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [c["kind"] for c in manifest["checkpoints"]] == ["my_model.py:MyModel"]
    assert (tmp_path / "run" / "predictions.png").stat().st_size > 0
    # a file without the protocol's methods, or no file at all: one line naming it, exit 2, before any data loads
    (tmp_path / "broken.py").write_text("import numpy as np\nclass MyModel:\n    input_kind = 'windows'\n")
    assert main(["backtest", "--config", "my.toml", "--model-kind", "broken.py:MyModel", "--out", "run2"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"lstmbt: error: model file {tmp_path / 'broken.py'}: MyModel is not a model: it lacks fit, predict_proba, "
        f"state, from_state (see strategies.ml.protocol.Model)"]
    assert main(["backtest", "--config", "my.toml", "--model-kind", "missing.py:MyModel"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.py not found" in err[0]


@pytest.mark.parametrize("strategy", ["logreg", "transformer", pytest.param("gbm", marks=pytest.mark.skipif(
    NO_GBM, reason="LightGBM absent or unloadable: pip install 'lstmbt[gbm]' (and libgomp1)"))])
def test_lookahead_audit_passes_every_component_for_other_model_kinds(strategy, tmp_path):
    config = BacktestConfig(strategy=strategy, model=TINY_MODEL, cache_dir=str(tmp_path)).replace(
        data={"start": "2024-01-01", "end": "2024-01-05"})
    report = audit_lookahead(config, bars=3, seed=1)
    assert report.ok, report.format()
    assert list(report.components) == ["features", "scaler", "predictor", "target", "truncated"]
    assert all(c.cutoffs + getattr(c, "skipped", 0) >= 3 for c in report.components.values())
    assert all(report.components[k].cutoffs == 3 and report.components[k].rows > 0
               for k in ("features", "scaler", "predictor", "target"))
