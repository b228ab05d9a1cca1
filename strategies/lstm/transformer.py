"""``TransformerNet``: a small Transformer encoder over the feature window, with a linear head giving
short/flat/long logits."""

from __future__ import annotations

import torch
from torch import nn

from strategies.lstm.model import N_CLASSES


class TransformerNet(nn.Module):
    """Window of scaled features -> class logits.

    Input ``x``: (B, window, F) float32; output (B, 3) logits over (short, flat, long). Each bar's features are
    projected to ``d_model`` and given a learned position embedding; ``layers`` encoder layers (``heads`` heads,
    feed-forward 2 x ``d_model``, pre-norm) attend over the whole window, and the head reads the last bar's output.
    With F=6, d_model=32, 1 layer, window 48: 10,275 parameters.
    """

    def __init__(self, n_features: int, window: int, d_model: int = 32, layers: int = 1, heads: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"transformer: hidden ({d_model}) must be a multiple of options.heads ({heads})")
        self.project = nn.Linear(n_features, d_model)
        self.position = nn.Parameter(torch.zeros(1, window, d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, window, F) -> (B, 3) logits."""
        h = self.encoder(self.project(x) + self.position[:, -x.shape[1]:])
        return self.head(self.norm(h[:, -1]))
