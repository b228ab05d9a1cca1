"""The strategy contract: the typed record a strategy's ``prepare()`` hands the engine.

``prepare(config, market, span_start, progress)`` runs once before a backtest, with market data that may hold
history before ``span_start`` (for fitting models). It returns a :class:`Prepared`: the Backtrader params of
the run plus what the engine, the lookahead audit and the reports need to know, as typed fields rather than
dict keys with agreed names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class ModelRecord:
    """What identifies one trained model in a run's manifest and report.

    ``name`` is the fold's name (e.g. ``"fold-03-train-to-20250101T0000Z"``), ``weights_sha256`` the hash of its
    tensors in key order, ``data_sha256`` the hash of the data it was fitted on, ``min_confidence`` its
    validation-tuned decision threshold (None: no threshold), ``kind`` the model family (``"lstm"``, ``"logreg"``...)
    and ``metrics`` plain numbers measured on its validation span.
    """

    name: str
    weights_sha256: str
    data_sha256: str
    min_confidence: float | None = None
    kind: str = ""
    metrics: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain JSON data for manifests and ``result.json``."""
        return {"name": self.name, "weights_sha256": self.weights_sha256, "data_sha256": self.data_sha256,
                "min_confidence": self.min_confidence, "kind": self.kind, "metrics": dict(self.metrics)}


@dataclass
class Prepared:
    """A strategy's answer to ``prepare()``.

    - ``params``: Backtrader params for the run (the config's ``[params]``, checked, plus computed objects).
    - ``signal_source``: the object the strategy asks every bar, when it has one (a Predictor); the engine records
      its ``probability_frame()`` (columns SHORT, FLAT, LONG indexed by bar) for the report.
    - ``probe``: what :mod:`backtests.lookahead` compares at each cut besides the positions (an object with
      ``components(market, span_start) -> dict[str, DataFrame]``); None: positions only.
    - ``models``: one :class:`ModelRecord` per trained model, in fold order.
    - ``fold_boundaries``: where each walk-forward model's test span starts (UTC timestamps).
    """

    params: dict = field(default_factory=dict)
    signal_source: Any = None
    probe: Any = None
    models: list[ModelRecord] = field(default_factory=list)
    fold_boundaries: list[pd.Timestamp] = field(default_factory=list)


def as_prepared(value, owner: str = "prepare()") -> Prepared:
    """``value`` as a :class:`Prepared`: a Prepared as is; a plain dict (what ``prepare()`` returned before the
    typed record) as its params, with an ``extras`` entry dropped. Anything else is a one-line error naming
    ``owner``."""
    if isinstance(value, Prepared):
        return value
    if isinstance(value, dict):
        params = dict(value)
        params.pop("extras", None)
        return Prepared(params=params)
    raise TypeError(f"{owner} must return strategies.Prepared (or a dict of params), got {type(value).__name__}")
