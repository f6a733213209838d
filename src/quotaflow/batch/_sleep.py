"""Waiting before a retry, with the sleep a processor was given or the standard one."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from quotaflow._errors import ConfigurationError

__all__ = ["Sleep", "sleep_async", "sleep_sync"]

#: A sleep function: ``asyncio.sleep``-like for the async methods, ``time.sleep``-like for both.
Sleep: TypeAlias = Callable[[float], Awaitable[None] | None]


async def sleep_async(sleep: Sleep | None, delay: float) -> None:
    """Wait ``delay`` seconds with ``sleep`` (sync or async), or ``asyncio.sleep``."""
    if sleep is None:
        await asyncio.sleep(delay)
        return
    waited = sleep(delay)
    if inspect.isawaitable(waited):
        await waited


def sleep_sync(sleep: Sleep | None, delay: float, owner: str) -> None:
    """Wait ``delay`` seconds with ``sleep``, or ``time.sleep``; an async one is refused.

    ``owner`` names the processor class, for the error.
    """
    if sleep is None:
        time.sleep(delay)
        return
    waited = sleep(delay)
    if inspect.isawaitable(waited):
        if inspect.iscoroutine(waited):
            waited.close()
        raise ConfigurationError(
            f"the sleep given to {owner} is async; the sync methods need a sync one (or none)"
        )
