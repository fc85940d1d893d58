"""LangGraph long-term memory (``BaseStore``) on the same Redis as the checkpoints:
keys laid out for the cluster (a namespace's items on the slot of its first label),
each write one atomic round trip, on every topology the saver runs on."""

from .plans import SearchTooBroadError
from .stores import AsyncRedisClusterStore, RedisClusterStore

__all__ = ["AsyncRedisClusterStore", "RedisClusterStore", "SearchTooBroadError"]
