"""Sliding windows over the scaled feature matrix, and the torch Dataset/DataLoader used for training.

Sample k is the window of ``window`` rows ending at decision bar ``ends[k]`` (inclusive): the model sees bars
ends[k]-window+1 .. ends[k] and nothing later.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch.utils.data import DataLoader, Dataset


def make_windows(features: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """Windows (N, window, F) whose last row is ``features[ends[k]]``.

    ``features`` is (T, F). A contiguous ascending run of ``ends`` returns a read-only view (no copy); other
    ``ends`` gather a copy. With T=10, window=3, ends=[2, 9]: rows 0-2 and 7-9. Raises ValueError when a window
    would start before row 0 or end past row T-1.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (T, F), got shape {features.shape}")
    ends = np.asarray(ends, dtype=np.int64)
    if ends.size and (ends.min() < window - 1 or ends.max() >= len(features)):
        raise ValueError(f"window ends must lie in [{window - 1}, {len(features) - 1}] for window {window} over "
                         f"{len(features)} rows; got {ends.min()}..{ends.max()}")
    views = sliding_window_view(features, window, axis=0)        # (T-window+1, F, window), a view
    starts = ends - (window - 1)
    if ends.size and np.array_equal(starts, np.arange(starts[0], starts[0] + len(starts))):
        picked = views[starts[0]:starts[0] + len(starts)]
    else:
        picked = views[starts]
    return picked.transpose(0, 2, 1)                             # (N, window, F)


class WindowDataset(Dataset):
    """Training samples: (window (window, F) float32, class index int64) for decision bars ``ends``.

    Supports batched fetching (``__getitems__``) so the DataLoader gathers a whole batch with one numpy index.
    """

    def __init__(self, features: np.ndarray, ends: np.ndarray, targets: np.ndarray, window: int) -> None:
        if len(ends) != len(targets):
            raise ValueError(f"{len(ends)} window ends but {len(targets)} targets")
        self.features = np.ascontiguousarray(features, dtype=np.float32)
        self.ends = np.asarray(ends, dtype=np.int64)
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
        self.window = window
        make_windows(self.features, self.ends, window)           # validates the ends once

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = make_windows(self.features, self.ends[k:k + 1], self.window)[0]
        return torch.from_numpy(np.array(x, dtype=np.float32)), self.targets[k]

    def __getitems__(self, ks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(ks, dtype=np.int64)
        x = make_windows(self.features, self.ends[idx], self.window)
        return torch.from_numpy(np.array(x, dtype=np.float32)), self.targets[torch.from_numpy(idx)]


def _as_batch(batch):
    """Collate for :class:`WindowDataset`: ``__getitems__`` already returns stacked tensors."""
    return batch


def make_loader(dataset: WindowDataset, batch_size: int, *, shuffle: bool,
                generator: torch.Generator | None = None) -> DataLoader:
    """Batches of (x (B, window, F), y (B,)); shuffled with ``generator`` so the order depends on its seed only."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=_as_batch,
                      num_workers=0)
