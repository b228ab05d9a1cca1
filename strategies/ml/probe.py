"""What the lookahead audit compares for a model strategy besides its positions: per bar, the feature rows, their
scaled values and the model's probabilities, recomputed from a (possibly truncated) market by a fresh batched
Predictor. Works for every model kind: the probe only reads :class:`~strategies.ml.train.TrainedModel`'s
features, scaler and the :class:`~strategies.ml.protocol.Model` behind it.

>>> probe = ModelProbe(models)                      # (Fold, TrainedModel) pairs, in time order  # doctest: +SKIP
>>> probe.components(market, span_start)["predictor"].head()                                    # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from strategies.ml.features import compute_features
from strategies.ml.predictor import Predictor
from strategies.ml.walkforward import WalkForwardPredictor


class ModelProbe:
    """``components(market, span_start)`` -> {"features", "scaler", "predictor"} frames over the span's bars.

    ``models``: one TrainedModel (trained before the span) or (Fold, TrainedModel) pairs of a walk-forward run;
    each bar is scaled by, and predicted with, its own fold's model.
    """

    def __init__(self, models) -> None:
        self.models = models

    def components(self, market, span_start: pd.Timestamp) -> dict[str, pd.DataFrame]:
        span_start = pd.Timestamp(span_start)
        if isinstance(self.models, list):
            pairs = self.models
            first = pairs[0][1]
            predictor = WalkForwardPredictor(pairs, mode="batched")
        else:
            first, pairs = self.models, None
            predictor = Predictor(self.models, mode="batched")
        feats = compute_features(market.candles, market.funding, first.feature_names, bar=first.bar)
        feats = feats[feats.index >= span_start]
        if pairs is None:
            scaled = first.scaler.transform(feats)
        else:
            starts = pd.DatetimeIndex([fold.train_end for fold, _ in pairs])
            fold_of = starts.searchsorted(feats.index, side="right") - 1
            scaled = np.full(feats.shape, np.nan)
            for k, (_, trained) in enumerate(pairs):
                rows = fold_of == k
                if rows.any():
                    scaled[rows] = trained.scaler.transform(feats[rows])
        predictor.attach(market.candles, market.funding, span_start)
        return {"features": feats, "scaler": pd.DataFrame(scaled, index=feats.index, columns=feats.columns),
                "predictor": predictor.probability_frame()}
