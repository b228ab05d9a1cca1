"""The reproducibility manifest: what it records, and that re-running from it gives a byte-identical metrics.json
(baselines, and a tiny walk-forward LSTM trained again from scratch)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from backtests.config import BacktestConfig, DataConfig
from backtests.manifest import ManifestError, read_manifest_file, rerun_from_manifest
from backtests.session import run_and_report as record_run
from backtests.persist import rerender

SHORT = DataConfig(start="2024-03-01", end="2024-03-10")


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory):
    """An sma_cross run with two baselines, recorded once for the module (copy it before changing it)."""
    config = BacktestConfig(name="repro", strategy="sma_cross", baselines=("flat", "buy_hold"), data=SHORT,
                            params={"fast": 5, "slow": 20})
    return record_run(config, tmp_path_factory.mktemp("repro") / "first",
                      argv=["lstmbt", "backtest", "--name", "repro"])


def test_rerunning_baselines_from_the_manifest_reproduces_metrics_json_byte_for_byte(baseline_run, tmp_path):
    first, main, _ = baseline_run
    manifest = read_manifest_file(first)
    assert manifest["data"]["rows"] == len(main.equity) and len(manifest["data"]["sha256"]) == 64
    assert manifest["data"]["gaps"] == 0 and manifest["seed"] == 42
    assert manifest["config"]["params"] == {"fast": 5, "slow": 20}
    assert manifest["command"] == ["lstmbt", "backtest", "--name", "repro"]
    assert manifest["packages"]["pandas"] and manifest["packages"]["backtrader"] and manifest["packages"]["python"]
    again = rerun_from_manifest(first / "manifest.json", tmp_path / "again")
    assert (again / "metrics.json").read_bytes() == (first / "metrics.json").read_bytes()
    assert "Reproducibility" in (first / "report.html").read_text()


def test_a_tiny_walk_forward_lstm_retrained_from_the_manifest_gives_the_same_metrics(tmp_path, monkeypatch):
    model = {"window": 8, "hidden": 4, "train_bars": 600, "val_bars": 200, "epochs": 1,
             "walk_forward_test_bars": 120}
    config = BacktestConfig(name="tiny-lstm", strategy="lstm", baselines=("flat",), data=SHORT, model=model,
                            cache_dir=str(tmp_path / "cache-first"))
    first, main, _ = record_run(config, tmp_path / "first")
    manifest = read_manifest_file(first)
    assert "cache_dir" not in manifest["config"]
    assert len(manifest["checkpoints"]) >= 2 and "torch" in manifest["packages"]
    assert main.predictions is not None and len(main.fold_boundaries) >= 2
    # a fresh model cache: the rerun trains every fold again
    again = rerun_from_manifest(first / "manifest.json", tmp_path / "again", cache_dir=str(tmp_path / "cache-2"))
    assert (again / "metrics.json").read_bytes() == (first / "metrics.json").read_bytes()
    assert json.loads((again / "manifest.json").read_text())["checkpoints"] == manifest["checkpoints"]


def test_re_rendering_a_saved_run_rewrites_the_same_report_without_running(baseline_run, tmp_path, monkeypatch):
    folder = Path(shutil.copytree(baseline_run[0], tmp_path / "run"))
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    for png in folder.glob("*.png"):
        png.unlink()
    import backtests.session as session

    monkeypatch.setattr(session, "run_with_baselines", lambda *a, **k: pytest.fail("re-rendering ran a backtest"))
    rerender(folder)
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after.keys() == before.keys()
    assert after["metrics.json"] == before["metrics.json"] and after["report.html"] == before["report.html"]
    assert after["manifest.json"] == before["manifest.json"]


def test_a_rerun_on_different_data_is_refused(tmp_path):
    config = BacktestConfig(name="d", strategy="flat", data=SHORT)
    first, _, _ = record_run(config, tmp_path / "first")
    doc = read_manifest_file(first)
    doc["data"]["sha256"] = "0" * 64
    (first / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="data differs"):
        rerun_from_manifest(first / "manifest.json", tmp_path / "again")


def test_a_missing_or_foreign_manifest_is_refused_with_a_message(tmp_path):
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest_file(tmp_path)
    (tmp_path / "manifest.json").write_text('{"manifest_version": 99}')
    with pytest.raises(ManifestError, match="version"):
        read_manifest_file(tmp_path)
