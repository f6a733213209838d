"""Regressions found by review: backoff growth, pause length, shared limiters, bad input."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from quotaflow import ConfigurationError, Limiter, SyncLimiter
from quotaflow.client import (
    AsyncQuotaflowTransport,
    ChatLimiter,
    ClientConfig,
    QuotaflowTransport,
    RetryPolicy,
)
from quotaflow.client._routing import route_request
from quotaflow.core import Concurrency
from quotaflow.providers import parse_rate_limit_headers
from quotaflow.testing import FakeClock

from .fakes import CHAT, OPENAI_HEADERS, Script, governed_plan, ok, rate_limited

BASE = "https://api.openai.com/v1"


def test_server_error_backoff_grows_with_each_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("quotaflow.client._transport.time.sleep", slept.append)
    error = httpx.Response(503, json={"error": {"message": "overloaded", "type": "server_error"}})
    retry = RetryPolicy(max_retries=4, base=0.5, cap=30, jitter=0.0)
    transport = QuotaflowTransport(Script(error).transport(),
                                   config=ClientConfig(track_cost=False, retry=retry))  # fmt: skip
    with httpx.Client(transport=transport, base_url=BASE) as http:
        assert http.post("/chat/completions", json=CHAT).status_code == 503
    assert slept == [0.5, 1.0, 2.0, 4.0]


def test_a_429_pause_is_not_lengthened_by_the_correction() -> None:
    # The provider says it has 300 requests left, far fewer than the store believes: that is
    # corrected, and the pause of 50 ms must still be about 50 ms, not a minute.
    low = {**OPENAI_HEADERS, "x-ratelimit-remaining-requests": "300"}
    script = Script(ok(), rate_limited("0.05", headers=low), ok())
    config = ClientConfig(track_cost=False, correction_interval=0.0)
    transport = QuotaflowTransport(script.transport(), config=config)
    with httpx.Client(transport=transport, base_url=BASE) as http:
        http.post("/chat/completions", json=CHAT)
        assert http.post("/chat/completions", json=CHAT).status_code == 200
    assert transport.stats.wait_max < 1.0


@pytest.mark.asyncio
async def test_transports_sharing_a_limiter_never_keep_the_probe() -> None:
    async def slow_first(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return ok()

    limiter = Limiter({})
    config = ClientConfig(track_cost=False)
    one = AsyncQuotaflowTransport(httpx.MockTransport(slow_first), config=config, limiter=limiter)
    two = AsyncQuotaflowTransport(httpx.MockTransport(slow_first), config=config, limiter=limiter)
    async with (
        httpx.AsyncClient(transport=one, base_url=BASE) as a,
        httpx.AsyncClient(transport=two, base_url=BASE) as b,
    ):
        first = asyncio.create_task(a.post("/chat/completions", json=CHAT))
        await asyncio.sleep(0.01)  # the second call arrives while the first one probes
        await b.post("/chat/completions", json=CHAT)
        await first
        await b.post("/chat/completions", json=CHAT)
    limits = limiter.limits_of("openai:gpt-4o")
    assert not any(isinstance(limit, Concurrency) for limit in limits)
    assert {limit.limit for limit in limits} == {600, 100_000}


def test_a_slow_call_is_not_taken_for_foreign_usage() -> None:
    clock = FakeClock()
    limiter, governor, plan = governed_plan(clock)
    limiter.acquire(plan.scopes, tokens=60_000)  # the bucket holds 60k when our call is sent
    mark, sent = governor.refunds_mark(plan.scope), clock.time()
    clock.advance(40.0)  # a 40 s call: the bucket refilled ~65k meanwhile
    headers = {**OPENAI_HEADERS, "x-ratelimit-remaining-tokens": "40000"}  # stamped at send
    snapshot = parse_rate_limit_headers("openai", headers)
    status = limiter.status(plan.scope)
    assert governor.correction(plan, snapshot, status, mark, sent=sent, forced=True) is None


def test_the_wrong_limiter_flavour_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="needs a SyncLimiter"):
        QuotaflowTransport(limiter=Limiter({}))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="needs an asyncio Limiter"):
        AsyncQuotaflowTransport(limiter=SyncLimiter({}))  # type: ignore[arg-type]


def test_chat_limiter_keeps_explicit_settings_and_checks_its_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    explicit = ClientConfig(headroom=1.0, token_headroom=0.5)
    with ChatLimiter("openai", api_key="k", config=explicit) as chat:
        assert (chat.config.headroom, chat.config.token_headroom) == (1.0, 0.5)
    monkeypatch.setenv("QUOTAFLOW_MAX_RETRIES", "0")
    with ChatLimiter("openai", api_key="k") as chat:
        assert chat.config.retry.max_retries == 0  # the environment beats provider defaults
        assert chat.config.headroom == 0.98
    with pytest.raises(ConfigurationError, match="http_client must be"):
        ChatLimiter("openai", api_key="k", http_client=object())
    with httpx.Client() as sync_client:
        chat = ChatLimiter("openai", api_key="k", http_client=sync_client)
        with pytest.raises(ConfigurationError, match="async calls need an AsyncClient"):
            asyncio.run(chat.chat_completion("gpt-4o", [{"role": "user", "content": "hi"}]))
        chat.close()


def test_assistants_thread_messages_are_not_governed_and_the_scope_header_never_leaves() -> None:
    assert route_request("POST", "api.openai.com", "/v1/threads/t_1/messages", b"{}", None) is None
    script = Script(httpx.Response(200, json={"id": "msg_1"}))
    transport = QuotaflowTransport(script.transport(), config=ClientConfig(track_cost=False))
    with httpx.Client(transport=transport, base_url=BASE) as http:
        http.post("/threads/t_1/messages", json={}, headers={"x-quotaflow-scope": "user:1"})
    assert "x-quotaflow-scope" not in script.requests[0].headers
    assert transport.stats.calls == 0


def test_the_learner_sees_raw_estimates_so_its_correction_holds() -> None:
    # The heuristic over-counts this prompt; the provider reports 10 prompt tokens each time.
    script = Script(ok(prompt=10, completion=5))
    config = ClientConfig(track_cost=False, token_counter="heuristic")  # noqa: S106
    transport = QuotaflowTransport(script.transport(), config=config)
    body = {**CHAT, "messages": [{"role": "user", "content": "x" * 80}]}  # ~27 estimated
    with httpx.Client(transport=transport, base_url=BASE) as http:
        for _ in range(40):
            http.post("/chat/completions", json=body)
    learned = transport.governor.learner.learned("gpt-4o")
    assert learned.input_ratio < 0.5  # it keeps correcting: fed corrected estimates, it drifts to 1
    route = route_request("POST", "api.openai.com", "/v1/chat/completions",
                          json.dumps(body).encode(), None)  # fmt: skip
    assert route is not None
    assert transport.governor.plan(route).usage.input_tokens <= 11
