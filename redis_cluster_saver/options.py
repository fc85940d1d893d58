"""Options of a saver that need parsing: TTL, durable mode and retention."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TTL:
    """Expiry of a thread's keys, applied to all of them together."""

    minutes: float | None = None
    refresh_on_read: bool = False

    @property
    def ms(self) -> int:
        return 0 if not self.minutes else max(1, int(self.minutes * 60_000))

    @classmethod
    def parse(cls, ttl: Mapping[str, Any] | TTL | None) -> TTL:
        if ttl is None:
            return cls()
        if isinstance(ttl, TTL):  # checked as the mapping it stands for
            ttl = {"default_ttl": ttl.minutes, "refresh_on_read": ttl.refresh_on_read}
        if not isinstance(ttl, Mapping):
            raise TypeError("ttl must be a TTL or a mapping like {'default_ttl': minutes}")
        unknown = set(ttl) - {"default_ttl", "refresh_on_read"}
        if unknown:
            raise ValueError(f"unknown ttl option(s): {', '.join(sorted(unknown))}")
        minutes = ttl.get("default_ttl")
        if minutes is not None and (
            isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0
        ):
            raise ValueError(f"ttl['default_ttl'] must be a positive number, not {minutes!r}")
        return cls(minutes, bool(ttl.get("refresh_on_read", False)))


@dataclass(frozen=True, slots=True)
class Durability:
    """Durable mode: each write waits for this many replica acknowledgements."""

    replicas: int
    timeout_ms: int

    @classmethod
    def parse(cls, durability: Mapping[str, Any] | None) -> Durability | None:
        if durability is None:
            return None
        if not isinstance(durability, Mapping):
            raise TypeError("durability must be a mapping like {'replicas': 1, 'timeout_ms': 500}")
        unknown = set(durability) - {"replicas", "timeout_ms"}
        if unknown:
            raise ValueError(f"unknown durability option(s): {', '.join(sorted(unknown))}")
        replicas, timeout = durability.get("replicas", 1), durability.get("timeout_ms", 500)
        for name, value, low in (("replicas", replicas, 1), ("timeout_ms", timeout, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"durability[{name!r}] must be an int >= {low}, not {value!r}")
        return cls(replicas, timeout)


@dataclass(frozen=True, slots=True)
class Retention:
    """Checkpoints kept per namespace, pruned by every put in its own write."""

    keep_last: int

    @classmethod
    def parse(cls, retention: Mapping[str, Any] | Retention | None) -> Retention | None:
        if retention is None or isinstance(retention, Retention):
            return retention
        if not isinstance(retention, Mapping):
            raise TypeError("retention must be a mapping like {'keep_last': 10}")
        unknown = set(retention) - {"keep_last"}
        if unknown:
            raise ValueError(f"unknown retention option(s): {', '.join(sorted(unknown))}")
        if "keep_last" not in retention:
            raise ValueError("retention needs keep_last, the checkpoints kept per namespace")
        keep = retention["keep_last"]
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"retention['keep_last'] must be an int >= 1, not {keep!r}")
        return cls(keep)
