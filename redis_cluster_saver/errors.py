"""Errors the saver raises on its own account (Redis errors pass through as they are)."""

from __future__ import annotations


class SaverError(Exception):
    """Base class of the saver's own errors."""


class DurabilityError(SaverError):
    """Too few replicas acknowledged a durable write within its timeout.

    The write reached the primary and may or may not survive a failover: it is
    neither confirmed durable nor undone.
    """

    def __init__(self, acknowledged: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(
            f"only {acknowledged} of {wanted} replica(s) acknowledged the write within "
            f"{timeout_ms} ms: it is on the primary but may be lost if the primary fails "
            "now (it may also survive); retrying the operation is safe"
        )
        self.acknowledged = acknowledged
        self.wanted = wanted
