"""httpx transports that govern every call an httpx-based client makes.

Wrap any inner transport and give the result to any client built on httpx or httpx2 (the
official ``openai`` and ``anthropic`` SDKs, via ``http_client=``). For each completion
request the transport estimates the usage, reserves it across the call's scopes (waiting FIFO
when a limit is reached), sends it, learns from the response headers, settles from the usage
the response reports (for streams: when the stream ends, however it ends) and retries by
error class with the shared backoff. Other requests pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import time
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Final

import httpx

from quotaflow._clock import Clock, SystemClock
from quotaflow._errors import ConfigurationError, QuotaExhaustedError
from quotaflow._limiter import Limiter, Reservation
from quotaflow._sync_limiter import SyncLimiter, SyncReservation
from quotaflow.client._config import ClientConfig
from quotaflow.client._governor import LIMITS_NOTE_TTL as _LIMITS_NOTE_TTL
from quotaflow.client._governor import CallPlan, Governor
from quotaflow.client._openrouter import key_url, parse_key_info
from quotaflow.client._routing import route_request
from quotaflow.client._stats import ClientStats, StatsSnapshot
from quotaflow.client._streams import wrap_async, wrap_sync
from quotaflow.providers import (
    ErrorClass,
    ErrorKind,
    Provider,
    RateLimitSnapshot,
    StreamUsage,
    StreamUsageAccumulator,
    backoff,
    classify_error,
    classify_exception,
    parse_rate_limit_headers,
)
from quotaflow.stores import AsyncNotes, Notes

__all__ = ["SCOPE_HEADER", "AsyncQuotaflowTransport", "QuotaflowTransport"]

#: A request header naming extra scopes for one call (``user:42,team:7``); removed before
#: the request is sent.
SCOPE_HEADER: Final = "x-quotaflow-scope"

_EVENT_STREAM: Final = "text/event-stream"
_UNREAD: Final = RateLimitSnapshot(Provider.GENERIC)  # headers not read for this response
#: A response's rate-limit snapshot, the refunds counted when its request was sent, and when
#: it was sent (seconds on the transport's clock).
_Seen = tuple[RateLimitSnapshot, tuple[int, ...], float]


def _library(request: object) -> ModuleType:
    name = type(request).__module__.split(".", 1)[0]
    return importlib.import_module(name) if name == "httpx2" else httpx


def _pop_scopes(headers: Any) -> tuple[str, ...]:  # noqa: ANN401 (httpx or httpx2 Headers)
    raw = headers.get(SCOPE_HEADER)
    if raw is None:
        return ()
    del headers[SCOPE_HEADER]
    return tuple(s.strip() for s in raw.split(",") if s.strip())


def _asks_key(plan: CallPlan, config: ClientConfig) -> bool:
    return plan.route.provider is Provider.OPENROUTER and config.learn_limits


def _key_request(request: Any) -> Any:  # noqa: ANN401 (an httpx or httpx2 request)
    """A GET of OpenRouter's key endpoint, with the completion request's credentials."""
    headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
    return type(request)("GET", key_url(str(request.url)), headers=headers)


def _received(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.now_ns() / 1e9, UTC)


class _Base:
    """What both transports share: configuration, the governor, the inner transports."""

    _governor: Governor

    def __init__(self, transport: object, config: ClientConfig | None, clock: Clock | None) -> None:
        self.config = config if config is not None else ClientConfig.from_env()
        if not isinstance(self.config, ClientConfig):
            raise ConfigurationError(f"config must be a ClientConfig, got {config!r}")
        self._clock = clock or SystemClock()
        self._inner = transport
        self._defaults: dict[ModuleType, Any] = {}
        self._defaults_lock = threading.Lock()  # sync transports are shared by threads

    #: The name of the library's default transport class this flavour wraps.
    _default_transport = "HTTPTransport"

    def _inner_for(self, request: Any) -> Any:  # noqa: ANN401
        """The inner transport: the one given, else the default of the request's library."""
        if self._inner is not None:
            return self._inner
        library = _library(request)
        inner = self._defaults.get(library)
        if inner is None:
            with self._defaults_lock:  # one per library, however many threads ask at once
                inner = self._defaults.get(library)
                if inner is None:
                    inner = self._defaults[library] = getattr(library, self._default_transport)()
        return inner

    @property
    def stats(self) -> StatsSnapshot:
        """What this transport did so far (calls, retries, provider 429s, waits, tokens)."""
        return self._governor.stats.snapshot()

    @property
    def governor(self) -> Governor:
        """The decisions and statistics behind this transport."""
        return self._governor

    def _snapshot(self, plan: CallPlan, response: Any) -> RateLimitSnapshot:  # noqa: ANN401
        if not self._governor.headers_due(plan.scope, response.status_code):
            return _UNREAD
        return parse_rate_limit_headers(
            plan.route.provider, response.headers, now=_received(self._clock)
        )

    def _classify(self, plan: CallPlan, status: int, headers: Any, body: bytes) -> ErrorClass:  # noqa: ANN401
        error = classify_error(
            plan.route.provider, status, headers, body,
            now=_received(self._clock), needed=plan.usage,
            max_delay=max(self.config.retry.max_hint, self.config.default_pause),
        )  # fmt: skip
        self._governor.stats.error(str(error.kind))
        if error.kind is ErrorKind.RATE_LIMITED and status == 429:  # noqa: PLR2004
            self._governor.stats.add(provider_429=1)
        return error

    def _network_error(self, plan: CallPlan, exc: Exception, attempt: int) -> ErrorClass:
        """Classify a failed send or read; re-raise it unless it is to be retried."""
        error = classify_exception(plan.route.provider, exc)
        if error is None:
            raise exc  # not a transport failure: a bug to surface, not to retry
        self._governor.stats.error(str(error.kind))
        if self._gives_up(error, attempt):
            raise exc
        return error

    def _key_failed(self, plan: CallPlan, reason: object) -> None:
        self._governor.log.log(
            logging.WARNING, "key_endpoint_failed", key=f"key:{plan.scope}",
            scope=plan.scope, reason=str(reason)[:200],
        )  # fmt: skip

    def _gives_up(self, error: ErrorClass, attempt: int) -> bool:
        retry = self.config.retry
        if not error.retryable or attempt >= retry.max_retries:
            return True
        return error.retry_after is not None and error.retry_after > retry.max_hint

    def _delay(self, error: ErrorClass | None, attempt: int) -> float:
        retry = self.config.retry
        hint = error.retry_after if error is not None else None
        return backoff(attempt, hint=hint, base=retry.base, cap=retry.cap, jitter=retry.jitter)


class AsyncQuotaflowTransport(_Base, httpx.AsyncBaseTransport):
    """An async httpx transport that governs completion calls; see the module docstring.

    Args:
        transport: the inner transport (default: httpx's or httpx2's, matching the client).
        config: the options (default: :meth:`ClientConfig.from_env`).
        limiter: an existing limiter to share (default: one built from ``config``).
        clock: the time source (tests inject a fake one).
        stats: statistics to count into (to share them between transports).

    Example:
        >>> transport = AsyncQuotaflowTransport(config=ClientConfig(store="redis://..."))
        >>> client = openai.AsyncOpenAI(
        ...     max_retries=0, http_client=httpx2.AsyncClient(transport=transport)
        ... )
    """

    _default_transport = "AsyncHTTPTransport"

    def __init__(
        self,
        transport: Any = None,  # noqa: ANN401 (an httpx or httpx2 async transport)
        *,
        config: ClientConfig | None = None,
        limiter: Limiter | None = None,
        clock: Clock | None = None,
        stats: ClientStats | None = None,
    ) -> None:
        super().__init__(transport, config, clock)
        config = self.config
        if limiter is not None and not isinstance(limiter, Limiter):
            raise ConfigurationError(
                f"AsyncQuotaflowTransport needs an asyncio Limiter, got {limiter!r} "
                "(QuotaflowTransport takes a SyncLimiter)"
            )
        self._owns_limiter = limiter is None
        self.limiter = limiter or Limiter(
            dict(config.limits), store=config.store, clock=self._clock,
            reservation_ttl=config.reservation_ttl, fault_policy=config.fault_policy,
        )  # fmt: skip
        self._governor = Governor(config, self.limiter, self._clock, stats)
        store = self.limiter.store
        self._notes = store if isinstance(store, AsyncNotes) else None
        self._direct = bool(getattr(store, "nonblocking", False))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Govern ``request`` if it is a completion call; pass anything else through."""
        content = await request.aread()
        route = route_request(
            request.method, request.url.host, request.url.path, content, self.config.provider
        )
        inner = self._inner_for(request)
        if route is None:
            _pop_scopes(request.headers)  # never forwarded, governed or not
            response: httpx.Response = await inner.handle_async_request(request)
            return response
        governor = self._governor
        plan = governor.plan(route, _pop_scopes(request.headers))
        await self._prepare(plan, request, inner)
        governor.stats.add(calls=1)
        try:
            return await self._call(request, plan, inner)
        except BaseException:
            governor.stats.add(failed=1)
            raise

    async def _prepare(self, plan: CallPlan, request: httpx.Request, inner: Any) -> None:  # noqa: ANN401
        governor = self._governor
        scope = plan.scope
        notes = self._notes
        if governor.needs_loading(scope):
            limits = pause = None
            if notes is not None:
                limits = await notes.aget_note(f"limits|{scope}")
                pause = await notes.aget_note(f"pause|{scope}")
            governor.load(scope, plan.route.provider, limits, pause)
            if limits is None and _asks_key(plan, self.config):
                await self._learn_key(plan, request, inner)
        elif notes is not None and governor.pause_check_due(scope):
            governor.load_pause(scope, await notes.aget_note(f"pause|{scope}"))
        governor.ensure(plan)
        governor.check_paused(scope)

    async def _call(self, request: httpx.Request, plan: CallPlan, inner: Any) -> httpx.Response:  # noqa: ANN401
        stats = self._governor.stats
        attempt = 0
        while True:
            reservation = await self.limiter.acquire(
                plan.scopes, plan.usage, timeout=self.config.acquire_timeout
            )
            stats.attempt(reservation.wait_time, retry=attempt > 0)
            outcome = await self._attempt(request, plan, inner, reservation, attempt)
            if not isinstance(outcome, float):
                return outcome
            await asyncio.sleep(outcome)
            attempt += 1

    async def _attempt(
        self,
        request: httpx.Request,
        plan: CallPlan,
        inner: Any,  # noqa: ANN401
        reservation: Reservation,
        attempt: int,
    ) -> httpx.Response | float:
        """One attempt: the final response, or the delay before the next attempt."""
        probe = self._governor.probing(plan.scope)
        mark = self._governor.refunds_mark(plan.scope)
        sent = self._clock.now_ns() / 1e9
        try:
            response: httpx.Response = await inner.handle_async_request(request)
        except Exception as exc:  # noqa: BLE001 (classified; re-raised unless to be retried)
            await self._settle(reservation, plan.usage)  # the provider may have counted it
            return self._delay(self._network_error(plan, exc, attempt), attempt)
        except BaseException:
            await self._settle(reservation, plan.usage)
            raise
        try:
            snapshot = self._snapshot(plan, response)
            await self._learn(plan, snapshot)
        except BaseException:  # a cancellation while storing a note: nothing may stay held
            await self._settle(reservation, plan.usage)
            await response.aclose()
            raise
        seen = (snapshot, mark, sent)
        if response.status_code >= 400:  # noqa: PLR2004
            return await self._failed(response, plan, reservation, seen, attempt)
        if _EVENT_STREAM in response.headers.get("content-type", ""):
            return await self._stream(response, plan, reservation, seen, probe=probe)
        try:
            body = await response.aread()
        except Exception as exc:  # noqa: BLE001 (cut while reading: like a failed send)
            await self._settle(reservation, plan.usage)
            return self._delay(self._network_error(plan, exc, attempt), attempt)
        except BaseException:
            await self._settle(reservation, plan.usage)
            raise
        usage = self._governor.settled(plan, body)
        await self._settle(reservation, usage)
        if probe and (owed := self._governor.owed(usage)) is not None:
            await self.limiter.debit(plan.scope, owed)  # it was admitted on requests only
        await self._correct(plan, seen)
        return response

    async def _failed(
        self,
        response: httpx.Response,
        plan: CallPlan,
        reservation: Reservation,
        seen: _Seen,
        attempt: int,
    ) -> httpx.Response | float:
        try:
            body = await response.aread()
        except Exception as exc:  # noqa: BLE001 (cut while reading: like a failed send)
            await self._settle(reservation, self._governor.failed_attempt(plan))
            return self._delay(self._network_error(plan, exc, attempt), attempt)
        finally:
            if not reservation.done:
                await self._settle(reservation, self._governor.failed_attempt(plan))
        error = self._classify(plan, response.status_code, response.headers, body)
        if self._gives_up(error, attempt):
            await self._after_error(plan, error, seen, attempt)
            self._governor.stats.add(failed=1)
            return response
        delay = await self._after_error(plan, error, seen, attempt)
        await response.aclose()
        return delay

    async def _settle(self, reservation: Reservation, usage: Any) -> None:  # noqa: ANN401
        await _settle(reservation, usage, direct=self._direct)

    async def _learn_key(self, plan: CallPlan, request: httpx.Request, inner: Any) -> None:  # noqa: ANN401
        """Ask OpenRouter's key endpoint for the limits and credits (once per scope)."""
        try:
            response = await inner.handle_async_request(_key_request(request))
            body = await response.aread()
            await response.aclose()
        except Exception as exc:  # noqa: BLE001 (the call goes on with the defaults)
            self._key_failed(plan, exc)
            return
        await self._apply_key(plan, response.status_code, body)

    async def _apply_key(self, plan: CallPlan, status: int, body: bytes) -> None:
        key = parse_key_info(body) if status == 200 else None  # noqa: PLR2004
        if key is None:
            self._key_failed(plan, f"HTTP {status}")
            return
        note, paused = self._governor.learn_key(plan, key)
        if self._notes is not None:
            with contextlib.suppress(Exception):  # learned here regardless
                if note is not None:
                    await self._notes.aput_note(f"limits|{plan.scope}", note, _LIMITS_NOTE_TTL)
                if paused is not None:
                    ttl = self._governor.pause_ttl(plan.scope)
                    await self._notes.aput_note(f"pause|{plan.scope}", paused[1], ttl)

    async def _after_error(
        self, plan: CallPlan, error: ErrorClass, seen: _Seen, attempt: int = 0
    ) -> float:
        """Pause or correct the scope after an error; the backoff before retrying, if any."""
        governor = self._governor
        if error.kind is ErrorKind.QUOTA_EXHAUSTED:
            exhausted, note = governor.quota_pause(plan, error)
            if self._notes is not None:
                with contextlib.suppress(Exception):  # the pause holds here regardless
                    await self._notes.aput_note(
                        f"pause|{plan.scope}", note, governor.pause_ttl(plan.scope)
                    )
            raise exhausted
        if error.kind is ErrorKind.RATE_LIMITED:
            await self._correct(plan, seen, forced=True)  # first: the pause counts from there
            status = await self.limiter.status(plan.scope)
            debit, pause = governor.pause_debit(plan, error, status)
            if debit is not None:
                await self.limiter.debit(plan.scope, debit)
                return 0.0  # the next admission waits for the pause, in order
            return pause
        return self._delay(error, attempt) if error.retryable else 0.0

    async def _learn(self, plan: CallPlan, snapshot: RateLimitSnapshot) -> None:
        note = self._governor.learn(plan, snapshot)
        if note is not None and self._notes is not None:
            with contextlib.suppress(Exception):  # learned here regardless
                await self._notes.aput_note(f"limits|{plan.scope}", note, _LIMITS_NOTE_TTL)

    async def _correct(self, plan: CallPlan, seen: _Seen, *, forced: bool = False) -> None:
        governor = self._governor
        snapshot, mark, sent = seen
        if not len(snapshot) or not governor.config.correct_remaining:
            return
        status = await self.limiter.status(plan.scope)
        debit = governor.correction(plan, snapshot, status, mark, sent=sent, forced=forced)
        if debit is not None:
            await self.limiter.debit(plan.scope, debit)

    async def _stream(
        self,
        response: httpx.Response,
        plan: CallPlan,
        reservation: Reservation,
        seen: _Seen,
        *,
        probe: bool,
    ) -> httpx.Response:
        governor = self._governor

        async def finish(state: StreamUsage) -> None:
            usage = governor.settled_stream(plan, state)
            await self._settle(reservation, usage)
            if probe and (owed := governor.owed(usage)) is not None:
                await self.limiter.debit(plan.scope, owed)
            if state.error is not None:
                governor.stats.error(str(state.error.kind))
                with contextlib.suppress(QuotaExhaustedError):
                    await self._after_error(plan, state.error, seen)
                governor.stats.add(failed=1)
            else:
                governor.stats.add(succeeded=1)
            await self._correct(plan, seen)

        accumulator = StreamUsageAccumulator(plan.route.provider, now=_received(self._clock))
        if response.is_closed:  # the body is in memory already (a mock transport, a cache)
            accumulator.feed(response.content)
            await finish(accumulator.close())
            return response
        response.stream = wrap_async(response.stream, accumulator, finish)
        return response

    async def aclose(self) -> None:
        """Close the inner transports and, if this transport made it, the limiter."""
        for inner in [self._inner, *self._defaults.values()]:
            if inner is not None:
                await inner.aclose()
        self._defaults.clear()
        if self._owns_limiter:
            await self.limiter.aclose()


class QuotaflowTransport(_Base, httpx.BaseTransport):
    """A sync httpx transport that governs completion calls; see the module docstring.

    Args:
        transport: the inner transport (default: httpx's or httpx2's, matching the client).
        config: the options (default: :meth:`ClientConfig.from_env`).
        limiter: an existing limiter to share (default: one built from ``config``).
        clock: the time source (tests inject a fake one).
        stats: statistics to count into (to share them between transports).

    Example:
        >>> transport = QuotaflowTransport(config=ClientConfig(store="sqlite:///limits.db"))
        >>> client = anthropic.Anthropic(
        ...     max_retries=0, http_client=httpx2.Client(transport=transport)
        ... )
    """

    def __init__(
        self,
        transport: Any = None,  # noqa: ANN401 (an httpx or httpx2 transport)
        *,
        config: ClientConfig | None = None,
        limiter: SyncLimiter | None = None,
        clock: Clock | None = None,
        stats: ClientStats | None = None,
    ) -> None:
        super().__init__(transport, config, clock)
        config = self.config
        if limiter is not None and not isinstance(limiter, SyncLimiter):
            raise ConfigurationError(
                f"QuotaflowTransport needs a SyncLimiter, got {limiter!r} "
                "(AsyncQuotaflowTransport takes a Limiter)"
            )
        self._owns_limiter = limiter is None
        self.limiter = limiter or SyncLimiter(
            dict(config.limits), store=config.store, clock=self._clock,
            reservation_ttl=config.reservation_ttl, fault_policy=config.fault_policy,
        )  # fmt: skip
        self._governor = Governor(config, self.limiter, self._clock, stats)
        store = self.limiter.store
        self._notes = store if isinstance(store, Notes) else None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Govern ``request`` if it is a completion call; pass anything else through."""
        content = request.read()
        route = route_request(
            request.method, request.url.host, request.url.path, content, self.config.provider
        )
        inner = self._inner_for(request)
        if route is None:
            _pop_scopes(request.headers)  # never forwarded, governed or not
            response: httpx.Response = inner.handle_request(request)
            return response
        governor = self._governor
        plan = governor.plan(route, _pop_scopes(request.headers))
        self._prepare(plan, request, inner)
        governor.stats.add(calls=1)
        try:
            return self._call(request, plan, inner)
        except BaseException:
            governor.stats.add(failed=1)
            raise

    def _prepare(self, plan: CallPlan, request: httpx.Request, inner: Any) -> None:  # noqa: ANN401
        governor = self._governor
        scope = plan.scope
        notes = self._notes
        if governor.needs_loading(scope):
            limits = pause = None
            if notes is not None:
                limits = notes.get_note(f"limits|{scope}")
                pause = notes.get_note(f"pause|{scope}")
            governor.load(scope, plan.route.provider, limits, pause)
            if limits is None and _asks_key(plan, self.config):
                self._learn_key(plan, request, inner)
        elif notes is not None and governor.pause_check_due(scope):
            governor.load_pause(scope, notes.get_note(f"pause|{scope}"))
        governor.ensure(plan)
        governor.check_paused(scope)

    def _call(self, request: httpx.Request, plan: CallPlan, inner: Any) -> httpx.Response:  # noqa: ANN401
        stats = self._governor.stats
        attempt = 0
        while True:
            reservation = self.limiter.acquire(
                plan.scopes, plan.usage, timeout=self.config.acquire_timeout
            )
            stats.attempt(reservation.wait_time, retry=attempt > 0)
            outcome = self._attempt(request, plan, inner, reservation, attempt)
            if not isinstance(outcome, float):
                return outcome
            if outcome:
                time.sleep(outcome)
            attempt += 1

    def _attempt(
        self,
        request: httpx.Request,
        plan: CallPlan,
        inner: Any,  # noqa: ANN401
        reservation: SyncReservation,
        attempt: int,
    ) -> httpx.Response | float:
        """One attempt: the final response, or the delay before the next attempt."""
        probe = self._governor.probing(plan.scope)
        mark = self._governor.refunds_mark(plan.scope)
        sent = self._clock.now_ns() / 1e9
        try:
            response: httpx.Response = inner.handle_request(request)
        except Exception as exc:  # noqa: BLE001 (classified; re-raised unless to be retried)
            reservation.settle(plan.usage)  # the provider may have counted it
            return self._delay(self._network_error(plan, exc, attempt), attempt)
        except BaseException:
            reservation.settle(plan.usage)
            raise
        try:
            snapshot = self._snapshot(plan, response)
            self._learn(plan, snapshot)
        except BaseException:  # an interruption while storing a note: nothing may stay held
            reservation.settle(plan.usage)
            response.close()
            raise
        seen = (snapshot, mark, sent)
        if response.status_code >= 400:  # noqa: PLR2004
            return self._failed(response, plan, reservation, seen, attempt)
        if _EVENT_STREAM in response.headers.get("content-type", ""):
            return self._stream(response, plan, reservation, seen, probe=probe)
        try:
            body = response.read()
        except Exception as exc:  # noqa: BLE001 (cut while reading: like a failed send)
            reservation.settle(plan.usage)
            return self._delay(self._network_error(plan, exc, attempt), attempt)
        except BaseException:
            reservation.settle(plan.usage)
            raise
        usage = self._governor.settled(plan, body)
        reservation.settle(usage)
        if probe and (owed := self._governor.owed(usage)) is not None:
            self.limiter.debit(plan.scope, owed)  # it was admitted on requests only
        self._correct(plan, seen)
        return response

    def _failed(
        self,
        response: httpx.Response,
        plan: CallPlan,
        reservation: SyncReservation,
        seen: _Seen,
        attempt: int,
    ) -> httpx.Response | float:
        try:
            body = response.read()
        except Exception as exc:  # noqa: BLE001 (cut while reading: like a failed send)
            reservation.settle(self._governor.failed_attempt(plan))
            return self._delay(self._network_error(plan, exc, attempt), attempt)
        finally:
            if not reservation.done:
                reservation.settle(self._governor.failed_attempt(plan))
        error = self._classify(plan, response.status_code, response.headers, body)
        if self._gives_up(error, attempt):
            self._after_error(plan, error, seen, attempt)
            self._governor.stats.add(failed=1)
            return response
        delay = self._after_error(plan, error, seen, attempt)
        response.close()
        return delay

    def _learn_key(self, plan: CallPlan, request: httpx.Request, inner: Any) -> None:  # noqa: ANN401
        """Ask OpenRouter's key endpoint for the limits and credits (once per scope)."""
        try:
            response = inner.handle_request(_key_request(request))
            body = response.read()
            response.close()
        except Exception as exc:  # noqa: BLE001 (the call goes on with the defaults)
            self._key_failed(plan, exc)
            return
        key = parse_key_info(body) if response.status_code == 200 else None  # noqa: PLR2004
        if key is None:
            self._key_failed(plan, f"HTTP {response.status_code}")
            return
        note, paused = self._governor.learn_key(plan, key)
        if self._notes is not None:
            with contextlib.suppress(Exception):  # learned here regardless
                if note is not None:
                    self._notes.put_note(f"limits|{plan.scope}", note, _LIMITS_NOTE_TTL)
                if paused is not None:
                    ttl = self._governor.pause_ttl(plan.scope)
                    self._notes.put_note(f"pause|{plan.scope}", paused[1], ttl)

    def _after_error(
        self, plan: CallPlan, error: ErrorClass, seen: _Seen, attempt: int = 0
    ) -> float:
        """Pause or correct the scope after an error; the backoff before retrying, if any."""
        governor = self._governor
        if error.kind is ErrorKind.QUOTA_EXHAUSTED:
            exhausted, note = governor.quota_pause(plan, error)
            if self._notes is not None:
                with contextlib.suppress(Exception):  # the pause holds here regardless
                    self._notes.put_note(
                        f"pause|{plan.scope}", note, governor.pause_ttl(plan.scope)
                    )
            raise exhausted
        if error.kind is ErrorKind.RATE_LIMITED:
            self._correct(plan, seen, forced=True)  # first: the pause counts from there
            status = self.limiter.status(plan.scope)
            debit, pause = governor.pause_debit(plan, error, status)
            if debit is not None:
                self.limiter.debit(plan.scope, debit)
                return 0.0  # the next admission waits for the pause, in order
            return pause
        return self._delay(error, attempt) if error.retryable else 0.0

    def _learn(self, plan: CallPlan, snapshot: RateLimitSnapshot) -> None:
        note = self._governor.learn(plan, snapshot)
        if note is not None and self._notes is not None:
            with contextlib.suppress(Exception):  # learned here regardless
                self._notes.put_note(f"limits|{plan.scope}", note, _LIMITS_NOTE_TTL)

    def _correct(self, plan: CallPlan, seen: _Seen, *, forced: bool = False) -> None:
        governor = self._governor
        snapshot, mark, sent = seen
        if not len(snapshot) or not governor.config.correct_remaining:
            return
        status = self.limiter.status(plan.scope)
        debit = governor.correction(plan, snapshot, status, mark, sent=sent, forced=forced)
        if debit is not None:
            self.limiter.debit(plan.scope, debit)

    def _stream(
        self,
        response: httpx.Response,
        plan: CallPlan,
        reservation: SyncReservation,
        seen: _Seen,
        *,
        probe: bool,
    ) -> httpx.Response:
        governor = self._governor

        def finish(state: StreamUsage) -> None:
            usage = governor.settled_stream(plan, state)
            reservation.settle(usage)
            if probe and (owed := governor.owed(usage)) is not None:
                self.limiter.debit(plan.scope, owed)
            if state.error is not None:
                governor.stats.error(str(state.error.kind))
                with contextlib.suppress(QuotaExhaustedError):
                    self._after_error(plan, state.error, seen)
                governor.stats.add(failed=1)
            else:
                governor.stats.add(succeeded=1)
            self._correct(plan, seen)

        accumulator = StreamUsageAccumulator(plan.route.provider, now=_received(self._clock))
        if response.is_closed:  # the body is in memory already (a mock transport, a cache)
            accumulator.feed(response.content)
            finish(accumulator.close())
            return response
        response.stream = wrap_sync(response.stream, accumulator, finish)
        return response

    def close(self) -> None:
        """Close the inner transports and, if this transport made it, the limiter."""
        for inner in [self._inner, *self._defaults.values()]:
            if inner is not None:
                inner.close()
        self._defaults.clear()
        if self._owns_limiter:
            self.limiter.close()


async def _settle(reservation: Reservation, usage: Any, *, direct: bool = False) -> None:  # noqa: ANN401
    """Settle, shielded from the caller's cancellation (the settlement must land).

    ``direct``: the store never blocks, so settling has no await point that a cancellation
    could interrupt, and needs no task of its own.
    """
    if direct:
        await reservation.settle(usage)
        return
    task = asyncio.ensure_future(reservation.settle(usage))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task], timeout=5)
        raise
