"""A portfolio of perpetuals in one account: several symbols on one clock, isolated or cross margin.

The result contract is :class:`backtests.result.PortfolioBook` (``BacktestResult.portfolio``).
"""
