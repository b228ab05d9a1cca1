"""Training throughput of lstmbt's loop vs a bare PyTorch loop over the same tensors, side by side in one run.

Both train the same SignalNet (same config, batch size, epochs, optimizer, class-weighted cross-entropy, thread
count) on the same windows of the shipped BTC 1h data. "ours" is :func:`strategies.lstm.train.train_model`'s
training time (DataLoader over :class:`WindowDataset`, per-epoch validation excluded); "bare" is a loop over one
pre-built (N, window, F) tensor indexed by a random permutation. The issue's target: ours >= 80 % of bare.

    python benchmarks/training_speed.py [--epochs 3] [--repeat 3] [--train-bars 17520] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import torch

from data_feeds import load_market
from strategies.lstm.config import ModelConfig
from strategies.lstm.dataset import make_windows
from strategies.lstm.evaluation import class_weights
from strategies.lstm.inference import torch_threads
from strategies.lstm.model import SignalNet
from strategies.lstm.loop import weighted_loss_sums
from strategies.lstm.train import prepare_samples, select_training_data, train_model

TRAIN_END = pd.Timestamp("2025-01-01", tz="UTC")


def ours(candles, funding, cfg: ModelConfig) -> float:
    """Training samples/s of ``train_model`` (training passes only, as it records them)."""
    trained = train_model(candles, funding, cfg, cost=0.001, train_end=TRAIN_END)
    return float(trained.meta["training"]["train_samples_per_second"])


def bare(candles, funding, cfg: ModelConfig) -> float:
    """Training samples/s of a plain loop: one tensor of all windows, a permutation, Adam, weighted CE."""
    data = select_training_data(candles, funding, cfg, TRAIN_END)
    s = prepare_samples(data, cfg, 0.001)
    device = torch.device(cfg.device)
    x = torch.from_numpy(np.ascontiguousarray(make_windows(s.x, s.train_ends, cfg.window), dtype=np.float32))
    x, y = x.to(device), torch.from_numpy(s.train_y).to(device)
    weights = torch.from_numpy(class_weights(s.train_y)).to(device) if cfg.class_weighting else None
    with torch_threads(cfg.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = SignalNet.from_config(cfg, len(cfg.features)).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(y), generator=gen).to(device)
            for a in range(0, len(y), cfg.batch_size):
                idx = perm[a:a + cfg.batch_size]
                wl, w = weighted_loss_sums(model(x[idx]), y[idx], weights)
                optimizer.zero_grad(set_to_none=True)
                (wl / w).backward()
                optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return len(y) * cfg.epochs / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train-bars", type=int, default=17520)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cfg = ModelConfig(epochs=args.epochs, patience=args.epochs + 1, train_bars=args.train_bars, device=args.device,
                      threads=args.threads)
    market = load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2021-06-01", "2024-12-31")
    print(f"SignalNet {cfg.cell} window {cfg.window} hidden {cfg.hidden}, batch {cfg.batch_size}, {cfg.epochs} epochs "
          f"of {cfg.train_bars - cfg.horizon - 1:,} windows, device {cfg.device}, {cfg.threads} thread(s), "
          f"torch {torch.__version__}")
    runs = {"ours": [], "bare": []}
    for _ in range(args.repeat):                      # interleaved, so drift in machine load hits both alike
        runs["bare"].append(bare(market.candles, market.funding, cfg))
        runs["ours"].append(ours(market.candles, market.funding, cfg))
    med = {k: statistics.median(v) for k, v in runs.items()}
    for k in ("bare", "ours"):
        print(f"{k:5s} {med[k]:10,.0f} samples/s  (runs: {', '.join(f'{v:,.0f}' for v in runs[k])})")
    print(f"ratio ours/bare: {med['ours'] / med['bare']:.2f}  (target >= 0.80)")


if __name__ == "__main__":
    main()
