"""The one error reports raise for unusable input; the CLI prints it as one line."""


class ReportError(ValueError):
    """Input a report cannot be built from: an empty or NaN equity curve, trades without a ``pnl`` column."""
