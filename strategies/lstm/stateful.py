"""Stateful recurrent models (kinds ``lstm_stateful`` and ``gru_stateful``): the hidden state is carried bar to
bar, one recurrent step per bar (online: one cell step per query), instead of rereading the last ``window`` bars at every decision (the ``lstm`` kind
runs 48 steps per bar with the default window).

Why a kind and not ``[model.options] stateful = true``: the model seam fixes a model's input shape by its class
(``input_kind``, read before a model is built, :mod:`strategies.ml.protocol`), and a stateful net reads another
shape than a windows net: contiguous feature rows (input kind ``"sequence"``), answered row by row from a state
carried through them. One class per input shape keeps the Predictor and the training driver free of model options.

**Where the state starts** (zero state), in training and inference alike: ``window - 1`` bars before the first bar
the model is asked about, so every decision's state has read at least ``window`` bars, and ``window`` is the
burn-in rather than a per-bar cost.

- Training: ``window - 1`` bars before the first training decision bar (the span plan reserves those bars for
  every kind), carried through the training span, its purged tail and on into the validation span.
- Inference: ``window - 1`` bars before the ``span_start`` the :class:`~strategies.ml.predictor.Predictor` is
  attached with: the backtest's first bar, or each fold's first test bar in walk-forward. That point is fixed by
  the run's span and fold plan, never by how much history is loaded nor by where the data ends, so a decision at
  bar t reads bars up to t only and cutting the candles after t leaves every decision up to t unchanged.

**Training** is truncated backpropagation through time over that one contiguous sequence: chunks of
``[model.options] tbptt`` bars (default 128) in time order, the state carried from chunk to chunk and detached at
each boundary, one Adam step per chunk on the class-weighted cross-entropy of every labelled bar in it (each bar's
output predicts that bar's label). It is one stream, not a batch of parallel streams: splitting the span would
restart states in its middle, which inference never does. Validation runs the net over the training rows and
carries the state on through the validation rows, as inference would. No shuffling: the same seed gives the same
weights.

**Trade-offs**: per bar one step instead of ``window`` steps, but the steps are sequential (a batched pass cannot
spread bars over a batch, only over time), the state starts from zero after a burn-in of ``window - 1`` bars per
span or fold, and an epoch is sequential too (``T / tbptt`` optimizer steps on one stream).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from strategies.lstm.loop import loss_weights, train_epochs, weighted_loss_sums
from strategies.lstm.model import SignalNet
from strategies.lstm.networks import TorchModel
from strategies.ml.errors import ConfigError
from strategies.ml.inference import model_device
from strategies.ml.protocol import FitData, ModelSpec

TBPTT_BARS = 128          # default truncation length of backpropagation through time
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None     # GRU h, LSTM (h, c), or None (zero state)


class StatefulNet(SignalNet):
    """:class:`~strategies.lstm.model.SignalNet` (same weights) read at every step with an explicit state.

    Input ``x``: (B, T, F) float32 and a state (None = zero); output (B, T, 3) logits, one row per step, and the
    state after the last step.
    """

    def forward(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        out, state = self.rnn(x, state)
        return self.head(self.dropout(out)), state

    def step(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """One bar for inference: ``x`` (B, F) -> (B, 3) logits and the state after it, with :meth:`forward`'s
        weights and state layout through the cell kernels (``torch.lstm_cell`` / ``gru_cell``, what
        ``nn.LSTMCell`` runs): a one-step ``nn.LSTM`` call costs about 4x the step itself in per-call setup.
        Equal to :meth:`forward` up to float32 rounding; no dropout (eval only)."""
        rnn, lstm = self.rnn, isinstance(self.rnn, nn.LSTM)
        if state is None:
            zeros = x.new_zeros((rnn.num_layers, x.shape[0], rnn.hidden_size))
            state = (zeros, zeros) if lstm else zeros
        h_in, c_in = state if lstm else (state, None)
        hs, cs, inp = [], [], x
        for layer in range(rnn.num_layers):
            weights = [getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if lstm:
                h, c = torch.lstm_cell(inp, (h_in[layer], c_in[layer]), *weights)
                cs.append(c)
            else:
                h = torch.gru_cell(inp, h_in[layer], *weights)
            hs.append(h)
            inp = h
        h_out = torch.stack(hs)
        return self.head(inp), ((h_out, torch.stack(cs)) if lstm else h_out)


def detach(state: State) -> State:
    """The state cut from the graph (a truncation point of backpropagation through time)."""
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def tbptt_bars(options: dict) -> int:
    """``options["tbptt"]`` (bars per truncated-backpropagation chunk), default :data:`TBPTT_BARS`."""
    bars = options.get("tbptt", TBPTT_BARS)
    if isinstance(bars, bool) or not isinstance(bars, int) or bars < 1:
        raise ConfigError(f"stateful model: options.tbptt must be a whole number of bars >= 1, got {bars!r}")
    return bars


def tbptt_epoch(net: StatefulNet, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None,
                optimizer: torch.optim.Optimizer, chunk: int) -> float:
    """One training pass over the sequence ``x`` (1, T, F) with labels ``y`` (T,) (-1: no label) in chunks of
    ``chunk`` bars, the state carried and detached between chunks; returns the class-weighted mean cross-entropy."""
    net.train()
    state, loss_sum, weight_sum = None, 0.0, 0.0
    for a in range(0, x.shape[1], chunk):
        logits, state = net(x[:, a:a + chunk], state)
        state = detach(state)
        yy = y[a:a + chunk]
        labelled = yy >= 0
        if not bool(labelled.any()):
            continue
        wl, w = weighted_loss_sums(logits[0][labelled], yy[labelled], weights)
        optimizer.zero_grad(set_to_none=True)
        (wl / w).backward()
        optimizer.step()
        loss_sum += float(wl.detach())
        weight_sum += float(w.detach())
    return loss_sum / max(weight_sum, 1e-12)


def run_sequence(net: StatefulNet, x: np.ndarray, state: State, chunk: int) -> tuple[torch.Tensor, State]:
    """Logits (T, 3) for rows ``x`` (T, F) resumed from ``state``, in eval mode without gradients, ``chunk`` rows
    per call with the state carried (one row: :meth:`StatefulNet.step`); returns them with the state after the
    last row."""
    if net.training:
        net.eval()
    device = model_device(net)
    parts = []
    with torch.inference_mode():
        if len(x) == 1:
            row = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
            return net.step(row, state)
        for a in range(0, len(x), chunk):
            rows = torch.from_numpy(np.ascontiguousarray(x[a:a + chunk], dtype=np.float32)).to(device)
            logits, state = net(rows[None], state)
            parts.append(logits[0])
    return (torch.cat(parts) if parts else torch.empty((0, 3), device=device)), state


class StatefulRecurrentModel(TorchModel):
    """Kinds ``lstm_stateful`` / ``gru_stateful``: :class:`StatefulNet` (``hidden``, ``layers``, ``dropout``,
    ``cell``; ``options.tbptt``), input kind ``"sequence"`` (see the module docstring)."""

    input_kind = "sequence"
    chunk = 8192          # rows per recurrent call at inference (bounds memory, the state carries across)

    def build(self, spec: ModelSpec) -> nn.Module:
        tbptt_bars(spec.options)
        return StatefulNet.from_config(spec.config, spec.n_features)

    @property
    def tbptt(self) -> int:
        return tbptt_bars(self.spec.options)

    def fit(self, train: FitData, val: FitData, *, seed: int, progress=None) -> dict:
        """Truncated backpropagation through ``train`` (rows in time order), validation continuing its state."""
        cfg, device = self.spec.config, torch.device(self.spec.config.device)
        weights = loss_weights(train, device)
        x = torch.from_numpy(np.ascontiguousarray(train.x, dtype=np.float32)).to(device)[None]
        y = torch.as_tensor(np.asarray(train.y), dtype=torch.int64, device=device)
        rows = np.concatenate([train.x, val.x])
        val_y = torch.as_tensor(np.asarray(val.y), dtype=torch.int64, device=device)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def validate() -> tuple[float, float]:
            logits = run_sequence(self.net, rows, None, self.chunk)[0][len(train.x):]
            labelled = val_y >= 0
            wl, w = weighted_loss_sums(logits[labelled], val_y[labelled], weights)
            correct = int((logits[labelled].argmax(dim=1) == val_y[labelled]).sum())
            return float(wl) / max(float(w), 1e-12), correct / max(int(labelled.sum()), 1)

        self.net, stopper, history = train_epochs(
            self.net, cfg, progress, validate=validate,
            train_epoch=lambda: tbptt_epoch(self.net, x, y, weights, optimizer, self.tbptt))
        return {"epochs_run": len(history), "best_epoch": stopper.best_epoch, "best_val_loss": stopper.best_loss,
                "history": history, "tbptt": self.tbptt}

    def predict_sequence(self, x: np.ndarray, state: State = None) -> tuple[np.ndarray, State]:
        """(T, 3) float64 probabilities for rows ``x`` (T, F) resumed from ``state`` (None: zero), and the state
        after the last row; one row per call is the online step."""
        logits, state = run_sequence(self.net, x, state, self.chunk)
        return torch.softmax(logits, dim=1).double().cpu().numpy(), state

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(T, 3) probabilities for rows ``x`` (T, F), the state starting at zero on row 0."""
        return self.predict_sequence(x)[0]
