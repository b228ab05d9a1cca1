"""Example strategies written as a user would write them, on the public contract only (``from strategies import
...``). Copy one next to your own files and run it from there:

- :mod:`strategies.examples.rsi_long_short`: ``RsiLongShort``, long when the RSI is oversold, short when it is
  overbought.
- :mod:`strategies.examples.lstm_trend`: ``LSTMTrend``, asks the shipped LSTM every bar and trades its signal
  only with the trend (close above or below its moving average).

::

    lstmbt backtest --strategy my_rsi.py:RsiLongShort --symbol ETH/USDT:USDT --timeframe 4h \\
        --start 2023-01-01 --end 2023-12-31
    python my_rsi.py          # the same from Python, through Backtest(...)
"""
