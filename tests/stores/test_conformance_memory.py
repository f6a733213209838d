"""The store conformance suite on the embedded memory store."""

from __future__ import annotations

from typing import ClassVar

from quotaflow.conformance import StoreConformance
from quotaflow.stores import MemoryStore
from quotaflow.testing import FakeClock


class TestMemoryStore(StoreConformance):
    def make_store(self, clock: FakeClock) -> MemoryStore:
        return MemoryStore(clock=clock)


class TestMemoryStoreSweepingOnEveryWrite(StoreConformance):
    """Sweeps run on nearly every reservation: idle scopes and expired reservations go at once."""

    expiry_grace: ClassVar[float] = 0.0

    def make_store(self, clock: FakeClock) -> MemoryStore:
        return MemoryStore(clock=clock, sweep_interval=1e-6)
