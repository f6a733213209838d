"""Shared fixtures: a fake clock and a helper that lets woken asyncio tasks run."""

from __future__ import annotations

import asyncio

import pytest

from quotaflow.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def drain(rounds: int = 20) -> None:
    """Let every runnable task run until all are blocked again."""
    for _ in range(rounds):
        await asyncio.sleep(0)
