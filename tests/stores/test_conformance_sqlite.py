"""The store conformance suite on SQLite files (a new file for every store)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import ClassVar

import pytest

from quotaflow.conformance import StoreConformance
from quotaflow.stores import SqliteStore
from quotaflow.testing import FakeClock


class TestSqliteStore(StoreConformance):
    directory: Path
    sweep_interval: ClassVar[float] = 60.0

    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path
        self.files = itertools.count()

    def make_store(self, clock: FakeClock) -> SqliteStore:
        path = self.directory / f"store-{next(self.files)}.db"
        return SqliteStore(path, clock=clock, sweep_interval=self.sweep_interval)


class TestSqliteStoreSweepingOften(TestSqliteStore):
    """Sweeps on nearly every write: idle states and expired reservations go at once."""

    expiry_grace: ClassVar[float] = 0.0
    sweep_interval: ClassVar[float] = 1e-6
