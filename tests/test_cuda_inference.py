"""``device = "cuda"``: the net's probabilities on the GPU equal the CPU's within 1e-5 (float32 kernels differ in the
last bits), and the LSTM backtest run with the model on the GPU trades like the CPU run. Skips where no GPU exists."""

import copy

import numpy as np
import pytest
import torch

from strategies.lstm.inference import predict_probabilities
from strategies.lstm.model import SignalNet

TOLERANCE = 1e-5  # absolute, on probabilities in [0, 1]

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (torch "
                                f"{torch.__version__}, cuda available: False); the CPU path is tested elsewhere")


def test_cuda_probabilities_equal_cpu_within_tolerance():
    torch.manual_seed(0)
    cpu = SignalNet(6, 32, layers=2)
    gpu = copy.deepcopy(cpu).to("cuda")
    windows = np.random.default_rng(0).standard_normal((3000, 48, 6)).astype(np.float32)
    a = predict_probabilities(cpu, windows, 512)
    b = predict_probabilities(gpu, windows, 512)
    assert np.abs(a - b).max() < TOLERANCE


def test_lstm_backtest_with_the_net_on_cuda_matches_cpu(tmp_path):
    from backtests import BacktestConfig, DataConfig, run_backtest

    span = DataConfig(symbol="BTC/USDT:USDT", timeframe="1h", start="2024-03-01", end="2024-03-06")
    model = {"window": 8, "hidden": 4, "train_bars": 600, "val_bars": 200, "epochs": 1}
    cpu = run_backtest(BacktestConfig(strategy="lstm", data=span, model=model, cache_dir=str(tmp_path)))
    # same cache: the CPU-trained weights are loaded onto the GPU (device is a runtime setting of the checkpoint)
    gpu = run_backtest(BacktestConfig(strategy="lstm", data=span, model={**model, "device": "cuda"},
                                      cache_dir=str(tmp_path)))
    assert gpu.extras["checkpoints"] == cpu.extras["checkpoints"]
    diff = np.abs(cpu.predictions.to_numpy() - gpu.predictions.to_numpy())
    assert diff.max() < TOLERANCE
    if (cpu.target != gpu.target).any():   # only where a probability sits within the tolerance of the threshold
        pytest.fail("CUDA and CPU runs chose different targets")
    assert cpu.equity.equals(gpu.equity)
