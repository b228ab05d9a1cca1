"""``ModelConfig``: every knob of the LSTM pipeline in one frozen, JSON-able dataclass.

>>> cfg = ModelConfig.from_dict({"window": 24, "cell": "gru"})
>>> cfg.window, cfg.hidden, cfg.to_dict()["features"][:2]
(24, 32, ['ret_1', 'ret_4'])
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from strategies.ml.errors import ConfigError
from strategies.ml.features import FEATURES

CELLS = ("lstm", "gru")
BUILTIN_KINDS = ("lstm", "gru", "lstm_stateful", "gru_stateful", "transformer", "logreg", "gbm")

# Fields that do not change the trained weights: a cached model stays valid when only these differ.
RUNTIME_FIELDS = ("min_confidence", "device", "threads", "walk_forward_test_bars", "walk_forward_expanding")


@dataclass(frozen=True)
class ModelConfig:
    """Model kind, network, windowing, labels, training and decision rule of one signal model.

    ``kind``: ``"lstm"``, ``"gru"`` (the recurrent net with a GRU cell; ``cell = "gru"`` says the same),
    ``"lstm_stateful"`` / ``"gru_stateful"`` (the same cells carrying their state bar to bar, one step per bar,
    trained with truncated backpropagation; ``window`` is then the burn-in, see :mod:`strategies.lstm.stateful`),
    ``"transformer"``, ``"logreg"`` (multinomial logistic regression on the decision bar's features), ``"gbm"``
    (LightGBM gradient-boosted trees on the same features; the optional extra ``lstmbt[gbm]``), or a user
    model ``"path/to/my_model.py:MyModel"`` / ``"pkg.mod:MyModel"`` (see :mod:`strategies.ml.protocol`);
    ``options``: a free table handed to the model (``[model.options]``; the Transformer reads ``heads``).

    Spans are counted in bars of the candles' timeframe: with 1h bars the defaults train on ``train_bars=17520``
    (two years) and stop early on ``val_bars=2880`` (120 days) that end just before the first predicted bar.
    ``horizon=4`` labels a decision at bar t by the log return from open[t+1] to open[t+5].
    ``min_confidence=0.45``: a winning class with probability 0.44 is traded as FLAT. ``tune_threshold=True``
    replaces it by the threshold that earned most on the validation span (see :mod:`strategies.ml.threshold`).
    ``walk_forward_test_bars=720``: retrain every 720 bars (30 days of hours) through the backtest span, each model
    trading only the 720 bars after its validation span; 0 trains one model before the span. With
    ``walk_forward_expanding`` each fold's training span keeps the first fold's start and grows.
    ``label_cost=0.003``: a move within +/- 0.3 % (log return) over the horizon is labelled FLAT; unset, the
    broker's round-trip cost ``2 x (taker fee + slippage)`` is used.
    """

    window: int = 48
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0
    cell: str = "lstm"
    horizon: int = 4
    epochs: int = 12
    patience: int = 3
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 42
    train_bars: int = 17520
    val_bars: int = 2880
    features: tuple[str, ...] = ("ret_1", "ret_4", "ret_24", "range", "vol_z", "funding")
    min_confidence: float = 0.0
    class_weighting: bool = True
    device: str = "cpu"
    threads: int = 1
    tune_threshold: bool = False
    walk_forward_test_bars: int = 0
    walk_forward_expanding: bool = False
    kind: str = "lstm"
    options: dict = field(default_factory=dict)
    label_cost: float | None = None

    def __post_init__(self) -> None:
        for name in ("window", "hidden", "layers", "horizon", "epochs", "patience", "batch_size", "train_bars",
                     "val_bars", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model config: {name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"model config: seed must be a whole number >= 0, got {self.seed!r}")
        for name, low, high in (("dropout", 0.0, 0.999), ("lr", 1e-12, 10.0), ("weight_decay", 0.0, 10.0),
                                ("min_confidence", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ConfigError(f"model config: {name} must be a number in [{low}, {high}], got {value!r}")
        for name in ("class_weighting", "tune_threshold", "walk_forward_expanding"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"model config: {name} must be true or false, got {getattr(self, name)!r}")
        bars = self.walk_forward_test_bars
        if isinstance(bars, bool) or not isinstance(bars, int) or bars < 0:
            raise ConfigError(f"model config: walk_forward_test_bars must be a whole number >= 0 (0 = off), "
                              f"got {bars!r}")
        if self.label_cost is not None and (isinstance(self.label_cost, bool)
                                            or not isinstance(self.label_cost, (int, float))
                                            or not 0.0 <= self.label_cost < 1.0):
            raise ConfigError(f"model config: label_cost must be a log return in [0, 1) or absent (the broker's "
                              f"round-trip cost), got {self.label_cost!r}")
        if self.cell not in CELLS:
            raise ConfigError(f"model config: unknown cell {self.cell!r}; use one of {', '.join(CELLS)}")
        self._check_kind()
        if self.device != "cpu" and not str(self.device).startswith("cuda"):
            raise ConfigError(f"model config: device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if isinstance(self.features, str) or not isinstance(self.features, (tuple, list)) or not self.features:
            raise ConfigError("model config: features must be a non-empty list of feature names")
        object.__setattr__(self, "features", tuple(self.features))
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ConfigError(f"model config: unknown feature(s) {', '.join(map(repr, unknown))}; "
                              f"valid: {', '.join(FEATURES)}")
        if len(set(self.features)) != len(self.features):
            raise ConfigError(f"model config: features listed twice in {list(self.features)}")

    def _check_kind(self) -> None:
        kind = self.kind
        if not isinstance(kind, str) or not kind.strip():
            raise ConfigError(f"model config: kind must be a name ({', '.join(BUILTIN_KINDS)}) or "
                              f"'path/to/file.py:Class', got {kind!r}")
        if kind not in BUILTIN_KINDS and ":" not in kind:
            raise ConfigError(f"model config: unknown model kind {kind!r}; use one of {', '.join(BUILTIN_KINDS)} "
                              f"or 'path/to/file.py:Class' / 'package.module:Class'")
        if kind == "gru" or (kind == "lstm" and self.cell == "gru"):      # one name for one network
            object.__setattr__(self, "kind", "gru")
            object.__setattr__(self, "cell", "gru")
        if kind == "gru_stateful" or (kind == "lstm_stateful" and self.cell == "gru"):
            object.__setattr__(self, "kind", "gru_stateful")
            object.__setattr__(self, "cell", "gru")
        if not isinstance(self.options, dict):
            raise ConfigError(f"model config: options must be a table of key = value, got {self.options!r}")
        try:
            json.dumps(self.options, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model config: options must hold plain numbers, text, lists and tables ({exc})") from exc
        if "stateful" in self.options and kind in BUILTIN_KINDS:       # a stateful net is a kind of its own
            hint = (f'kind = "{self.kind}_stateful"' if self.kind in ("lstm", "gru") else
                    f'kind = "lstm_stateful" or "gru_stateful" (kind {self.kind!r} has no recurrent state)')
            raise ConfigError(f"model config: options.stateful is not an option of kind {self.kind!r}; "
                              f"for a stateful recurrent model use {hint}")

    def __hash__(self) -> int:          # ``options`` is a dict: hash the JSON form instead of the fields
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def is_user_model(self) -> bool:
        """True for a ``file.py:Class`` / ``pkg.mod:Class`` kind."""
        return self.kind not in BUILTIN_KINDS

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Config from plain JSON/TOML values; unknown keys raise ConfigError naming the valid ones."""
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a table of key = value, got {type(data).__name__}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ConfigError(f"model config: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
        values = dict(data)
        if "features" in values and isinstance(values["features"], list):
            values["features"] = tuple(values["features"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (features as a list) that :meth:`from_dict` reads back to an equal config."""
        out = asdict(self)
        out["features"] = list(self.features)
        return out

    def training_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the fields that leave the trained weights unchanged (see ``RUNTIME_FIELDS``)."""
        out = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}
        if out.get("label_cost") is None:         # unset: the keys of models cached before the field existed
            out.pop("label_cost", None)
        return out

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
