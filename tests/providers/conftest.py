from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from quotaflow.providers import _log

if TYPE_CHECKING:
    from collections.abc import Iterator

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _fresh_log_counts() -> Iterator[None]:
    _log._reset_for_tests()
    yield
    _log._reset_for_tests()


@pytest.fixture
def data() -> Path:
    return DATA
