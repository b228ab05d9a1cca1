"""The shipped torch networks as :class:`~strategies.ml.protocol.Model` implementations.

:class:`TorchModel` adapts any ``nn.Module`` that maps (B, window, F) windows to (B, 3) logits to the protocol:
``fit`` runs :func:`strategies.lstm.loop.fit_network`, ``predict_proba`` a softmax under
``torch.inference_mode()`` in chunks, ``state`` is the ``state_dict`` (tensors) plus the JSON needed to rebuild
the net. :class:`RecurrentModel` (kinds ``lstm`` and ``gru``) and :class:`TransformerModel` (kind
``transformer``) only say which net to build.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from strategies.lstm.loop import fit_network
from strategies.lstm.model import SignalNet
from strategies.lstm.transformer import TransformerNet
from strategies.ml.errors import ConfigError
from strategies.ml.inference import predict_probabilities
from strategies.ml.protocol import FitData, ModelSpec


class TorchModel:
    """Base adapter: subclasses implement :meth:`build` (the ``nn.Module`` for a spec)."""

    input_kind = "windows"
    chunk = 1024          # windows per inference batch

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.net = self.build(spec).to(torch.device(spec.config.device))

    def build(self, spec: ModelSpec) -> nn.Module:
        raise NotImplementedError

    def fit(self, train: FitData, val: FitData, *, seed: int, progress=None) -> dict:
        self.net, stopper, history = fit_network(self.net, train, val, self.spec.config, seed, progress)
        return {"epochs_run": len(history), "best_epoch": stopper.best_epoch, "best_val_loss": stopper.best_loss,
                "history": history}

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) float64 softmax probabilities for windows (N, window, F), in chunks of :attr:`chunk`."""
        return predict_probabilities(self.net, x, self.chunk)

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return dict(self.net.state_dict()), {}

    @classmethod
    def from_state(cls, spec: ModelSpec, tensors: dict, meta: dict) -> "TorchModel":
        model = cls.__new__(cls)
        model.spec = spec
        model.net = cls.build(model, spec)
        try:
            model.net.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            lines = str(exc).strip().splitlines()
            raise ValueError(f"weights do not fit the configured network "
                             f"({lines[1].strip() if len(lines) > 1 else lines[0]})") from exc
        model.net.to(torch.device(spec.config.device)).eval()
        return model


class RecurrentModel(TorchModel):
    """Kinds ``lstm`` / ``gru``: :class:`~strategies.lstm.model.SignalNet` (``hidden``, ``layers``, ``dropout``,
    ``cell``)."""

    def build(self, spec: ModelSpec) -> nn.Module:
        return SignalNet.from_config(spec.config, spec.n_features)


class TransformerModel(TorchModel):
    """Kind ``transformer``: :class:`~strategies.lstm.transformer.TransformerNet` with d_model = ``hidden``,
    ``layers`` encoder layers, ``dropout`` and ``options.heads`` attention heads (default 4)."""

    def build(self, spec: ModelSpec) -> nn.Module:
        cfg = spec.config
        heads = spec.options.get("heads", 4)
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or cfg.hidden % heads:
            raise ConfigError(f"transformer: options.heads must be a whole number dividing hidden ({cfg.hidden}), "
                             f"got {heads!r}")
        return TransformerNet(spec.n_features, spec.window, cfg.hidden, cfg.layers, heads, cfg.dropout)
