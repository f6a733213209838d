"""Instrumentation: what a limiter reports to hooks.

A hook is any callable taking one :class:`LimiterEvent`. Hooks run synchronously where the
event happens, so they must be quick; an exception in a hook is logged and never disturbs the
limiter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from quotaflow.core import BoundLimit, Usage

__all__ = ["EventKind", "Hook", "LimiterEvent", "emit"]

_log = logging.getLogger("quotaflow")


class EventKind(StrEnum):
    """What happened to a request."""

    ACQUIRED = "acquired"  # admitted, immediately or after waiting
    QUEUED = "queued"  # started waiting
    TIMED_OUT = "timed_out"  # gave up at the caller's deadline
    REJECTED = "rejected"  # refused at once: too large for a limit, or try_acquire said no
    SETTLED = "settled"  # reconciled with actual usage
    CANCELLED = "cancelled"  # given back in full (explicitly, on error, or by a cancelled task)
    STORE_UNAVAILABLE = "store_unavailable"  # the shared store failed; the fault policy applies
    STORE_RECOVERED = "store_recovered"  # the shared store answers again


@dataclass(frozen=True, slots=True)
class LimiterEvent:
    """One thing that happened to one request.

    Attributes:
        kind: what happened.
        reservation_id: the request's id.
        scopes: the scopes the request spans.
        requested: the usage reserved.
        actual: the usage settled (``SETTLED`` only).
        wait_time: seconds spent waiting so far.
        queue_position: requests ahead of it when it started waiting (0 if it did not wait).
        limit: the limit that bound it, when one did.
        retry_after: seconds until it could be admitted (``TIMED_OUT`` and ``REJECTED``).
        detail: what happened to the store (``STORE_UNAVAILABLE`` and ``STORE_RECOVERED``).
    """

    kind: EventKind
    reservation_id: str
    scopes: tuple[str, ...]
    requested: Usage
    actual: Usage | None = None
    wait_time: float = 0.0
    queue_position: int = 0
    limit: BoundLimit | None = None
    retry_after: float | None = None
    detail: str | None = None


#: A callable that receives every event.
Hook = Callable[[LimiterEvent], None]


def emit(hooks: Sequence[Hook], event: LimiterEvent) -> None:
    """Deliver ``event`` to every hook; a failing hook is logged and skipped."""
    for hook in hooks:
        try:
            hook(event)
        except Exception:  # noqa: BLE001 (a hook must never break the limiter)
            _log.exception("quotaflow hook %r failed on a %s event", hook, event.kind)
