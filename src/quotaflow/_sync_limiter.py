"""The limiter for threads: the same engine and FIFO waiting as :class:`Limiter`, blocking."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from quotaflow._base import LimiterBase, ReservationBase, make_usage, timeout_ns
from quotaflow._clock import Clock
from quotaflow._errors import AcquireTimeoutError, ConfigurationError
from quotaflow._events import EventKind, Hook
from quotaflow._status import Decision, ScopeStatus
from quotaflow._table import Scopes
from quotaflow._waiting import RESERVE, wait_turn
from quotaflow.core import NS_PER_SECOND, Limit, ReserveResult, Usage
from quotaflow.stores import FaultMode, FaultPolicy, Store

__all__ = ["SyncLimiter", "SyncReservation"]


class SyncReservation(ReservationBase):
    """An admitted request of a :class:`SyncLimiter`; settle it with the actual usage.

    Used as ``with``, it settles with the reserved amounts on a clean exit (unless settled or
    cancelled inside the block) and cancels, refunding everything, on an exception.
    """

    __slots__ = ()
    _limiter: SyncLimiter

    def settle(
        self,
        usage: Usage | None = None,
        *,
        requests: int | None = None,
        tokens: int | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost: int | None = None,
    ) -> None:
        """Reconcile with the actual usage; see :meth:`Reservation.settle`. Idempotent."""
        actual = self._actual(usage, requests, tokens, input_tokens, output_tokens, cost)
        with self._limiter._settle_lock:  # noqa: SLF001
            if self.state != "held":
                return
            self.state = "settling"
        try:
            self._limiter._store.settle(self.id, actual)  # noqa: SLF001
        except BaseException:
            self.state = "held"  # not settled: the caller may try again
            raise
        self._finished(actual)

    def cancel(self) -> None:
        """Give the whole reservation back (the call was not made). Idempotent."""
        with self._limiter._settle_lock:  # noqa: SLF001
            if self.state != "held":
                return
            self.state = "settling"
        try:
            self._limiter._store.settle(self.id, None)  # noqa: SLF001
        except BaseException:
            self.state = "held"  # not cancelled: the caller may try again
            raise
        self._finished(None)

    def renew(self) -> bool:
        """Extend the reservation and its concurrency leases; ``False`` if they expired."""
        if self.state != "held":
            return False
        limiter = self._limiter
        return limiter._store.renew(self.id, limiter._ttl_ns)  # noqa: SLF001

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.state == "held":
            if exc_type is None:
                self.settle()
            else:
                self.cancel()


class SyncLimiter(LimiterBase):
    """Admit calls under every limit of every scope they span, for threaded code.

    Takes the same arguments as :class:`Limiter`, with a :class:`Store` instead of an
    :class:`AsyncStore`. Safe to share between threads.

    Example:
        >>> limiter = SyncLimiter({"openai:gpt-4o": [rpm(500), tpm(30_000)]})
        >>> with limiter.acquire("openai:gpt-4o", input_tokens=900, output_tokens=500) as r:
        ...     response = call_model()
        ...     r.settle(output_tokens=response.usage.completion_tokens)
    """

    def __init__(
        self,
        limits: Mapping[str, Limit | Iterable[Limit]],
        *,
        store: Store | str | None = None,
        clock: Clock | None = None,
        hooks: Sequence[Hook] = (),
        reservation_ttl: float = 3600.0,
        fault_policy: FaultPolicy | FaultMode | str | None = None,
    ) -> None:
        super().__init__(limits, clock=clock, hooks=hooks, reservation_ttl=reservation_ttl)
        if store is not None and not isinstance(store, Store | str):
            raise ConfigurationError(f"store must implement Store or be a URL, got {store!r}")
        opened = self._open_store(store, fault_policy)
        if not isinstance(opened, Store):
            raise ConfigurationError(f"store must implement Store, got {opened!r}")
        self._store: Store = opened
        self._settle_lock = threading.Lock()

    @property
    def store(self) -> Store:
        """The store holding this limiter's state."""
        return self._store

    def acquire(
        self,
        scopes: Scopes,
        usage: Usage | None = None,
        *,
        requests: int = 1,
        tokens: int | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: int = 0,
        timeout: float | None = None,
    ) -> SyncReservation:
        """Reserve ``usage`` in every scope, blocking FIFO until all limits admit it.

        Arguments, errors and waiting are those of :meth:`Limiter.acquire`. The reservation
        is a context manager that settles or cancels.
        """
        request = make_usage(usage, requests, tokens, input_tokens, output_tokens, cost)
        limit_ns = timeout_ns(timeout)
        names, claims = self._plan(scopes, request)
        rid = self._new_id()
        first: ReserveResult | None = None
        epoch = self._room.epoch
        if not self._room.busy(names):
            first = self._store.reserve(rid, claims, self._ttl_ns)
            if first.granted:
                return self._admitted(rid, names, request, first.now, 0.0, 0)
        return self._wait(rid, scopes, names, request, first, epoch, limit_ns)

    @contextmanager
    def reserve(
        self,
        scopes: Scopes,
        usage: Usage | None = None,
        *,
        requests: int = 1,
        tokens: int | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: int = 0,
        timeout: float | None = None,
    ) -> Iterator[SyncReservation]:
        """:meth:`acquire` as ``with``: settles on a clean exit, cancels on an exception."""
        reservation = self.acquire(
            scopes,
            usage,
            requests=requests,
            tokens=tokens,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            timeout=timeout,
        )
        with reservation:
            yield reservation

    def try_acquire(
        self,
        scopes: Scopes,
        usage: Usage | None = None,
        *,
        requests: int = 1,
        tokens: int | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: int = 0,
    ) -> Decision[SyncReservation]:
        """Reserve now or not at all; never waits, and never jumps ahead of waiting requests."""
        request = make_usage(usage, requests, tokens, input_tokens, output_tokens, cost)
        names, claims = self._plan(scopes, request)
        rid = self._new_id()
        result = None if self._room.busy(names) else self._store.reserve(rid, claims, self._ttl_ns)
        if result is not None and result.granted:
            return Decision(self._admitted(rid, names, request, result.now, 0.0, 0), 0.0, None)
        return self._refused(rid, names, request, result)

    def debit(self, scope: str, usage: Usage) -> bool:
        """Charge ``usage`` to the rolling rates of ``scope`` at once, without an admission.

        For usage that happened outside this limiter: another application on the same API
        key, or a provider reporting less left than the limiter believes. The amounts are
        charged as debt where they exceed what is left, so later admissions wait for them;
        nothing waits here. A rate already further in debt than a full bucket is not charged
        more (it refuses everything for longer than this usage would add), and then ``False``
        is returned. Quotas and concurrency limits are not charged.
        """
        claims = self._debit_claims(scope, usage)
        if not claims:
            return False
        rid = self._new_id()
        if not self._store.reserve(rid, claims, self._ttl_ns).granted:
            return False
        self._store.settle(rid, usage)
        self._room.wake_all()  # the waiters' slots moved: let them ask again
        return True

    def status(self, scope: str) -> ScopeStatus:
        """Return used / capacity / remaining / reset of every limit of ``scope``."""
        now, snapshots = self._store.snapshot(scope, self._table.limits_of(scope))
        return self._status(scope, now, snapshots)

    def close(self) -> None:
        """Close the store."""
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Internals -----------------------------------------------------------------------------

    def _admitted(
        self, rid: str, names: tuple[str, ...], request: Usage, now: int, wait: float, position: int
    ) -> SyncReservation:
        reservation = SyncReservation(self, rid, names, request, now, wait, position)
        if self._hooks:
            self._acquired(reservation)
        return reservation

    def _wait(
        self,
        rid: str,
        scopes: Scopes,
        names: tuple[str, ...],
        request: Usage,
        first: ReserveResult | None,
        epoch: int,
        limit_ns: int | None,
    ) -> SyncReservation:
        clock = self._clock
        start = clock.now_ns()
        waiter = self._room.new_waiter(names, None if limit_ns is None else start + limit_ns)
        if not self._listening:
            self._listen_for_releases(self._store, self._room.wake_heads)
        event = threading.Event()
        waiter.wake = event.set
        flow = wait_turn(self._room, waiter, first, clock.now_ns, epoch)
        try:
            step = next(flow)
            if self._hooks:
                self._emit(
                    EventKind.QUEUED, rid, names, request,
                    queue_position=waiter.position, limit=waiter.binding,
                )  # fmt: skip
            while True:
                if step == RESERVE:
                    # Planned again each time: the limits may have changed while waiting.
                    claims = self._plan(scopes, request)[1]
                    step = flow.send(self._store.reserve(rid, claims, self._ttl_ns))
                    continue
                clock.wait(event, None if step is None else float(step))
                event.clear()
                step = flow.send(None)
        except StopIteration as stop:
            result: ReserveResult = stop.value
            wait = (clock.now_ns() - start) / NS_PER_SECOND
            return self._admitted(rid, names, request, result.now, wait, waiter.position)
        except AcquireTimeoutError as error:
            if self._hooks:
                self._timed_out(rid, names, request, start, waiter.position, error)
            raise
        finally:
            flow.close()
