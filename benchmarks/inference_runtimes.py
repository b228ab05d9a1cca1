"""The LSTM's forward pass on other runtimes: torch eager (what lstmbt runs) vs ``torch.compile`` vs ONNX Runtime.

The net is the shipped ``SignalNet`` (LSTM, 6 features, hidden 32, window 48, one layer) with seeded random weights.
Two call shapes, each timed side by side in this process on one thread (median of interleaved calls):

- ``batched``: 512 windows per call, the default Predictor's pass over a span (``[params] mode = "batched"``);
- ``online``: one window per call, the online Predictor and paper trading.

Each runtime's outputs are compared with eager torch on the same inputs (largest absolute logit difference). ONNX
Runtime is optional (``pip install onnxruntime onnx``): without it that row says so. ``torch.compile`` needs a C++
compiler (inductor). Ratios > 1 mean faster than eager torch.

    python benchmarks/inference_runtimes.py [--calls 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

from strategies.lstm.model import SignalNet

FEATURES, HIDDEN, WINDOW, BATCH = 6, 32, 48, 512


def median_seconds(fn: Callable[[], object], calls: int) -> float:
    """Median wall seconds of ``calls`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def onnx_runner(net: SignalNet, example: torch.Tensor, folder: str) -> Callable[[np.ndarray], np.ndarray] | str:
    """A function running ``net`` exported to ONNX on ONNX Runtime (one thread), or why there is none."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "not installed (pip install onnxruntime onnx)"
    path = os.path.join(folder, "net.onnx")
    try:
        torch.onnx.export(net, (example,), path, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    except Exception as exc:           # the exporter needs the onnx package too
        return f"export failed ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="timed calls per runtime and shape (medians)")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = SignalNet(FEATURES, HIDDEN).eval()
    shapes = {"batched": torch.randn(BATCH, WINDOW, FEATURES), "online": torch.randn(1, WINDOW, FEATURES)}
    one, _, _ = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}, 1 thread; load average "
          f"{one:.2f}; SignalNet LSTM hidden {HIDDEN}, window {WINDOW}, {FEATURES} features")
    with tempfile.TemporaryDirectory(prefix="lstmbt-runtimes-") as folder, torch.inference_mode():
        started = time.perf_counter()
        try:
            compiled = torch.compile(net)
            compiled(shapes["batched"])
            compiled(shapes["online"])
            compile_note = f"compiled in {time.perf_counter() - started:.1f} s"
        except Exception as exc:       # no C++ compiler, unsupported platform
            compiled, compile_note = None, f"unavailable ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ort_run = onnx_runner(net, shapes["batched"], folder)
        for shape, x in shapes.items():
            calls = args.calls if shape == "batched" else args.calls * 10
            expected = net(x).numpy()
            eager = median_seconds(lambda: net(x), calls)
            per = f"{BATCH} windows" if shape == "batched" else "1 window"
            print(f"\n{shape} ({per} a call): eager torch {eager * 1e3:.3f} ms a call (1.00x)")
            if compiled is None:
                print(f"  torch.compile: {compile_note}")
            else:
                seconds = median_seconds(lambda: compiled(x), calls)
                diff = float(np.abs(compiled(x).numpy() - expected).max())
                print(f"  torch.compile: {seconds * 1e3:.3f} ms, {eager / seconds:.2f}x, max |diff| {diff:.1e} "
                      f"({compile_note})")
            if isinstance(ort_run, str):
                print(f"  ONNX Runtime: {ort_run}")
            else:
                xn = x.numpy()
                seconds = median_seconds(lambda: ort_run(xn), calls)
                diff = float(np.abs(ort_run(xn) - expected).max())
                print(f"  ONNX Runtime: {seconds * 1e3:.3f} ms, {eager / seconds:.2f}x, max |diff| {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
