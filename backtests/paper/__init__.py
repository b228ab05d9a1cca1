"""Paper trading: the backtested strategy class on live closed candles, with simulated fills, and its
reconciliation with a backtest of the same bars (see :mod:`backtests.paper.runner`)."""

from backtests.paper.reconcile import Reconciliation, reconcile
from backtests.paper.runner import PaperError, PaperRunner, PaperState

__all__ = ["PaperError", "PaperRunner", "PaperState", "Reconciliation", "reconcile"]
