"""Running a trained net: probabilities for windows under ``torch.inference_mode()``, with a scoped thread count."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous count afterwards."""
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def model_device(model: nn.Module) -> torch.device:
    """The device holding the model's parameters."""
    return next(model.parameters()).device


def predict_probabilities(model: nn.Module, windows: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Softmax probabilities (N, 3) float64 for windows (N, window, F), in chunks of ``chunk`` windows.

    The model is put in eval mode; each chunk is copied to a contiguous float32 tensor on the model's device.
    """
    model.eval()
    device = model_device(model)
    out = np.empty((len(windows), 3), dtype=np.float64)
    with torch.inference_mode():
        for a in range(0, len(windows), chunk):
            x = torch.from_numpy(np.ascontiguousarray(windows[a:a + chunk], dtype=np.float32)).to(device)
            out[a:a + chunk] = torch.softmax(model(x), dim=1).double().cpu().numpy()
    return out
