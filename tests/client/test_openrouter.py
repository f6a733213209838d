"""OpenRouter: limits and credits from the key endpoint (which the emulator serves too)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from quotaflow import QuotaExhaustedError
from quotaflow.client import ClientConfig, QuotaflowTransport
from quotaflow.client._openrouter import key_url, parse_key_info
from quotaflow.core import Metric
from quotaflow.emulator import EmulatorConfig, EmulatorServer

from .fakes import CHAT, chat_body

BASE = "https://openrouter.ai/api/v1"


def key_body(**data: object) -> bytes:
    return json.dumps({"data": {"label": "k", "limit": None, "limit_remaining": None,
                                "limit_reset": None, **data}}).encode()  # fmt: skip


def test_key_url_sits_next_to_the_completion_endpoint() -> None:
    assert key_url(BASE + "/chat/completions") == BASE + "/key"
    assert key_url("http://127.0.0.1:8000/api/v1/chat/completions?x=1") == (
        "http://127.0.0.1:8000/api/v1/key"
    )


def test_parse_key_info_reads_limits_and_credits() -> None:
    key = parse_key_info(key_body(
        rate_limit={"requests": 10, "interval": "10s"}, limit=25.0, limit_remaining=0.0,
        limit_reset="monthly", free_model_daily_requests={"used": 3, "limit": 50},
    ))  # fmt: skip
    assert key is not None
    assert key.limits == {(Metric.REQUESTS, 10.0): 10, (Metric.REQUESTS, 86_400.0): 50}
    assert key.exhausted
    assert key.resets_at(datetime(2026, 12, 6, 12, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_key_info(b"not json") is None
    assert parse_key_info(b'{"data": 3}') is None


def test_the_transport_learns_the_key_limits_before_the_first_call() -> None:
    seen: list[str] = []

    def provider(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path.endswith("/key"):
            assert request.headers["authorization"] == "Bearer sk-or"
            return httpx.Response(200, content=key_body(
                rate_limit={"requests": 120, "interval": "1m"}))  # fmt: skip
        return httpx.Response(200, json=chat_body(model="openai/gpt-4o"))  # no rate headers

    transport = QuotaflowTransport(httpx.MockTransport(provider),
                                   config=ClientConfig(track_cost=False))  # fmt: skip
    with httpx.Client(transport=transport, base_url=BASE,
                      headers={"authorization": "Bearer sk-or"}) as http:  # fmt: skip
        http.post("/chat/completions", json={**CHAT, "model": "openai/gpt-4o"})
        http.post("/chat/completions", json={**CHAT, "model": "openai/gpt-4o"})
    assert seen == ["GET /api/v1/key", "POST /api/v1/chat/completions",
                    "POST /api/v1/chat/completions"]  # fmt: skip
    limits = transport.limiter.limits_of("openrouter:openai/gpt-4o")
    assert [(str(limit.metric), limit.limit) for limit in limits] == [("requests", 120)]


def test_a_key_out_of_credit_pauses_the_scope() -> None:
    def provider(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/key"):
            return httpx.Response(200, content=key_body(limit=5.0, limit_remaining=0.0))
        pytest.fail("a call was sent with no credit left")

    config = ClientConfig(track_cost=False, quota_pause=30)
    transport = QuotaflowTransport(httpx.MockTransport(provider), config=config)
    with httpx.Client(transport=transport, base_url=BASE) as http:
        with pytest.raises(QuotaExhaustedError, match="credit limit"):
            http.post("/chat/completions", json=CHAT)
        with pytest.raises(QuotaExhaustedError):
            http.post("/chat/completions", json=CHAT)


def test_a_failing_key_endpoint_leaves_the_defaults() -> None:
    def provider(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/key"):
            return httpx.Response(401, json={"error": {"message": "no"}})
        return httpx.Response(200, json=chat_body())

    transport = QuotaflowTransport(httpx.MockTransport(provider),
                                   config=ClientConfig(track_cost=False))  # fmt: skip
    with httpx.Client(transport=transport, base_url=BASE) as http:
        assert http.post("/chat/completions", json=CHAT).status_code == 200
    assert [limit.limit for limit in transport.limiter.limits_of("openrouter:gpt-4o")] == [20]


def test_the_emulator_key_endpoint_is_understood() -> None:
    config = EmulatorConfig(openai_rpm=300, openrouter_credit_limit=10.0, latency=0.0)
    with EmulatorServer(config) as server:
        body = httpx.get(server.url + "/api/v1/key", timeout=5).content
    key = parse_key_info(body)
    assert key is not None
    assert key.limits == {(Metric.REQUESTS, 60.0): 300}
    assert (key.credit_limit, key.credits_remaining, key.exhausted) == (10.0, 10.0, False)
