"""LangGraph checkpoint saver for Redis Cluster first: one slot per thread, one
round trip per operation, on clusters, Sentinel, proxies and single servers."""

from .detector import Capabilities
from .errors import (
    DurabilityError,
    ParentMissingError,
    SaverError,
    SlotMigrationError,
    ThreadDamagedError,
)
from .keys import KeyLayout
from .options import TTL
from .saver import AsyncRedisClusterSaver, RedisClusterSaver

__all__ = [
    "TTL",
    "AsyncRedisClusterSaver",
    "Capabilities",
    "DurabilityError",
    "KeyLayout",
    "ParentMissingError",
    "RedisClusterSaver",
    "SaverError",
    "SlotMigrationError",
    "ThreadDamagedError",
]
__version__ = "0.1.0"
