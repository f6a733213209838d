"""One model's queue: a dispatcher admits waiting requests by priority, processors run them.

The dispatcher takes the request the :class:`PriorityScheduler` names and asks the limiter to
admit it under all of the model's limits at once (one reservation, the engine's FIFO wait, no
polling). While it waits, a request that arrives and now comes first takes its place: the
admission is called off (cancellation-safe in the limiter) and the displaced request goes back
to the head of its class. Admitted requests run concurrently in their own tasks; each one
settles its reservation with the actual usage once it is known.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from quotaflow._clock import Clock, TimerHandle
from quotaflow._errors import AcquireTimeoutError, ConfigurationError, InvalidUsageError
from quotaflow._limiter import Limiter, Reservation
from quotaflow._status import ScopeStatus
from quotaflow.core import NS_PER_SECOND, Usage
from quotaflow.queue._errors import QueueClosedError, QueueFullError
from quotaflow.queue._models import ModelConfig, QueueRequest, QueueResponse, RequestStatus
from quotaflow.queue._scheduler import Entry, PriorityScheduler

__all__ = ["ModelQueue", "Processor", "QueueInfo", "UsageOf"]

P = TypeVar("P")
T = TypeVar("T")

#: Runs an admitted request and returns its result.
Processor = Callable[[QueueRequest[Any]], Awaitable[Any]]
#: Reads ``(input_tokens, output_tokens)`` from a processor's result, or ``None``.
UsageOf = Callable[[Any], "tuple[int, int] | None"]

_KEEP_FINISHED: Final = 10_000
_log = logging.getLogger("quotaflow.queue")


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue's state: its limits, what waits, what runs and how requests ended.

    Attributes:
        model_id: the model.
        scope: the limiter scope of its limits.
        limits: every limit's capacity, use, remaining amount and reset.
        depth: requests waiting for admission.
        depth_by_priority: waiting requests per priority.
        in_flight: admitted requests whose processor is running.
        awaiting_usage: finished requests waiting for their usage report.
        completed, failed, expired, cancelled: requests that ended so, since the start.
        shares: the recent share of admitted work per priority.
        closed: whether the queue refuses new requests.
    """

    model_id: str
    scope: str
    limits: ScopeStatus
    depth: int
    depth_by_priority: dict[int, int]
    in_flight: int
    awaiting_usage: int
    completed: int
    failed: int
    expired: int
    cancelled: int
    shares: dict[int, float]
    closed: bool


class _Ticket:
    """An accepted request and everything the queue knows about it."""

    __slots__ = (
        "admitting",
        "deadline_timer",
        "entry",
        "future",
        "report",
        "request",
        "reservation",
        "response",
        "settling",
        "started",
        "status",
        "submitted",
        "withdrawn",
    )

    def __init__(
        self, request: QueueRequest[Any], future: asyncio.Future[QueueResponse[Any]], now: int
    ) -> None:
        self.request = request
        self.future = future
        self.submitted = now
        self.status = RequestStatus.PENDING
        self.entry: Entry[_Ticket] | None = None
        self.admitting = False  # the dispatcher is asking the limiter for it
        self.withdrawn = False  # its caller gave up before it ran
        self.reservation: Reservation | None = None  # once admitted
        self.started = False  # its processor task has begun
        self.settling = False  # its usage is decided: a report now is late
        self.deadline_timer: TimerHandle | None = None
        self.report: asyncio.Future[None] | None = None  # set while awaiting a usage report
        self.response: QueueResponse[Any] | None = None


class ModelQueue(Generic[P, T]):
    """The queue of one model. Made by :meth:`QueueManager.register_queue`."""

    def __init__(
        self,
        config: ModelConfig,
        processor: Processor,
        limiter: Limiter,
        clock: Clock,
        usage_of: UsageOf | None = None,
    ) -> None:
        self.config = config
        self.scope = config.queue_scope
        self._processor = processor
        self._limiter = limiter
        self._clock = clock
        self._usage_of = usage_of
        self._scheduler: PriorityScheduler[_Ticket] = PriorityScheduler(
            aging=config.aging, min_share=config.min_share, window=config.share_window
        )
        self._by_tokens = config.counts_tokens()
        self._tickets: dict[str, _Ticket] = {}  # accepted and not yet settled
        self._finished: OrderedDict[str, tuple[QueueResponse[Any], QueueRequest[Any]]] = (
            OrderedDict()
        )
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: dict[asyncio.Task[None], _Ticket] = {}
        self._settles: set[asyncio.Future[None]] = set()  # settlements under way
        self._closed = False
        self._draining = True
        self._ended = dict.fromkeys(
            (RequestStatus.COMPLETED, RequestStatus.FAILED, RequestStatus.EXPIRED,
             RequestStatus.CANCELLED), 0,
        )  # fmt: skip

    # Submitting ------------------------------------------------------------------------------

    def enqueue(self, request: QueueRequest[P]) -> asyncio.Future[QueueResponse[T]]:
        """Accept ``request``; the future resolves with its :class:`QueueResponse`."""
        request.check()
        if self._closed:
            raise QueueClosedError(f"the queue of {self.config.model_id!r} is shut down")
        if request.id in self._tickets:
            raise ConfigurationError(
                f"request id {request.id!r} is already in the queue of {self.config.model_id!r}"
            )
        limit = self.config.max_queue_size
        if limit is not None and len(self._scheduler) >= limit:
            raise QueueFullError(
                f"the queue of {self.config.model_id!r} holds {limit} waiting requests "
                "(ModelConfig.max_queue_size)"
            )
        loop = asyncio.get_running_loop()
        now = self._clock.now_ns()
        future: asyncio.Future[QueueResponse[Any]] = loop.create_future()
        ticket = _Ticket(request, future, now)
        weight = request.estimated_input_tokens + request.estimated_output_tokens
        ticket.entry = self._scheduler.add(
            ticket, request.priority, now, weight if self._by_tokens else 1
        )
        self._tickets[request.id] = ticket
        if request.deadline is not None:
            delay = max(0.0, request.deadline - now / NS_PER_SECOND)
            ticket.deadline_timer = self._clock.call_later(delay, lambda: self._expire(ticket))
        future.add_done_callback(lambda f: self._caller_left(ticket) if f.cancelled() else None)
        self._wake.set()
        if self._dispatcher is None:
            self._dispatcher = loop.create_task(self._dispatch(), name=f"queue:{self.scope}")
        return future

    async def update_token_usage(
        self, request_id: str, input_tokens: int, output_tokens: int
    ) -> bool:
        """Record the actual usage of a request; settles it if its processor has returned.

        Returns ``False`` when the request was already settled at its estimate (the report
        came after ``usage_report_timeout``): usage beyond the estimate is then charged to
        the model's rates, and usage below it cannot be refunded. Raises
        :class:`ConfigurationError` for an unknown id or a bad amount.
        """
        for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be a non-negative int, got {value!r}")
        ticket = self._tickets.get(request_id)
        if ticket is None:
            finished = self._finished.get(request_id)
            if finished is None:
                raise ConfigurationError(
                    f"no request {request_id!r} in the queue of {self.config.model_id!r}"
                )
            await self._charge_late(*finished, input_tokens, output_tokens)
            return False
        if ticket.settling:  # settled at its estimate right now: the report is late
            if ticket.response is not None:
                await self._charge_late(
                    ticket.response, ticket.request, *(input_tokens, output_tokens)
                )
            return False
        ticket.request.actual_input_tokens = input_tokens
        ticket.request.actual_output_tokens = output_tokens
        if ticket.report is not None and not ticket.report.done():
            ticket.report.set_result(None)
        return True

    async def _charge_late(
        self, response: QueueResponse[Any], request: QueueRequest[Any], inp: int, out: int
    ) -> None:
        """Charge what a late report adds to the estimate the request was settled with."""
        if response.input_tokens_used is not None or response.status is not RequestStatus.COMPLETED:
            return  # settled with reported usage already, or it never ran
        extra = Usage(
            requests=0,
            input_tokens=max(0, inp - request.estimated_input_tokens),
            output_tokens=max(0, out - request.estimated_output_tokens),
        )
        response.input_tokens_used, response.output_tokens_used = inp, out
        if extra.tokens:
            await self._limiter.debit(self.scope, extra)

    # State -----------------------------------------------------------------------------------

    def status_of(self, request_id: str) -> RequestStatus | None:
        """Where a request is, or ``None`` when the queue does not know (or forgot) it."""
        ticket = self._tickets.get(request_id)
        if ticket is not None:
            return ticket.status
        finished = self._finished.get(request_id)
        return None if finished is None else finished[0].status

    def response_of(self, request_id: str) -> QueueResponse[T] | None:
        """The response of a finished request, while it is remembered (the last 10,000)."""
        ticket = self._tickets.get(request_id)
        if ticket is not None:
            return ticket.response
        finished = self._finished.get(request_id)
        return None if finished is None else finished[0]

    async def info(self) -> QueueInfo:
        """The queue's state and its limits' status."""
        limits = await self._limiter.status(self.scope)
        awaiting = sum(t.report is not None and not t.report.done() for t in self._running.values())
        return QueueInfo(
            model_id=self.config.model_id,
            scope=self.scope,
            limits=limits,
            depth=len(self._scheduler) + sum(t.admitting for t in self._tickets.values()),
            depth_by_priority=self._depths(),
            in_flight=len(self._running) - awaiting,
            awaiting_usage=awaiting,
            completed=self._ended[RequestStatus.COMPLETED],
            failed=self._ended[RequestStatus.FAILED],
            expired=self._ended[RequestStatus.EXPIRED],
            cancelled=self._ended[RequestStatus.CANCELLED],
            shares=self._scheduler.shares(self._clock.now_ns()),
            closed=self._closed,
        )

    # Shutting down ---------------------------------------------------------------------------

    async def shutdown(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests and wait until every accepted one has ended.

        With ``drain`` the waiting requests are still admitted and run; without it they end
        ``CANCELLED`` at once. Requests already running finish either way. After ``timeout``
        seconds, whatever is left is cancelled: waiting requests end ``CANCELLED``, running
        processors are cancelled, and reservations awaiting a usage report are settled at
        their estimates. No accepted request is left without a response.
        """
        self._closed = True
        self._draining = self._draining and drain
        if not drain:
            self._cancel_waiting()
        self._wake.set()
        expired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handle = None
        if timeout is not None:
            handle = self._clock.call_later(timeout, _resolver(expired))
        try:
            while self._dispatcher is not None or self._running:
                tasks: set[asyncio.Future[Any]] = set(self._running)
                if self._dispatcher is not None:
                    tasks.add(self._dispatcher)
                await asyncio.wait({*tasks, expired}, return_when=asyncio.FIRST_COMPLETED)
                if expired.done():
                    await self._stop_now()
                    break
        finally:
            if handle is not None:
                handle.cancel()
            if not expired.done():
                expired.cancel()
        if self._settles:  # before the limiter may be closed
            await asyncio.gather(*self._settles, return_exceptions=True)

    async def _stop_now(self) -> None:
        self._draining = False
        self._cancel_waiting()
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.cancel()
        unstarted = []
        for task, ticket in list(self._running.items()):
            if ticket.report is not None:
                if not ticket.report.done():
                    ticket.report.set_result(None)  # its processor returned: settle now
            else:
                task.cancel()
                if not ticket.started:  # cancelled before its first step: clean up here
                    unstarted.append(ticket)
        pending = [t for t in (dispatcher, *self._running) if t is not None]
        await asyncio.gather(*pending, return_exceptions=True)
        for ticket in unstarted:
            if ticket.response is None and ticket.reservation is not None:
                await _give_back(ticket.reservation)  # the call was never made
                self._end(ticket, RequestStatus.CANCELLED)

    # The dispatcher --------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        try:
            while True:
                entry = self._scheduler.take(self._clock.now_ns())
                if entry is None:
                    if self._closed:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._admit(entry.item)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug: answer every waiting request instead of hanging
            _log.exception("the dispatcher of queue %s failed", self.scope)
            for ticket in list(self._tickets.values()):
                if ticket.status is RequestStatus.PENDING:
                    self._end(ticket, RequestStatus.FAILED, error=error)
            raise
        finally:
            self._dispatcher = None

    async def _admit(self, ticket: _Ticket) -> None:
        request = ticket.request
        if ticket.withdrawn:  # its caller left while it was being displaced
            self._end(ticket, RequestStatus.CANCELLED)
            return
        timeout = None
        if request.deadline is not None:
            timeout = request.deadline - self._clock.now_ns() / NS_PER_SECOND
            if timeout <= 0:
                self._end(ticket, RequestStatus.EXPIRED, error=AcquireTimeoutError(0.0, None))
                return
        ticket.admitting = True
        acquire = asyncio.ensure_future(
            self._limiter.acquire(
                self.scope,
                input_tokens=request.estimated_input_tokens,
                output_tokens=request.estimated_output_tokens,
                timeout=timeout,
            )
        )
        try:
            if not await self._await_turn(ticket, acquire):
                return
        finally:
            ticket.admitting = False
        try:
            reservation = acquire.result()
        except AcquireTimeoutError as error:
            self._end(ticket, RequestStatus.EXPIRED, error=error)
            return
        except Exception as error:  # noqa: BLE001 (the request's own failure, e.g. too large)
            self._end(ticket, RequestStatus.FAILED, error=error)
            return
        if _withdrawn(ticket):  # its caller left as it was admitted
            await _give_back(reservation)
            self._end(ticket, RequestStatus.CANCELLED)
            return
        assert ticket.entry is not None  # noqa: S101
        self._scheduler.admitted(ticket.entry, self._clock.now_ns())
        self._start(ticket, reservation)

    async def _await_turn(self, ticket: _Ticket, acquire: asyncio.Future[Reservation]) -> bool:
        """Wait for ``acquire``; ``False`` if it was called off (displaced or cancelled)."""
        try:
            while not acquire.done():
                self._wake.clear()
                woken = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait((acquire, woken), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                if acquire.done():
                    break
                if ticket.withdrawn or (self._closed and not self._draining):
                    await _call_off(acquire)
                    self._end(ticket, RequestStatus.CANCELLED)
                    return False
                if self._displaced(ticket):
                    await _call_off(acquire)
                    if _withdrawn(ticket):  # its caller left meanwhile
                        self._end(ticket, RequestStatus.CANCELLED)
                    return False
        except asyncio.CancelledError:
            await asyncio.shield(_call_off(acquire))
            self._end(ticket, RequestStatus.CANCELLED)
            raise
        return True

    def _displaced(self, ticket: _Ticket) -> bool:
        """Whether a request that arrived meanwhile now comes first (``ticket`` goes back)."""
        entry = ticket.entry
        assert entry is not None  # noqa: S101
        self._scheduler.put_back(entry)
        now = self._clock.now_ns()
        if self._scheduler.peek(now) is entry:
            self._scheduler.take(now)
            return False
        return True

    # Running ---------------------------------------------------------------------------------

    def _start(self, ticket: _Ticket, reservation: Reservation) -> None:
        ticket.status = RequestStatus.PROCESSING
        ticket.reservation = reservation
        if ticket.deadline_timer is not None:
            ticket.deadline_timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run(ticket, reservation))
        self._running[task] = ticket
        task.add_done_callback(lambda t: self._running.pop(t, None))

    async def _run(self, ticket: _Ticket, reservation: Reservation) -> None:
        ticket.started = True
        request = ticket.request
        clock = self._clock
        started = clock.now_ns()
        status, result = RequestStatus.COMPLETED, None
        error: BaseException | None = None
        cancelled = False
        try:
            result = await self._processor(request)
        except asyncio.CancelledError as stop:
            status, error, cancelled = RequestStatus.CANCELLED, stop, True
        except Exception as failure:  # noqa: BLE001 (reported in the response)
            status, error = RequestStatus.FAILED, failure
        ended = clock.now_ns()
        usage = self._known_usage(request, result)
        response: QueueResponse[Any] = QueueResponse(
            request_id=request.id,
            model_id=request.model_id,
            status=status,
            result=result,
            error=error,
            input_tokens_used=None if usage is None else usage[0],
            output_tokens_used=None if usage is None else usage[1],
            wait_time=(started - ticket.submitted) / NS_PER_SECOND,
            processing_time=(ended - started) / NS_PER_SECOND,
            total_time=(ended - ticket.submitted) / NS_PER_SECOND,
            priority=request.priority,
        )
        self._resolve(ticket, response)
        try:
            if usage is None and not cancelled and self.config.usage_report_timeout > 0:
                usage = await self._await_report(ticket)
            ticket.settling = True
            settle = asyncio.ensure_future(self._settle(reservation, usage, response))
            self._settles.add(settle)
            settle.add_done_callback(self._settles.discard)
            await asyncio.shield(settle)
        finally:
            self._forget(ticket, response)
        if cancelled:
            raise asyncio.CancelledError

    def _known_usage(self, request: QueueRequest[Any], result: object) -> tuple[int, int] | None:
        if request.actual_input_tokens is not None or request.actual_output_tokens is not None:
            reported = (
                request.estimated_input_tokens if request.actual_input_tokens is None
                else request.actual_input_tokens,
                request.estimated_output_tokens if request.actual_output_tokens is None
                else request.actual_output_tokens,
            )  # fmt: skip
            if _is_usage(reported):
                return reported
            _log.warning(
                "request %s reported usage %r: not non-negative ints; the estimate stands",
                request.id, reported,
            )  # fmt: skip
            return None
        if self._usage_of is not None and result is not None:
            try:
                usage = self._usage_of(result)
            except Exception:  # noqa: BLE001 (a bad extractor must not lose the settlement)
                _log.exception("usage_of failed for request %s", request.id)
                return None
            if usage is None or _is_usage(usage):
                return usage
            _log.warning(
                "usage_of gave %r for request %s: not two non-negative ints; the estimate "
                "stands", usage, request.id,
            )  # fmt: skip
        return None

    async def _await_report(self, ticket: _Ticket) -> tuple[int, int] | None:
        report: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket.report = report
        handle = self._clock.call_later(self.config.usage_report_timeout, _resolver(report))
        try:
            await report
        finally:
            handle.cancel()
        usage = self._known_usage(ticket.request, None)
        if usage is None:
            _log.warning(
                "no usage reported for request %s within %ss: settled at its estimate",
                ticket.request.id, self.config.usage_report_timeout,
            )  # fmt: skip
        return usage

    async def _settle(
        self, reservation: Reservation, usage: tuple[int, int] | None, response: QueueResponse[Any]
    ) -> None:
        try:
            if usage is not None:
                try:
                    await reservation.settle(input_tokens=usage[0], output_tokens=usage[1])
                except InvalidUsageError:  # checked before; a race or a bad extractor
                    _log.warning("request %s reported bad usage %r", response.request_id, usage)
                else:
                    response.input_tokens_used, response.output_tokens_used = usage
                    return
            await reservation.settle()  # the estimate stands: never under-count
        except Exception:  # noqa: BLE001 (the store failed: the reservation lapses at its TTL)
            _log.exception("could not settle request %s", response.request_id)

    # Endings ---------------------------------------------------------------------------------

    def _resolve(self, ticket: _Ticket, response: QueueResponse[Any]) -> None:
        ticket.response = response
        ticket.status = response.status
        if not ticket.future.done():
            ticket.future.set_result(response)

    def _forget(self, ticket: _Ticket, response: QueueResponse[Any]) -> None:
        self._ended[response.status] += 1
        self._tickets.pop(ticket.request.id, None)
        finished = self._finished
        finished[ticket.request.id] = (response, ticket.request)
        if len(finished) > _KEEP_FINISHED:
            finished.popitem(last=False)

    def _end(
        self, ticket: _Ticket, status: RequestStatus, *, error: BaseException | None = None
    ) -> None:
        """End a request that never ran."""
        if ticket.deadline_timer is not None:
            ticket.deadline_timer.cancel()
        if ticket.entry is not None:
            self._scheduler.discard(ticket.entry)
        elapsed = (self._clock.now_ns() - ticket.submitted) / NS_PER_SECOND
        response: QueueResponse[Any] = QueueResponse(
            request_id=ticket.request.id,
            model_id=ticket.request.model_id,
            status=status,
            error=error,
            wait_time=elapsed,
            total_time=elapsed,
            priority=ticket.request.priority,
        )
        self._resolve(ticket, response)
        self._forget(ticket, response)

    def _expire(self, ticket: _Ticket) -> None:
        """The deadline passed: a request still waiting in the queue expires now."""
        if (
            ticket.status is RequestStatus.PENDING
            and not ticket.admitting
            and ticket.request.id in self._tickets
        ):
            self._end(ticket, RequestStatus.EXPIRED, error=AcquireTimeoutError(0.0, None))
        # a request being admitted expires by its acquire timeout

    def _caller_left(self, ticket: _Ticket) -> None:
        if ticket.status is RequestStatus.PENDING and ticket.request.id in self._tickets:
            ticket.withdrawn = True
            if ticket.admitting:
                self._wake.set()  # the dispatcher calls its admission off
            else:
                self._end(ticket, RequestStatus.CANCELLED)

    def _cancel_waiting(self) -> None:
        for ticket in list(self._scheduler.drain()):
            self._end(ticket, RequestStatus.CANCELLED)

    def _depths(self) -> dict[int, int]:
        depths = self._scheduler.depths()
        for ticket in self._tickets.values():
            if ticket.admitting:
                priority = ticket.request.priority
                depths[priority] = depths.get(priority, 0) + 1
        return depths


async def _call_off(acquire: asyncio.Future[Reservation]) -> None:
    """Cancel a pending admission; give back a reservation granted in the meantime.

    Waits without awaiting ``acquire`` itself, so that a cancellation of the caller is not
    mistaken for the admission's own.
    """
    acquire.cancel()
    await asyncio.wait((acquire,))
    if not acquire.cancelled() and acquire.exception() is None:
        await _give_back(acquire.result())


async def _give_back(reservation: Reservation) -> None:
    """Cancel a reservation whose call was never made; a store failure lapses at the TTL."""
    try:
        await reservation.cancel()
    except Exception:  # noqa: BLE001
        _log.exception("could not give back reservation %s", reservation.id)


def _withdrawn(ticket: _Ticket) -> bool:
    """Whether the caller gave up (read after an ``await``, when it may have changed)."""
    return ticket.withdrawn


def _is_usage(value: object) -> bool:
    """Whether ``value`` is ``(input_tokens, output_tokens)``: two non-negative ints."""
    return (
        isinstance(value, tuple)
        and len(value) == 2  # noqa: PLR2004
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    )


def _resolver(future: asyncio.Future[None]) -> Callable[[], None]:
    """A timer callback that resolves ``future`` unless it is done."""

    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    return resolve
