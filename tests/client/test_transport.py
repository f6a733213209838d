"""The governed transports against a scripted provider (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from quotaflow import QuotaExhaustedError, SyncLimiter, rpm
from quotaflow.client import (
    AsyncQuotaflowTransport,
    ClientConfig,
    QuotaflowTransport,
    RetryPolicy,
)
from quotaflow.providers import parse_rate_limit_headers
from quotaflow.stores import MemoryStore
from quotaflow.testing import FakeClock, let_tasks_run

from .fakes import (
    CHAT,
    OPENAI_HEADERS,
    Script,
    governed_plan,
    insufficient_quota,
    ok,
    rate_limited,
    sse,
)

BASE = "https://api.openai.com/v1"


def client(
    script: Script, clock: FakeClock | None = None, **options: object
) -> tuple[httpx.Client, QuotaflowTransport]:
    config = ClientConfig(**{"track_cost": False, **options})  # type: ignore[arg-type]
    transport = QuotaflowTransport(script.transport(), config=config, clock=clock)
    return httpx.Client(transport=transport, base_url=BASE), transport


def test_limits_are_learned_from_the_first_response_with_headroom() -> None:
    script = Script(ok())
    http, transport = client(script)
    # Before the first response: conservative defaults and a one-call probe.
    http.post("/chat/completions", json=CHAT)
    limits = {str(limit.metric): limit for limit in transport.limiter.limits_of("openai:gpt-4o")}
    assert set(limits) == {"requests", "tokens"}  # the probe is gone
    assert (limits["requests"].limit, limits["requests"].capacity) == (600, 588)
    assert (limits["tokens"].limit, limits["tokens"].capacity) == (100_000, 98_000)


def test_the_probe_sends_one_call_until_the_headers_are_known() -> None:
    script = Script(ok())
    _, transport = client(script)
    config_limits = transport.governor._effective(  # what a new scope starts with
        transport.governor._state("openai:gpt-4o", transport.config.provider or "openai")  # type: ignore[arg-type]
    )
    assert any(str(limit.metric) == "concurrent" for limit in config_limits)


def test_a_large_first_call_is_not_refused_by_the_default_limits() -> None:
    script = Script(ok(prompt=40_000, completion=5))
    http, transport = client(script)
    big = {**CHAT, "messages": [{"role": "user", "content": "word " * 40_000}]}
    assert http.post("/chat/completions", json=big).status_code == 200  # default TPM: 30,000
    assert transport.stats.succeeded == 1


def test_success_settles_with_the_reported_usage() -> None:
    script = Script(ok(prompt=10, completion=5))
    http, transport = client(script, FakeClock())  # no refill while it runs
    response = http.post("/chat/completions", json=CHAT)
    assert response.json()["usage"]["total_tokens"] == 15
    status = transport.limiter.status("openai:gpt-4o")
    used = {str(s.metric): s.used for s in status.limits}
    # max_tokens was refunded; a snapshot rounds a partial unit up (+1 at most)
    assert used["requests"] in {1, 2}
    assert used["tokens"] in {15, 16}
    stats = transport.stats
    assert (stats.calls, stats.succeeded, stats.provider_429) == (1, 1, 0)
    assert (stats.input_tokens, stats.output_tokens, stats.reserved_output_tokens) == (10, 5, 100)


def test_requests_that_are_not_completions_pass_through() -> None:
    script = Script(httpx.Response(200, json={"data": []}))
    http, transport = client(script)
    assert http.get("/models").json() == {"data": []}
    assert transport.stats.calls == 0


def test_extra_scopes_come_from_a_header_that_is_not_forwarded() -> None:
    script = Script(ok())
    http, transport = client(script, limits={"user:*": (rpm(2),)})
    for _ in range(2):
        http.post("/chat/completions", json=CHAT, headers={"x-quotaflow-scope": "user:7"})
    assert "x-quotaflow-scope" not in script.requests[0].headers
    assert transport.limiter.status("user:7").limits[0].used == 2
    assert transport.limiter.try_acquire("user:7").reservation is None


def test_a_429_pauses_the_scope_and_the_retry_succeeds() -> None:
    script = Script(ok(), rate_limited("0.05"), ok())
    http, transport = client(script)
    http.post("/chat/completions", json=CHAT)  # learns the limits
    response = http.post("/chat/completions", json=CHAT)
    assert response.status_code == 200
    stats = transport.stats
    assert (stats.provider_429, stats.retries, stats.pauses) == (1, 1, 1)
    assert stats.errors == {"rate_limited": 1}
    # The pause was charged to the requests bucket: the retry waited for it.
    assert stats.wait_max >= 0.05


def test_retries_give_up_after_max_retries_and_return_the_error() -> None:
    script = Script(
        httpx.Response(500, json={"error": {"message": "boom", "type": "server_error"}})
    )
    http, transport = client(script, retry=RetryPolicy(
        max_retries=2, base=0.001, cap=0.002))  # fmt: skip
    response = http.post("/chat/completions", json=CHAT)
    assert response.status_code == 500
    stats = transport.stats
    assert (stats.attempts, stats.retries, stats.failed) == (3, 2, 1)
    # Every failed attempt counted one request and no tokens.
    used = {str(s.metric): s.used for s in transport.limiter.status("openai:gpt-4o").limits}
    assert used["requests"] == 3
    assert used.get("tokens", 0) == 0


def test_network_errors_are_retried() -> None:
    script = Script(httpx.ConnectError("refused"), ok())
    http, transport = client(script, retry=RetryPolicy(base=0.001, cap=0.002))
    assert http.post("/chat/completions", json=CHAT).status_code == 200
    assert transport.stats.errors == {"network": 1}


def test_quota_exhausted_raises_and_pauses_every_worker_on_the_store() -> None:
    store = MemoryStore()
    script = Script(insufficient_quota())
    config = ClientConfig(track_cost=False, quota_pause=60)
    shared_one = QuotaflowTransport(
        script.transport(), config=config,
        limiter=SyncLimiter({}, store=store),
    )  # fmt: skip
    shared_two = QuotaflowTransport(
        script.transport(), config=config,
        limiter=SyncLimiter({}, store=store),
    )  # fmt: skip
    with httpx.Client(transport=shared_one, base_url=BASE) as http:
        with pytest.raises(QuotaExhaustedError) as raised:
            http.post("/chat/completions", json=CHAT)
        assert raised.value.scope == "openai:gpt-4o"
        assert "insufficient_quota" in raised.value.detail
        sent = len(script.requests)
        with pytest.raises(QuotaExhaustedError):  # refused without asking the provider
            http.post("/chat/completions", json=CHAT)
        assert len(script.requests) == sent
    # The other worker read the shared pause.
    with (
        httpx.Client(transport=shared_two, base_url=BASE) as http,
        pytest.raises(QuotaExhaustedError),
    ):
        http.post("/chat/completions", json=CHAT)
    assert len(script.requests) == sent


def test_a_provider_reporting_less_left_corrects_the_store() -> None:
    low = {**OPENAI_HEADERS, "x-ratelimit-remaining-tokens": "40000"}
    script = Script(ok(), ok(headers=low), ok(headers=low), ok(headers=low), ok(headers=low))
    http, transport = client(script, correction_interval=0.0)
    for _ in range(3):  # learn, then two readings: not yet persistent
        http.post("/chat/completions", json=CHAT)
    assert transport.stats.corrections == 0
    http.post("/chat/completions", json=CHAT)  # the third reading in a row
    used = {str(s.metric): s.used for s in transport.limiter.status("openai:gpt-4o").limits}
    assert used["tokens"] >= 59_000  # another application used ~60k tokens of the key
    assert transport.stats.corrections == 1
    http.post("/chat/completions", json=CHAT)
    assert transport.stats.corrections == 1  # charged once, not again


def test_refunds_after_the_provider_stamped_its_headers_are_not_foreign_usage() -> None:
    clock = FakeClock()
    limiter, governor, plan = governed_plan(clock)
    held = [limiter.acquire(plan.scopes, plan.usage) for _ in range(50)]  # 50 calls in flight
    mark = governor.refunds_mark(plan.scope)  # our call is sent now...
    for reservation in held[:40]:  # ...40 others finish and give back most of max_tokens
        reservation.settle(governor.settled(plan, json.dumps(
            {"usage": {"prompt_tokens": 8, "completion_tokens": 10}}).encode()))  # fmt: skip
    # The provider stamped our response before those refunds: it still holds them.
    stamped = 100_000 - 50 * plan.usage.tokens
    headers = {**OPENAI_HEADERS, "x-ratelimit-remaining-tokens": str(stamped)}
    snapshot = parse_rate_limit_headers("openai", headers)
    for _ in range(5):
        status = limiter.status(plan.scope)
        assert governor.correction(plan, snapshot, status, mark) is None
    # Without the refunds added back, the same reading is taken for foreign usage.
    now = governor.refunds_mark(plan.scope)
    assert governor.correction(plan, snapshot, status, now, forced=True) is not None


def test_streams_settle_from_the_final_usage_chunk() -> None:
    script = Script(
        ok(),
        lambda _: sse(
            {"choices": [{"delta": {"content": "hi"}}], "model": "gpt-4o"},
            {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3,
                                      "total_tokens": 12}},
            "[DONE]",
        ),
    )  # fmt: skip
    http, transport = client(script)
    http.post("/chat/completions", json=CHAT)
    with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as response:
        assert len(list(response.iter_lines())) >= 3
    stats = transport.stats
    assert (stats.succeeded, stats.unsettled_streams, stats.output_tokens) == (2, 0, 8)


def test_a_stream_closed_early_keeps_its_reservation() -> None:
    script = Script(ok(), lambda _: sse({"choices": [{"delta": {"content": "hi"}}]}))
    http, transport = client(script)
    http.post("/chat/completions", json=CHAT)
    before = transport.limiter.status("openai:gpt-4o")
    with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}):
        pass  # closed without reading: no usage came
    after = {str(s.metric): s.used for s in transport.limiter.status("openai:gpt-4o").limits}
    tokens_before = {str(s.metric): s.used for s in before.limits}["tokens"]
    assert after["tokens"] - tokens_before >= 100  # max_tokens kept
    assert transport.stats.unsettled_streams == 1
    assert transport.limiter.store.reservation_count == 0  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_async_transport_paces_calls_under_the_learned_limits() -> None:
    headers = {"x-ratelimit-limit-requests": "120", "x-ratelimit-remaining-requests": "119",
               "x-ratelimit-reset-requests": "500ms"}  # fmt: skip
    script = Script(ok(headers=headers))
    clock = FakeClock()
    config = ClientConfig(track_cost=False, headroom=1.0)
    transport = AsyncQuotaflowTransport(script.async_transport(), config=config, clock=clock)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        await http.post("/chat/completions", json=CHAT)  # learns 120 RPM, burst of 120
        tasks = [asyncio.create_task(http.post("/chat/completions", json=CHAT))
                 for _ in range(121)]  # fmt: skip
        await let_tasks_run(200)
        assert sum(t.done() for t in tasks) == 119  # the bucket held 119 more
        clock.advance(0.5)  # one request refills every 0.5 s
        await let_tasks_run(200)
        assert sum(t.done() for t in tasks) == 120
        clock.advance(0.5)
        await let_tasks_run(200)
        assert all(t.done() for t in tasks)
    assert transport.stats.provider_429 == 0


@pytest.mark.asyncio
async def test_a_cancelled_call_leaves_nothing_held() -> None:
    async def slow(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return ok()

    script = Script(ok())
    transport = AsyncQuotaflowTransport(
        httpx.MockTransport(slow), config=ClientConfig(track_cost=False, probe=False)
    )
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        task = asyncio.create_task(http.post("/chat/completions", json=CHAT))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert transport.limiter.store.reservation_count == 0  # type: ignore[attr-defined]
    del script


def test_learned_limits_are_shared_through_the_store() -> None:
    store = MemoryStore()
    config = ClientConfig(track_cost=False)
    first = QuotaflowTransport(Script(ok()).transport(), config=config,
                               limiter=SyncLimiter({}, store=store))  # fmt: skip
    with httpx.Client(transport=first, base_url=BASE) as http:
        http.post("/chat/completions", json=CHAT)
    # This provider sends no headers: only the shared note can give the limits.
    second = QuotaflowTransport(Script(ok(headers={})).transport(), config=config,
                                limiter=SyncLimiter({}, store=store))  # fmt: skip
    with httpx.Client(transport=second, base_url=BASE) as http:
        http.post("/chat/completions", json=CHAT)
    # The second worker started from the learned limits: no defaults, no probe.
    assert {limit.limit for limit in second.limiter.limits_of("openai:gpt-4o")} == {600, 100_000}
