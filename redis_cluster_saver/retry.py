"""The retry policy, pure: what to do after each failure of an operation, given the
kind of failure (failures.py) and the time. No I/O and no clock of its own: the plan
that asks (session.py) passes the time in and carries the decision out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .failures import Failure

MOVING_PAUSE = 0.1
"""Seconds between attempts while a slot moves (a migration step takes milliseconds)."""
LOST_PAUSE = 0.25
"""Seconds between attempts while a server is unreachable (a failover takes seconds)."""


class Step(str, Enum):
    RAISE = "raise"
    """The failure reaches the caller."""
    PAUSE = "pause"
    """Wait ``Decision.seconds``, then run the operation again."""
    REPROBE = "reprobe"
    """Ask the server again what it allows (it may now refuse what the mode needs,
    or the connection was closed by a proxy refusing a command), then :meth:`probed`."""
    RETRY = "retry"
    """Run the operation again now (the mode changed)."""


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    seconds: float = 0.0


@dataclass
class Retries:
    """One operation's attempts: every failover and slot move is waited out until
    ``failover_wait`` seconds have passed since the operation began."""

    began: float
    failover_wait: float

    def expired(self, now: float) -> bool:
        return now >= self.began + self.failover_wait

    def after(self, failure: Failure | None, now: float) -> Decision:
        """What to do after a failure of this kind (None: one that is not retried)."""
        if failure is None:
            return Decision(Step.RAISE)
        if failure is Failure.MOVING:
            return Decision(Step.RAISE) if self.expired(now) else Decision(Step.PAUSE, MOVING_PAUSE)
        return Decision(Step.REPROBE)

    def probed(self, failure: Failure, mode_changed: bool, now: float) -> Decision:
        """After the re-probe: a new mode is tried at once; the same mode again only
        after a lost connection, until the time is up."""
        if mode_changed:
            return Decision(Step.RETRY)
        if failure is not Failure.LOST or self.expired(now):
            return Decision(Step.RAISE)
        return Decision(Step.PAUSE, LOST_PAUSE)

    def probe_failed(self, now: float) -> Decision:
        """The re-probe itself found the server unreachable."""
        return Decision(Step.RAISE) if self.expired(now) else Decision(Step.PAUSE, LOST_PAUSE)
