"""What the async and the sync limiter share: configuration, planning, ids and results."""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from quotaflow._clock import Clock, SystemClock
from quotaflow._errors import AcquireTimeoutError, CapacityExceededError, ConfigurationError
from quotaflow._events import EventKind, Hook, LimiterEvent, emit
from quotaflow._status import Decision, LimitStatus, ScopeStatus
from quotaflow._table import LimitTable, Scopes
from quotaflow._waiting import WaitingRoom
from quotaflow.core import NS_PER_SECOND, Claim, Limit, LimitSnapshot, Rate, ReserveResult, Usage
from quotaflow.core._usage import make_usage as new_usage
from quotaflow.core._usage import usage_index
from quotaflow.stores import FailoverStore, FaultMode, FaultPolicy, MemoryStore, open_store

__all__ = ["LimiterBase", "ReservationBase", "make_usage", "new_usage", "timeout_ns"]

_MAX_TIMEOUT: Final = 366 * 86_400.0
_NO_USAGE: Final = Usage(requests=0)


def make_usage(
    usage: Usage | None,
    requests: int,
    tokens: int | None,
    input_tokens: int,
    output_tokens: int,
    cost: int,
) -> Usage:
    """Return ``usage`` or build one from keyword amounts (not both)."""
    if usage is None:
        return new_usage(requests, input_tokens, output_tokens, tokens, cost)
    if not isinstance(usage, Usage):
        raise ConfigurationError(f"usage must be a Usage, got {usage!r}")
    if (requests, tokens, input_tokens, output_tokens, cost) != (1, None, 0, 0, 0):
        raise ConfigurationError("pass either a Usage or keyword amounts, not both")
    return usage


def timeout_ns(timeout: float | None) -> int | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout):
        raise ConfigurationError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if timeout < 0:
        raise ConfigurationError(f"timeout must not be negative, got {timeout!r}")
    return round(min(timeout, _MAX_TIMEOUT) * NS_PER_SECOND)


class LimiterBase:
    """Configuration and bookkeeping common to :class:`Limiter` and :class:`SyncLimiter`."""

    def __init__(
        self,
        limits: Mapping[str, Limit | Iterable[Limit]],
        *,
        clock: Clock | None,
        hooks: Sequence[Hook],
        reservation_ttl: float,
    ) -> None:
        if not isinstance(reservation_ttl, int | float) or not 0 < reservation_ttl <= _MAX_TIMEOUT:
            raise ConfigurationError(
                "reservation_ttl must be positive seconds (at most a year), "
                f"got {reservation_ttl!r}"
            )
        self._table = LimitTable(limits)
        self._clock: Clock = clock or SystemClock()
        self._hooks = tuple(hooks)
        self._ttl_ns = round(reservation_ttl * NS_PER_SECOND)
        self._room = WaitingRoom()
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(6) + "-"
        self._listening = False

    @property
    def clock(self) -> Clock:
        """The time source this limiter waits on."""
        return self._clock

    def _open_store(
        self, store: object, fault_policy: FaultPolicy | FaultMode | str | None
    ) -> object:
        """The store to use: a URL opened, a shared store wrapped in its fault policy."""
        if store is None:
            return MemoryStore(clock=self._clock)
        if isinstance(store, str):
            scheme = store.partition(":")[0].lower()
            # Embedded stores run on the limiter's clock; Redis keeps the server's time.
            embedded = scheme in {"memory", "sqlite"}
            store = open_store(store, clock=self._clock if embedded else None)
        if getattr(store, "nonblocking", False):
            if fault_policy is not None:
                raise ConfigurationError(f"{store!r} cannot fail: it takes no fault_policy")
            return store
        policy = FaultPolicy.parse(FaultMode.FAIL_CLOSED if fault_policy is None else fault_policy)
        return FailoverStore(
            store,  # type: ignore[arg-type]  # checked by the caller against its protocol
            policy,
            clock=self._clock,
            on_change=self._store_changed,
        )

    def _store_changed(self, available: bool, detail: str) -> None:
        if self._hooks:
            kind = EventKind.STORE_RECOVERED if available else EventKind.STORE_UNAVAILABLE
            emit(self._hooks, LimiterEvent(kind, "", (), _NO_USAGE, detail=detail))
        if available:
            self._room.wake_all()  # waiters planned against the fallback try the store again

    def _listen_for_releases(self, store: object, wake: Callable[[tuple[str, ...]], None]) -> None:
        """Have a shared store wake our waiters when another process gives capacity back."""
        self._listening = True
        listen = getattr(store, "listen", None)
        if listen is not None:
            listen(wake)

    def set_limits(self, key: str, limits: Limit | Iterable[Limit]) -> None:
        """Set the limits of a scope or ``prefix*`` pattern; recorded usage is kept.

        Waiting requests are planned again under the new limits at their next attempt.
        """
        self._table.set(key, limits)
        self._room.wake_all()

    def remove_limits(self, key: str) -> None:
        """Remove a scope or pattern; requests waiting for it fail at their next attempt."""
        self._table.remove(key)
        self._room.wake_all()

    def limits_of(self, scope: str) -> tuple[Limit, ...]:
        """Return the limits that apply to ``scope``."""
        return self._table.limits_of(scope)

    def limits_of_or_none(self, scope: str) -> tuple[Limit, ...] | None:
        """The limits that apply to ``scope``, or ``None`` when none are configured."""
        return self._table.limits_of_or_none(scope)

    def _debit_claims(self, scope: str, usage: Usage) -> list[Claim]:
        """Zero claims on the rolling rates of ``scope`` that ``usage`` charges."""
        if not isinstance(usage, Usage):
            raise ConfigurationError(f"usage must be a Usage, got {usage!r}")
        claims: list[Claim] = []
        for limit in self._table.limits_of(scope):
            index = usage_index(limit.metric)
            if isinstance(limit, Rate) and usage[index] > 0:
                claims.append((scope, limit, 0, index))
        return claims

    def _plan(self, scopes: Scopes, usage: Usage) -> tuple[tuple[str, ...], list[Claim]]:
        route = self._table.resolve(scopes)
        try:
            claims = route.claims(usage)
        except CapacityExceededError as error:
            if self._hooks:
                self._emit(EventKind.REJECTED, "", route.names, usage, limit=error.limit)
            raise
        return route.names, claims

    def _refused(
        self, rid: str, names: tuple[str, ...], request: Usage, result: ReserveResult | None
    ) -> Decision[Any]:
        """The refusal of ``try_acquire``: by the store (``result``), or behind waiters (None)."""
        if result is None:
            eta = self._room.head_eta(names)
            retry_after = max(0, eta - self._clock.now_ns()) / NS_PER_SECOND if eta else 0.0
            decision: Decision[Any] = Decision(None, retry_after, None)
        else:
            retry_ns = (result.slot - result.now) if result.slot is not None else 0
            decision = Decision(None, retry_ns / NS_PER_SECOND, result.binding)
        if self._hooks:
            self._emit(
                EventKind.REJECTED, rid, names, request,
                retry_after=decision.retry_after, limit=decision.limit,
            )  # fmt: skip
        return decision

    def _acquired(self, reservation: ReservationBase) -> None:
        self._emit(
            EventKind.ACQUIRED, reservation.id, reservation.scopes, reservation.requested,
            wait_time=reservation.wait_time, queue_position=reservation.queue_position,
        )  # fmt: skip

    def _timed_out(
        self,
        rid: str,
        names: tuple[str, ...],
        request: Usage,
        start: int,
        position: int,
        error: AcquireTimeoutError,
    ) -> None:
        self._emit(
            EventKind.TIMED_OUT, rid, names, request,
            wait_time=(self._clock.now_ns() - start) / NS_PER_SECOND, queue_position=position,
            limit=error.limit, retry_after=error.retry_after,
        )  # fmt: skip

    def _new_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):x}"

    def _emit(
        self,
        kind: EventKind,
        rid: str,
        scopes: tuple[str, ...],
        requested: Usage,
        **details: object,
    ) -> None:
        emit(self._hooks, LimiterEvent(kind, rid, scopes, requested, **details))  # type: ignore[arg-type]

    def _status(self, scope: str, now: int, snapshots: list[LimitSnapshot]) -> ScopeStatus:
        limits = tuple(
            LimitStatus(
                limit=s.limit,
                metric=s.limit.metric,
                capacity=s.limit.capacity,
                used=s.used,
                remaining=s.remaining,
                resets_in=s.resets_in_ns / NS_PER_SECOND,
            )
            for s in snapshots
        )
        return ScopeStatus(
            scope=scope,
            limits=limits,
            queue_depth=self._room.depth(scope),
            time=now / NS_PER_SECOND,
        )


class ReservationBase:
    """The admitted request: what was reserved, when, after how long a wait.

    Attributes:
        id: unique id of the reservation.
        scopes: the scopes it spans.
        requested: the usage reserved.
        slot_time: when it was admitted, seconds since the epoch on the store's clock.
        wait_time: seconds it waited.
        queue_position: requests ahead of it when it started waiting (0 if it did not wait).
        actual: the usage it was settled with, once settled.
    """

    __slots__ = (
        "_limiter",
        "actual",
        "id",
        "queue_position",
        "requested",
        "scopes",
        "slot_time",
        "state",
        "wait_time",
    )

    def __init__(
        self,
        limiter: LimiterBase,
        rid: str,
        scopes: tuple[str, ...],
        requested: Usage,
        slot_ns: int,
        wait_time: float,
        queue_position: int,
    ) -> None:
        self._limiter = limiter
        self.id = rid
        self.scopes = scopes
        self.requested = requested
        self.slot_time = slot_ns / NS_PER_SECOND
        self.wait_time = wait_time
        self.queue_position = queue_position
        self.actual: Usage | None = None
        self.state = "held"  # then "settled" or "cancelled"

    @property
    def done(self) -> bool:
        """Whether the reservation was settled or cancelled."""
        return self.state != "held"

    def _actual(
        self,
        usage: Usage | None,
        requests: int | None,
        tokens: int | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cost: int | None,
    ) -> Usage:
        """The actual usage: ``usage``, or the reserved amounts with the given ones replaced."""
        given = (requests, tokens, input_tokens, output_tokens, cost)
        if usage is not None:
            if not isinstance(usage, Usage):
                raise ConfigurationError(f"usage must be a Usage, got {usage!r}")
            if given != (None,) * 5:
                raise ConfigurationError("pass either a Usage or keyword amounts, not both")
            return usage
        req = self.requested
        inp = req.input_tokens if input_tokens is None else input_tokens
        out = req.output_tokens if output_tokens is None else output_tokens
        if tokens is None and req.tokens != req.input_tokens + req.output_tokens:
            # ``tokens`` was given explicitly (the split was unknown): it keeps its value, moved
            # by what the known parts turned out to be.
            tokens = max(0, req.tokens + (inp - req.input_tokens) + (out - req.output_tokens))
        return new_usage(
            req.requests if requests is None else requests,
            inp,
            out,
            tokens,
            req.cost if cost is None else cost,
        )

    def _finished(self, actual: Usage | None) -> None:
        self.state = "settled" if actual is not None else "cancelled"
        self.actual = actual
        limiter = self._limiter
        limiter._room.wake_heads(self.scopes)  # noqa: SLF001 (the limiter owns its reservations)
        if limiter._hooks:  # noqa: SLF001
            kind = EventKind.SETTLED if actual is not None else EventKind.CANCELLED
            limiter._emit(kind, self.id, self.scopes, self.requested, actual=actual)  # noqa: SLF001

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.id} {self.state} scopes={list(self.scopes)} "
            f"requested={self.requested!r} wait={self.wait_time:.3f}s>"
        )
