from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar

from quotaflow.conformance import StoreConformance
from quotaflow.stores._sqlite import SqliteStore
from quotaflow.testing import FakeClock

_DIR = Path(tempfile.mkdtemp())
_count = 0


def _path() -> Path:
    global _count
    _count += 1
    return _DIR / f"s{_count}.db"


class TestSqliteStore(StoreConformance):
    def make_store(self, clock: FakeClock) -> SqliteStore:
        return SqliteStore(_path(), clock=clock)


class TestSqliteStoreSweepingOften(StoreConformance):
    expiry_grace: ClassVar[float] = 0.0

    def make_store(self, clock: FakeClock) -> SqliteStore:
        return SqliteStore(_path(), clock=clock, sweep_interval=1e-6)
