"""Running a trained net: probabilities for windows under ``torch.inference_mode()``, with a scoped thread count."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
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


THREADS_ENV = "LSTMBT_TORCH_THREADS"  # a fixed thread count for batched inference (compare workers set 1)


def free_cores() -> int:
    """Cores this process may run on that no other runnable task holds right now: the CPU affinity set minus the
    other runnable tasks the kernel counts (``/proc/loadavg``, this process excluded); at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return cores
    return max(1, min(cores, cores - (running - 1)))


def batch_threads(limit: int = 8) -> int:
    """Threads for a batched inference pass: ``LSTMBT_TORCH_THREADS`` when set, else the cores free right now
    (:func:`free_cores`, at most ``limit``). Two threads on a core another process keeps busy stall each other
    (a 2-thread pass ran 10x slower than a 1-thread one with both cores loaded); the count never changes the
    numbers, only the time."""
    setting = os.environ.get(THREADS_ENV, "").strip()
    if setting:
        try:
            return max(1, int(setting))
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be a whole number of threads, got {setting!r}") from None
    return max(1, min(free_cores(), limit))


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
