"""Every saver operation, written once as a plan of round trips (no I/O here).

The sync and async savers drive these generators with their shells. A plan
validates and encodes all input before its first round trip, so bad input raises
with nothing written. The plans live by concern: session.py (state, detection, the
retry policy), writes.py, reads.py, across.py (across threads) and maintenance.py.
"""

from __future__ import annotations

from .maintenance import Maintenance


class Operations(Maintenance):
    """The plans of one saver: its key layout, serializer and options."""
