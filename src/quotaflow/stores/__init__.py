"""Where limit state lives: the store protocols and the embedded memory store."""

from quotaflow.stores._memory import MemoryStore
from quotaflow.stores._protocol import AsyncStore, Store

__all__ = ["AsyncStore", "MemoryStore", "Store"]
