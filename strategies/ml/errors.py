"""Errors raised by the LSTM pipeline for bad user input; each carries a one-line message that says what to do.

Bad market data (too little history, missing columns) raises :class:`data_feeds.DataError` instead, so the CLI
treats every data problem alike.
"""


class ConfigError(ValueError):
    """A model configuration that cannot be used: unknown key, wrong type, value out of range."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked: missing or corrupt files, or trained with another config/data."""
