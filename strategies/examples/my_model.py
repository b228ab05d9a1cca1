"""A user model plugged in through the model protocol: a small numpy MLP, no torch, no lstmbt internals.

Copy this file anywhere and point a config at it::

    [model]
    kind = "path/to/my_model.py:MyModel"
    [model.options]
    hidden = 16

lstmbt then drives it like the shipped models: causal features scaled on the training span, labels net of
costs, walk-forward folds, a validation-tuned threshold, model and prediction caches, the lookahead audit.
The class only needs what :class:`strategies.ml.protocol.Model` lists; it imports nothing from lstmbt.
"""

from __future__ import annotations

import numpy as np


class MyModel:
    """One hidden tanh layer over the window's last bar and its window mean -> softmax over SHORT, FLAT, LONG.

    Full-batch gradient descent on class-weighted cross-entropy; the epoch with the lowest validation loss is kept.
    """

    input_kind = "windows"                  # x: (N, window, F) scaled features, oldest bar first

    def __init__(self, spec) -> None:
        self.n_in = 2 * spec.n_features
        self.hidden = int(spec.options.get("hidden", 16))
        self.steps = int(spec.options.get("steps", 300))
        self.lr = float(spec.options.get("lr", 0.1))
        self.params: dict[str, np.ndarray] = {}

    @staticmethod
    def _inputs(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.concatenate([x[:, -1, :], x.mean(axis=1)], axis=1)       # (N, 2F)

    def _forward(self, z: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
        h = np.tanh(z @ p["w1"] + p["b1"])
        logits = h @ p["w2"] + p["b2"]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return h, e / e.sum(axis=1, keepdims=True)

    def _loss(self, z, y, w, p) -> float:
        _, prob = self._forward(z, p)
        return float(-(w[y] * np.log(prob[np.arange(len(y)), y] + 1e-12)).sum() / w[y].sum())

    def fit(self, train, val, *, seed: int, progress=None) -> dict:
        rng = np.random.default_rng(seed)                                   # same seed, same model
        p = {"w1": rng.normal(0, 1 / np.sqrt(self.n_in), (self.n_in, self.hidden)), "b1": np.zeros(self.hidden),
             "w2": rng.normal(0, 1 / np.sqrt(self.hidden), (self.hidden, 3)), "b2": np.zeros(3)}
        w = np.ones(3) if train.class_weights is None else np.asarray(train.class_weights, dtype=np.float64)
        z, y, zv = self._inputs(train.x), train.y, self._inputs(val.x)
        sw = w[y] / w[y].sum()
        best = (np.inf, 0, {k: v.copy() for k, v in p.items()})
        for step in range(1, self.steps + 1):
            h, prob = self._forward(z, p)
            d = prob.copy()
            d[np.arange(len(y)), y] -= 1.0
            d *= sw[:, None]                                                # dLoss/dlogits
            dh = (d @ p["w2"].T) * (1 - h * h)
            grads = {"w2": h.T @ d, "b2": d.sum(0), "w1": z.T @ dh, "b1": dh.sum(0)}
            for k in p:
                p[k] -= self.lr * grads[k]
            if step % 25 == 0 or step == self.steps:
                val_loss = self._loss(zv, val.y, w, p)
                if val_loss < best[0]:
                    best = (val_loss, step, {k: v.copy() for k, v in p.items()})
                if progress:
                    progress(f"my_model step {step}: val loss {val_loss:.4f}")
        self.params = best[2]
        return {"epochs_run": self.steps, "best_epoch": best[1], "best_val_loss": best[0]}

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self._forward(self._inputs(x), self.params)[1]

    def state(self):
        return dict(self.params), {"hidden": self.hidden}

    @classmethod
    def from_state(cls, spec, tensors, meta):
        model = cls(spec)
        if meta.get("hidden") != model.hidden or tensors["w1"].shape != (model.n_in, model.hidden):
            raise ValueError(f"checkpoint has hidden {meta.get('hidden')}, the config asks for {model.hidden}")
        model.params = {k: np.asarray(v, dtype=np.float64) for k, v in tensors.items()}
        return model
