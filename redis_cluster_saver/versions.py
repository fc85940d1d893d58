"""Channel versions, as InMemorySaver makes them."""

from __future__ import annotations

import random


def next_version(current: str | int | float | None) -> str:
    """Same shape as InMemorySaver's: a zero-padded counter plus a random tiebreak."""
    if current is None:
        current_v = 0
    elif isinstance(current, (int, float)):
        current_v = int(current)
    else:
        current_v = int(current.split(".")[0])
    return f"{current_v + 1:032}.{random.random():016}"
