"""SignalNet maps (B, window, F) to (B, 3) logits for each cell type."""

import pytest
import torch

from strategies.lstm.config import ModelConfig
from strategies.lstm.model import SignalNet


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers, dropout", [(1, 0.0), (2, 0.2)])
def test_output_is_one_logit_per_class_per_window(cell, layers, dropout):
    net = SignalNet.from_config(ModelConfig(cell=cell, hidden=8, layers=layers, dropout=dropout), n_features=6)
    out = net.eval()(torch.randn(5, 48, 6))
    assert out.shape == (5, 3) and torch.isfinite(out).all()


def test_a_gru_is_a_config_change_and_has_fewer_weights():
    lstm = SignalNet.from_config(ModelConfig(cell="lstm"), 6)
    gru = SignalNet.from_config(ModelConfig(cell="gru"), 6)
    assert isinstance(gru.rnn, torch.nn.GRU)
    assert sum(p.numel() for p in lstm.parameters()) == 5219        # the docstring's worked number
    assert sum(p.numel() for p in gru.parameters()) < 5219


def test_output_depends_on_the_last_window_row():
    net = SignalNet(2, hidden=4).eval()
    x = torch.randn(1, 6, 2)
    y = x.clone()
    y[0, -1] += 1.0
    assert not torch.allclose(net(x), net(y))


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="unknown cell 'rnn'"):
        SignalNet(3, cell="rnn")
