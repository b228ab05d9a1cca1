"""Checkpoints: ``model.pt`` (the model's state arrays only) and ``meta.json`` (everything else), checked on load.

A checkpoint directory holds exactly those two files. ``model.pt`` is ``torch.save`` of a plain dict of tensors
(a model's numpy arrays are stored as tensors and handed back as numpy arrays); ``meta.json`` holds the model's
JSON state (``model_state``) with the run's config, scaler, spans and metrics. ``meta.json`` records the sha256 of ``model.pt``, so a
weights file that does not belong to its metadata (a crash between the two writes, a copy gone wrong) is refused.
Weights are read with ``torch.load(..., weights_only=True)``: no pickled code ever runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from data_feeds.files import atomic_write
from strategies.ml.config import ModelConfig
from strategies.ml.errors import CheckpointError, ConfigError
from strategies.ml.kinds import ModelError, model_class, source_sha256
from strategies.ml.train import META_FORMAT, TrainedModel, model_spec

WEIGHTS_FILE = "model.pt"
META_FILE = "meta.json"
_REQUIRED = ("format", "config", "features", "n_features", "scaler", "bar_seconds", "data_sha256", "cost",
             "decision_rule", "weights_sha256")


def save_checkpoint(trained: TrainedModel, directory: str | os.PathLike) -> Path:
    """Write ``model.pt`` then ``meta.json`` (each atomically) into ``directory``; returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    arrays, model_state = trained.model.state()
    state, types = {}, {}
    for key, value in arrays.items():
        if isinstance(value, torch.Tensor):
            state[key], types[key] = value.detach().cpu().clone(), "torch"
        elif isinstance(value, np.ndarray) and value.dtype != object:
            state[key], types[key] = torch.from_numpy(np.array(value, copy=True, order="C")), "numpy"
        else:
            raise ModelError(f"{type(trained.model).__name__}.state(): {key!r} is a {type(value).__name__}; "
                             f"state arrays must be numpy arrays or torch tensors (other values go in the JSON dict)")
    try:
        model_state = json.loads(json.dumps(model_state, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{type(trained.model).__name__}.state(): the second value must be JSON data ({exc})") from exc
    buffer = io.BytesIO()
    torch.save(state, buffer)
    blob = buffer.getvalue()
    meta = dict(trained.meta, model_state=model_state, state_types=types,
                weights_sha256=hashlib.sha256(blob).hexdigest())
    atomic_write(out / WEIGHTS_FILE, blob)
    atomic_write(out / META_FILE, json.dumps(meta, indent=1).encode())
    return out


def cache_key(cfg: ModelConfig, data_hash: str, cost: float) -> str:
    """sha256 (hex) naming a trained model: the config fields that shape the weights, the data hash and the cost.

    ``min_confidence``, ``device`` and ``threads`` are left out: changing them reuses the same weights. A user
    model's file is in the key by its sha256.
    """
    payload = {"format": META_FORMAT, "config": cfg.training_dict(), "data_sha256": data_hash, "cost": float(cost)}
    if cfg.is_user_model:                   # an edited model file trains a new model
        payload["model_source_sha256"] = source_sha256(cfg.kind)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc.__class__.__name__}); "
                              f"delete the checkpoint and retrain") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not a checkpoint metadata object; delete the checkpoint and retrain")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: missing {', '.join(missing)}; delete the checkpoint and retrain")
    if meta["format"] != META_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta['format']!r}, this version reads {META_FORMAT}; "
                              f"retrain")
    return meta


def _config_diff(stored: ModelConfig, expected: ModelConfig) -> list[str]:
    old, new = stored.training_dict(), expected.training_dict()
    return [f"{k}={old[k]!r} (expected {new[k]!r})" for k in new if old.get(k) != new[k]]


def load_checkpoint(directory: str | os.PathLike, *, expect_config: ModelConfig | None = None,
                    expect_data_hash: str | None = None, expect_cost: float | None = None) -> TrainedModel:
    """Read a checkpoint and refuse it (CheckpointError, one line) when it does not fit the request.

    Refused: missing/corrupt files, weights that do not match ``meta.json``, a config whose weight-shaping fields
    differ from ``expect_config``, a data hash other than ``expect_data_hash``, a cost other than ``expect_cost``,
    tensors whose shapes do not fit the network. With ``expect_config`` its runtime fields (``min_confidence``,
    ``device``, ``threads``) replace the stored ones. The model comes back in eval mode.
    """
    where = Path(directory)
    meta_path, weights_path = where / META_FILE, where / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"no checkpoint in {where}: need {WEIGHTS_FILE} and {META_FILE}; train a model first")
    meta = _read_meta(meta_path)
    try:
        cfg = ModelConfig.from_dict(meta["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{meta_path}: stored config is invalid ({exc}); retrain") from exc
    if tuple(meta["features"]) != cfg.features or tuple(meta["scaler"].get("names", ())) != cfg.features:
        raise CheckpointError(f"{meta_path}: feature list {meta['features']} does not match the stored config/scaler; "
                              f"retrain")
    if expect_config is not None:
        diff = _config_diff(cfg, expect_config)
        if diff:
            raise CheckpointError(f"checkpoint {where} was trained with another config: {'; '.join(diff)}; "
                                  f"retrain or use the matching config")
    if expect_data_hash is not None and meta["data_sha256"] != expect_data_hash:
        raise CheckpointError(f"checkpoint {where} was trained on other data (sha256 {meta['data_sha256'][:12]}..., "
                              f"expected {expect_data_hash[:12]}...); retrain on this data")
    if expect_cost is not None and float(meta["cost"]) != float(expect_cost):
        raise CheckpointError(f"checkpoint {where} was labelled with cost {meta['cost']}, expected {expect_cost}; "
                              f"retrain")
    blob = weights_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
        raise CheckpointError(f"{weights_path} does not match {META_FILE} (corrupt or partly written); "
                              f"delete the checkpoint and retrain")
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile, AttributeError) as exc:
        raise CheckpointError(f"{weights_path}: not a plain tensor state_dict ({exc.__class__.__name__}); "
                              f"delete the checkpoint and retrain") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{weights_path}: not a state_dict of tensors; delete the checkpoint and retrain")
    if expect_config is not None:
        runtime = {k: getattr(expect_config, k) for k in ("min_confidence", "device", "threads")}
        meta["config"] = dict(meta["config"], **runtime)
        meta["decision_rule"] = dict(meta["decision_rule"], min_confidence=expect_config.min_confidence)
        cfg = expect_config
    types, model_state = meta.pop("state_types", None) or {}, meta.pop("model_state", None) or {}
    arrays = {k: (v.numpy() if types.get(k) == "numpy" else v) for k, v in state.items()}
    try:
        cls = model_class(cfg.kind)
    except ModelError as exc:
        raise CheckpointError(f"checkpoint {where}: model kind {cfg.kind!r} cannot be loaded ({exc})") from exc
    try:
        model = cls.from_state(model_spec(cfg), arrays, model_state)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{weights_path}: does not fit a {cfg.kind} model as configured "
                              f"({exc.__class__.__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                              f"retrain") from exc
    return TrainedModel(model, meta)
