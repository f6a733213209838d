"""The async limiter: reserve before a call, wait FIFO without polling, settle after it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from types import TracebackType
from typing import Self

from quotaflow._base import LimiterBase, ReservationBase, make_usage, new_usage, timeout_ns
from quotaflow._clock import Clock, TimerHandle
from quotaflow._errors import AcquireTimeoutError, ConfigurationError
from quotaflow._events import EventKind, Hook
from quotaflow._status import Decision, ScopeStatus
from quotaflow._table import Scopes
from quotaflow._waiting import RESERVE, WaitingRoom, wait_turn
from quotaflow.core import NS_PER_SECOND, Claim, Limit, ReserveResult, Usage
from quotaflow.stores import AsyncStore, FaultMode, FaultPolicy, Store

__all__ = ["Limiter", "Reservation"]


class Reservation(ReservationBase):
    """An admitted request of a :class:`Limiter`; settle it with the actual usage.

    Used as ``async with``, it settles with the reserved amounts on a clean exit (unless
    settled or cancelled inside the block) and cancels, refunding everything, on an exception.
    """

    __slots__ = ()
    _limiter: Limiter

    async def settle(
        self,
        usage: Usage | None = None,
        *,
        requests: int | None = None,
        tokens: int | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost: int | None = None,
    ) -> None:
        """Reconcile with the actual usage: refund what was not used, charge any overrun.

        Amounts not given keep their reserved value. Idempotent: only the first settle or
        cancel counts.
        """
        actual = self._actual(usage, requests, tokens, input_tokens, output_tokens, cost)
        if self.state == "held":
            self.state = "settling"
            try:
                direct = self._limiter._direct  # noqa: SLF001
                if direct is not None:
                    direct.settle(self.id, actual)
                else:
                    await self._limiter._store.asettle(self.id, actual)  # noqa: SLF001
            except BaseException:
                self.state = "held"  # not settled: the caller may try again
                raise
            self._finished(actual)

    async def cancel(self) -> None:
        """Give the whole reservation back (the call was not made). Idempotent."""
        if self.state == "held":
            self.state = "settling"
            try:
                await self._limiter._store.asettle(self.id, None)  # noqa: SLF001
            except BaseException:
                self.state = "held"  # not cancelled: the caller may try again
                raise
            self._finished(None)

    async def renew(self) -> bool:
        """Extend the reservation and its concurrency leases; ``False`` if they expired."""
        if self.state != "held":
            return False
        limiter = self._limiter
        return await limiter._store.arenew(self.id, limiter._ttl_ns)  # noqa: SLF001

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.state == "held":
            if exc_type is None:
                await self.settle()
            else:
                await asyncio.shield(self.cancel())


class Limiter(LimiterBase):
    """Admit calls under every limit of every scope they span, for asyncio code.

    Args:
        limits: limits per scope; keys ending in ``*`` are prefix patterns (``"user:*"``).
        store: where the state lives: a store, or a URL for :func:`~quotaflow.stores.open_store`
            (``"redis://host:6379/0"``, ``"sqlite:///state.db"``); a private
            :class:`MemoryStore` by default.
        clock: the time source for waiting (the store keeps its own time).
        hooks: callables receiving every :class:`LimiterEvent`.
        reservation_ttl: seconds after which an unsettled reservation is forgotten (it can no
            longer be refunded, and its concurrency leases are released by their own TTL).
        fault_policy: what to do while a shared store is unreachable: ``"fail_closed"`` (the
            default: raise :class:`StoreUnavailableError`), ``"fail_open"``, ``"local"``, or a
            :class:`~quotaflow.stores.FaultPolicy`. Changes are logged once and reported to
            hooks as ``STORE_UNAVAILABLE`` / ``STORE_RECOVERED`` events.

    Example:
        >>> limiter = Limiter({"openai:gpt-4o": [rpm(500), tpm(30_000)]})
        >>> async with limiter.reserve("openai:gpt-4o", input_tokens=900, output_tokens=500) as r:
        ...     response = await call_model()
        ...     await r.settle(output_tokens=response.usage.completion_tokens)
    """

    def __init__(
        self,
        limits: Mapping[str, Limit | Iterable[Limit]],
        *,
        store: AsyncStore | str | None = None,
        clock: Clock | None = None,
        hooks: Sequence[Hook] = (),
        reservation_ttl: float = 3600.0,
        fault_policy: FaultPolicy | FaultMode | str | None = None,
    ) -> None:
        super().__init__(limits, clock=clock, hooks=hooks, reservation_ttl=reservation_ttl)
        if store is not None and not isinstance(store, AsyncStore | str):
            raise ConfigurationError(f"store must implement AsyncStore or be a URL, got {store!r}")
        opened = self._open_store(store, fault_policy)
        if not isinstance(opened, AsyncStore):
            raise ConfigurationError(f"store must implement AsyncStore, got {opened!r}")
        self._store: AsyncStore = opened
        # A store whose operations never block is called synchronously: one coroutine less.
        direct = self._store if getattr(self._store, "nonblocking", False) else None
        self._direct: Store | None = direct if isinstance(direct, Store) else None
        self._releasing: set[asyncio.Task[None]] = set()

    @property
    def store(self) -> AsyncStore:
        """The store holding this limiter's state."""
        return self._store

    async def acquire(
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
    ) -> Reservation:
        """Reserve ``usage`` in every scope of ``scopes``, waiting FIFO until all limits admit it.

        Args:
            scopes: one scope or several; the admission is all-or-nothing across them.
            usage: the estimated usage, or give the amounts as keywords.
            requests: requests counted (1 per call).
            tokens: combined tokens, when the input/output split is unknown.
            input_tokens: estimated input tokens.
            output_tokens: output tokens to reserve (usually ``max_tokens``).
            cost: estimated cost in micro-USD.
            timeout: seconds to wait at most (``None``: no limit).

        Returns:
            The :class:`Reservation`; settle it with the actual usage, or use it (or
            :meth:`reserve`) as ``async with`` to settle or cancel automatically.

        Raises:
            CapacityExceededError: a limit could never admit the request.
            AcquireTimeoutError: not admitted within ``timeout``.
            ConfigurationError: an unknown scope or a bad timeout.
            InvalidUsageError: a bad amount.
        """
        # The hot path, kept flat on purpose: bench/overhead.py measures every step of it.
        if usage is None:
            request = new_usage(requests, input_tokens, output_tokens, tokens, cost)
        else:
            request = make_usage(usage, requests, tokens, input_tokens, output_tokens, cost)
        limit_ns = None if timeout is None else timeout_ns(timeout)
        names, claims = self._plan(scopes, request)
        rid = f"{self._id_prefix}{next(self._ids):x}"
        first: ReserveResult | None = None
        epoch = self._room.epoch
        if not self._room._queues or not self._room.busy(names):  # noqa: SLF001
            direct = self._direct
            if direct is not None:
                first = direct.reserve(rid, claims, self._ttl_ns)
            else:
                first = await self._reserve_or_release(rid, names, claims)
            if first.granted:
                if self._hooks:
                    return self._admitted(rid, names, request, first.now, 0.0, 0)
                return Reservation(self, rid, names, request, first.now, 0.0, 0)
        return await self._wait(rid, scopes, names, request, first, epoch, limit_ns)

    @asynccontextmanager
    async def reserve(
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
    ) -> AsyncIterator[Reservation]:
        """:meth:`acquire` as ``async with``: settles on a clean exit, cancels on an exception.

        Settle inside the block with the actual usage; otherwise the reserved amounts stand.
        """
        reservation = await self.acquire(
            scopes,
            usage,
            requests=requests,
            tokens=tokens,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            timeout=timeout,
        )
        async with reservation:
            yield reservation

    async def try_acquire(
        self,
        scopes: Scopes,
        usage: Usage | None = None,
        *,
        requests: int = 1,
        tokens: int | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: int = 0,
    ) -> Decision[Reservation]:
        """Reserve now or not at all; never waits, and never jumps ahead of waiting requests."""
        request = make_usage(usage, requests, tokens, input_tokens, output_tokens, cost)
        names, claims = self._plan(scopes, request)
        rid = self._new_id()
        result = (
            None
            if self._room.busy(names)
            else await self._store.areserve(rid, claims, self._ttl_ns)
        )
        if result is not None and result.granted:
            return Decision(self._admitted(rid, names, request, result.now, 0.0, 0), 0.0, None)
        return self._refused(rid, names, request, result)

    async def debit(self, scope: str, usage: Usage) -> bool:
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
        if not (await self._store.areserve(rid, claims, self._ttl_ns)).granted:
            return False
        await self._store.asettle(rid, usage)
        self._room.wake_all()  # the waiters' slots moved: let them ask again
        return True

    async def status(self, scope: str) -> ScopeStatus:
        """Return used / capacity / remaining / reset of every limit of ``scope``."""
        now, snapshots = await self._store.asnapshot(scope, self._table.limits_of(scope))
        return self._status(scope, now, snapshots)

    async def aclose(self) -> None:
        """Close the store (when the limiter created it, or was given it)."""
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        await self._store.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # Internals -----------------------------------------------------------------------------

    def _admitted(
        self, rid: str, names: tuple[str, ...], request: Usage, now: int, wait: float, position: int
    ) -> Reservation:
        reservation = Reservation(self, rid, names, request, now, wait, position)
        if self._hooks:
            self._acquired(reservation)
        return reservation

    async def _wait(  # noqa: C901 (drives wait_turn: every step and outcome)
        self,
        rid: str,
        scopes: Scopes,
        names: tuple[str, ...],
        request: Usage,
        first: ReserveResult | None,
        epoch: int,
        limit_ns: int | None,
    ) -> Reservation:
        clock = self._clock
        start = clock.now_ns()
        waiter = self._room.new_waiter(names, None if limit_ns is None else start + limit_ns)
        loop = asyncio.get_running_loop()
        if not self._listening:
            self._listen_for_releases(self._store, partial(_wake_from_thread, loop, self._room))
        future: asyncio.Future[None] | None = None

        def wake() -> None:
            if future is not None and not future.done():
                future.set_result(None)

        waiter.wake = wake
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
                    step = flow.send(await self._reserve_or_release(rid, names, claims))
                    continue
                future = loop.create_future()
                handle: TimerHandle | None = None
                if step is not None:
                    handle = clock.call_later(float(step), wake)
                try:
                    await future
                finally:
                    if handle is not None:
                        handle.cancel()
                    future = None
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

    async def _reserve_or_release(
        self, rid: str, names: tuple[str, ...], claims: list[Claim]
    ) -> ReserveResult:
        try:
            return await self._store.areserve(rid, claims, self._ttl_ns)
        except asyncio.CancelledError:
            # The store may have admitted the request before the cancellation arrived: give
            # back whatever it holds under this id, without blocking the cancellation.
            task = asyncio.get_running_loop().create_task(self._release(rid, names))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
            raise

    async def _release(self, rid: str, names: tuple[str, ...]) -> None:
        if await self._store.asettle(rid, None):
            self._room.wake_heads(names)


def _wake_from_thread(
    loop: asyncio.AbstractEventLoop, room: WaitingRoom, scopes: tuple[str, ...]
) -> None:
    """Wake the heads of ``scopes`` in ``loop`` (called from a store's listener thread)."""
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
        loop.call_soon_threadsafe(room.wake_heads, scopes)
