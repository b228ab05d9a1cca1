"""Checkpoints round-trip exactly and refuse anything that does not fit: config, data, shapes, corrupt files."""

import functools
import hashlib
import json
import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch

from strategies.lstm import (CheckpointError, ModelConfig, cache_key, load_checkpoint, save_checkpoint,
                             train_model, train_or_load)
from strategies.lstm.checkpoint import META_FILE, WEIGHTS_FILE
from conftest import btc_1h_early_2023

TRAIN_END = pd.Timestamp("2023-02-10", tz="UTC")
TINY = ModelConfig(window=8, hidden=8, train_bars=400, val_bars=120, epochs=1, batch_size=64)
COST = 0.001


market = btc_1h_early_2023


@functools.lru_cache(maxsize=1)
def trained_model():
    return train_model(*market(), TINY, cost=COST, train_end=TRAIN_END)


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_checkpoint(trained_model(), tmp_path / "ckpt")


def rewrite_meta(directory: Path, **changes) -> None:
    meta = json.loads((directory / META_FILE).read_text())
    meta.update(changes)
    (directory / META_FILE).write_text(json.dumps(meta))


def test_round_trip_gives_the_same_weights_and_metadata(saved):
    original = trained_model()
    loaded = load_checkpoint(saved, expect_config=TINY, expect_data_hash=original.data_hash)
    assert sorted(p.name for p in saved.iterdir()) == [META_FILE, WEIGHTS_FILE]
    a, b = original.model.state()[0], loaded.model.state()[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in loaded.meta.items() if k != "weights_sha256"} == json.loads(json.dumps(original.meta))
    x = torch.randn(3, TINY.window, len(TINY.features))
    with torch.inference_mode():
        assert torch.equal(original.model.net(x), loaded.model.net(x))
    assert not loaded.model.net.training


def test_a_different_config_is_refused_with_the_differing_field(saved):
    with pytest.raises(CheckpointError, match=r"another config: hidden=8 \(expected 16\)"):
        load_checkpoint(saved, expect_config=TINY.replace(hidden=16))
    with pytest.raises(CheckpointError, match="features="):
        load_checkpoint(saved, expect_config=TINY.replace(features=("ret_1", "range")))


def test_runtime_fields_may_differ_and_take_the_requested_values(saved):
    loaded = load_checkpoint(saved, expect_config=TINY.replace(min_confidence=0.55, threads=2))
    assert loaded.min_confidence == 0.55 and loaded.config.threads == 2


def test_other_data_or_cost_is_refused(saved):
    with pytest.raises(CheckpointError, match="trained on other data"):
        load_checkpoint(saved, expect_data_hash="0" * 64)
    with pytest.raises(CheckpointError, match="cost 0.001, expected 0.002"):
        load_checkpoint(saved, expect_cost=0.002)


def test_truncated_weights_are_refused(saved):
    blob = (saved / WEIGHTS_FILE).read_bytes()
    (saved / WEIGHTS_FILE).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="does not match meta.json"):
        load_checkpoint(saved)


def test_corrupt_or_missing_metadata_is_refused(saved):
    (saved / META_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(saved)
    (saved / META_FILE).unlink()
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_checkpoint(saved)


def test_weights_that_do_not_fit_the_network_are_refused(saved):
    meta = json.loads((saved / META_FILE).read_text())
    rewrite_meta(saved, config=dict(meta["config"], hidden=16))
    with pytest.raises(CheckpointError, match="weights do not fit the configured network"):
        load_checkpoint(saved)


class Payload:
    """Unpickling this runs code: it touches a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_weights_are_loaded_without_running_pickled_code(saved, tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(Payload(marker))
    pickle.loads(blob)                                       # plain pickle would run it
    assert marker.exists()
    marker.unlink()
    path = saved / WEIGHTS_FILE
    torch.save({"rnn.weight": Payload(marker)}, path)
    rewrite_meta(saved, weights_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(CheckpointError, match="not a plain tensor state_dict"):
        load_checkpoint(saved)
    assert not marker.exists()


def test_cache_key_changes_with_weight_shaping_config_data_and_cost_only():
    key = cache_key(TINY, "a" * 64, COST)
    assert key == cache_key(TINY.replace(min_confidence=0.6, threads=2), "a" * 64, COST)
    assert len({key, cache_key(TINY.replace(hidden=9), "a" * 64, COST), cache_key(TINY, "b" * 64, COST),
                cache_key(TINY, "a" * 64, 0.002)}) == 4


def test_train_or_load_trains_once_then_reuses_the_cached_model(tmp_path):
    lines: list[str] = []
    first, where = train_or_load(tmp_path, *market(), TINY, cost=COST, train_end=TRAIN_END, progress=lines.append)
    assert lines and lines[0].startswith("epoch 1/1")
    lines.clear()
    second, again = train_or_load(tmp_path, *market(), TINY, cost=COST, train_end=TRAIN_END, progress=lines.append)
    assert again == where and lines == [f"using cached model {where}"]
    a, b = first.model.state()[0], second.model.state()[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
