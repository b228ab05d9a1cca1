"""Errors raised for bad data or bad requests; the CLI prints them as one line."""


class DataError(ValueError):
    """Data that cannot be used as asked: unknown symbol, bad span, corrupt or invalid candles."""


class MissingData(DataError):
    """No data of the kind asked for (nothing stored, no rows in the span), as opposed to data that is there but
    corrupt or invalid: optional inputs (funding, mark prices) may be missing, never corrupt."""
