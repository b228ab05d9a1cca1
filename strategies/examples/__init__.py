"""Example strategies written as a user would write them, on the public contract only (``from strategies import
...``). Copy one next to your own files and run it from there:

- :mod:`strategies.examples.rsi_long_short`: ``RsiLongShort``, long when the RSI is oversold, short when it is
  overbought.
- :mod:`strategies.examples.lstm_trend`: ``LSTMTrend``, asks the shipped LSTM every bar and trades its signal
  only with the trend (close above or below its moving average).
- :mod:`strategies.examples.my_model`: ``MyModel``, a user model (a small numpy MLP) plugged into the walk-forward
  machinery with ``[model] kind = "my_model.py:MyModel"``.

``tests/test_examples_outside_repo.py`` runs all three from a folder outside the repository through ``backtest``,
``report --rerun``, ``compare`` (process pool) and ``check-lookahead``, and from Python through ``Backtest(...)``.

::

    lstmbt backtest --strategy my_rsi.py:RsiLongShort --symbol ETH/USDT:USDT --timeframe 4h \\
        --start 2023-01-01 --end 2023-12-31
    python my_rsi.py          # the same from Python, through Backtest(...)
"""
