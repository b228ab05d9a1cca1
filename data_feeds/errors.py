"""Errors raised for bad data or bad requests; the CLI prints them as one line."""


class DataError(ValueError):
    """Data that cannot be used as asked: unknown symbol, bad span, corrupt or invalid candles."""
