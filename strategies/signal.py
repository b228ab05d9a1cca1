"""The three positions a strategy can ask for, shared by labels, the model head, strategies and reports."""

from enum import IntEnum


class Signal(IntEnum):
    """Target direction. Model classes are ``Signal + 1`` (SHORT=0, FLAT=1, LONG=2) so they index arrays."""

    SHORT = -1
    FLAT = 0
    LONG = 1

    @property
    def class_index(self) -> int:
        """Position of this signal in a (short, flat, long) probability vector."""
        return int(self) + 1

    @classmethod
    def from_class_index(cls, index: int) -> "Signal":
        """Inverse of :attr:`class_index`: 0 -> SHORT, 1 -> FLAT, 2 -> LONG."""
        return cls(int(index) - 1)


CLASS_NAMES = ("short", "flat", "long")
