"""Where limit state lives: the store protocols, the stores, and choosing one by URL.

``MemoryStore`` (the default) keeps state in this process; ``SqliteStore`` shares it between
processes on one host and keeps it across restarts; ``RedisStore`` shares it between every
process and host that reach one Redis, Redis Cluster or Sentinel deployment (``redis`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quotaflow.stores._failover import FailoverStore, FaultMode, FaultPolicy
from quotaflow.stores._memory import MemoryStore
from quotaflow.stores._notes import AsyncNotes, Notes
from quotaflow.stores._protocol import AsyncStore, Store
from quotaflow.stores._sqlite import SqliteStore
from quotaflow.stores._url import SCHEMES, open_store

if TYPE_CHECKING:
    from quotaflow.stores._redis import RedisStore
    from quotaflow.stores._redis_clients import RedisOptions

__all__ = [
    "SCHEMES",
    "AsyncNotes",
    "AsyncStore",
    "FailoverStore",
    "FaultMode",
    "FaultPolicy",
    "MemoryStore",
    "Notes",
    "RedisOptions",
    "RedisStore",
    "SqliteStore",
    "Store",
    "open_store",
]


def __getattr__(name: str) -> Any:  # noqa: ANN401 (the module attribute asked for)
    # The Redis classes need redis-py (the ``redis`` extra): import them on first use only.
    if name == "RedisStore":
        from quotaflow.stores._redis import RedisStore  # noqa: PLC0415

        return RedisStore
    if name == "RedisOptions":
        from quotaflow.stores._redis_clients import RedisOptions  # noqa: PLC0415

        return RedisOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
