"""A scripted provider for transport tests: each response is chosen by the test."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

from quotaflow import SyncLimiter, rpm, tpm
from quotaflow.client import CallPlan, ClientConfig, Governor
from quotaflow.client._routing import route_request
from quotaflow.testing import FakeClock

OPENAI_HEADERS = {
    "x-ratelimit-limit-requests": "600",
    "x-ratelimit-remaining-requests": "599",
    "x-ratelimit-reset-requests": "100ms",
    "x-ratelimit-limit-tokens": "100000",
    "x-ratelimit-remaining-tokens": "99000",
    "x-ratelimit-reset-tokens": "600ms",
}


def chat_body(prompt: int = 10, completion: int = 5, model: str = "gpt-4o") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def ok(headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    return httpx.Response(200, headers=OPENAI_HEADERS if headers is None else headers,
                          json=chat_body(**body))  # fmt: skip


def rate_limited(
    retry_after: str = "0.05", headers: dict[str, str] | None = None
) -> httpx.Response:
    error = {
        "message": "Rate limit reached for gpt-4o on requests per min (RPM): Limit 600, Used 600, "
        "Requested 1. Please try again in 50ms.",
        "type": "requests",
        "code": "rate_limit_exceeded",
    }
    return httpx.Response(
        429,
        headers={**(OPENAI_HEADERS if headers is None else headers), "retry-after": retry_after},
        json={"error": error},
    )


def insufficient_quota() -> httpx.Response:
    error = {"message": "You exceeded your current quota.", "type": "insufficient_quota",
             "code": "insufficient_quota"}  # fmt: skip
    return httpx.Response(429, json={"error": error})


def sse(*events: dict[str, Any] | str, headers: dict[str, str] | None = None) -> httpx.Response:
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events]
    return httpx.Response(
        200,
        headers={**(OPENAI_HEADERS if headers is None else headers),
                 "content-type": "text/event-stream"},
        stream=httpx.ByteStream(b"".join(lines)),
    )  # fmt: skip


Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests from a queue of replies (the last one repeats); records requests."""

    def __init__(self, *replies: Reply) -> None:
        self.replies: deque[Reply] = deque(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.popleft() if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):
            return (
                httpx.Response(reply.status_code, headers=reply.headers, content=reply.read())
                if reply.headers.get("content-type") != "text/event-stream"
                else reply
            )
        return reply(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def async_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 100}


def governed_plan(clock: FakeClock) -> tuple[SyncLimiter, Governor, CallPlan]:
    """A limiter (600 RPM, 100k TPM for openai:gpt-4o) with its governor and the plan of CHAT."""
    limits = {"openai:gpt-4o": (rpm(600), tpm(100_000))}
    limiter = SyncLimiter(limits, clock=clock)
    governor = Governor(ClientConfig(limits=limits), limiter, clock)
    route = route_request("POST", "api.openai.com", "/v1/chat/completions",
                          json.dumps(CHAT).encode(), None)  # fmt: skip
    assert route is not None
    plan = governor.plan(route)
    governor.ensure(plan)
    return limiter, governor, plan
