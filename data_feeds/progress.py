"""A progress bar per download: pages done of pages planned, rows so far, ETA; silent when stderr is no terminal."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """Thin wrapper over tqdm. ``enabled=None`` shows the bar only when stderr is a terminal (tqdm's rule)."""

    def __init__(self, description: str, pages: int, *, enabled: bool | None = None):
        self.rows = 0
        self._bar = tqdm(total=max(pages, 0), desc=description, unit="page", file=sys.stderr, leave=True,
                         dynamic_ncols=True, disable=None if enabled is None else not enabled)

    def page(self, rows: int) -> None:
        """One page done, holding ``rows`` rows."""
        self.rows += rows
        self._bar.update(1)
        self._bar.set_postfix(rows=self.rows, refresh=False)

    def retry(self, message: str) -> None:
        """Show why the current page is being retried (stays on the bar, not in the log)."""
        self._bar.set_postfix(rows=self.rows, retry=message[:40], refresh=True)

    def close(self) -> None:
        self._bar.close()

    @property
    def disabled(self) -> bool:
        return bool(self._bar.disable)
