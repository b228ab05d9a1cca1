"""``SignalNet``: a recurrent encoder (LSTM or GRU) and a linear head giving short/flat/long logits."""

from __future__ import annotations

import torch
from torch import nn

CELLS: dict[str, type[nn.Module]] = {"lstm": nn.LSTM, "gru": nn.GRU}
N_CLASSES = 3  # (short, flat, long), ordered as strategies.signal.CLASS_NAMES


class SignalNet(nn.Module):
    """Window of scaled features -> class logits.

    Input ``x``: (B, window, F) float32. Output: (B, 3) logits over (short, flat, long); softmax gives
    probabilities. The recurrent cell reads the window oldest first and the head reads its last hidden state.
    ``dropout`` acts between stacked layers and before the head. With F=6, hidden=32, one LSTM layer the net has
    4*32*(6+32+2) + 32*3 + 3 = 5,219 parameters.
    """

    def __init__(self, n_features: int, hidden: int = 32, layers: int = 1, dropout: float = 0.0,
                 cell: str = "lstm") -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; use one of {', '.join(CELLS)}")
        self.rnn = CELLS[cell](n_features, hidden, num_layers=layers, batch_first=True,
                               dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, N_CLASSES)

    @classmethod
    def from_config(cls, cfg, n_features: int) -> "SignalNet":
        """Net for a :class:`~strategies.ml.config.ModelConfig` and ``n_features`` inputs."""
        return cls(n_features, cfg.hidden, cfg.layers, cfg.dropout, cfg.cell)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, window, F) -> (B, 3) logits."""
        out, _ = self.rnn(x)
        return self.head(self.dropout(out[:, -1]))
