"""Shared helpers: an emulator app on a fake clock behind an in-process (ASGI) httpx client."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from quotaflow.emulator import EmulatorConfig, create_app
from quotaflow.emulator._emulator import Emulator
from quotaflow.emulator._state import ModelState
from quotaflow.providers import Provider, SSEDecoder, SSEEvent, estimate_request_tokens
from quotaflow.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.applications import Starlette

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5"


def config(**overrides: Any) -> EmulatorConfig:
    """A configuration without latency (tests never wait), with ``overrides``."""
    return EmulatorConfig(**({"latency": 0.0} | overrides))


def chat(content: str = "hello world", **extra: Any) -> dict[str, Any]:
    return {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": content}]} | extra


def responses(content: str = "hello world", **extra: Any) -> dict[str, Any]:
    return {"model": OPENAI_MODEL, "input": content} | extra


def messages(content: str = "hello world", max_tokens: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "model": ANTHROPIC_MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}],
    } | extra


def prompt_tokens(provider: str, body: dict[str, Any]) -> int:
    """What the emulator counts as the input of ``body`` (the client-side estimate)."""
    return estimate_request_tokens(provider, body).input_tokens


def events(body: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return [*decoder.feed(body), *decoder.close()]


def payloads(body: bytes) -> list[Any]:
    return [json.loads(e.data) for e in events(body) if e.data.strip() != "[DONE]"]


@dataclass
class Harness:
    """An emulator app on a fake clock, and a client that calls it in-process."""

    clock: FakeClock
    app: Starlette
    client: httpx.AsyncClient

    @property
    def emulator(self) -> Emulator:
        emulator: Emulator = self.app.state.emulator
        return emulator

    def state(self, family: Provider, model: str) -> ModelState:
        return self.emulator.models[(family, model)]

    def remaining(self, family: Provider, model: str, bucket: str) -> int:
        return self.state(family, model).bucket(bucket).remaining(self.clock.now_ns())

    async def post(
        self, path: str, body: object, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.client.post(path, json=body, headers=headers)

    async def chat(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.post("/v1/chat/completions", body, _control(headers))

    async def responses(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.post("/v1/responses", body, _control(headers))

    async def messages(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.post("/v1/messages", body, _control(headers))


def _control(headers: dict[str, str]) -> dict[str, str]:
    """``output="5"`` -> ``x-emulator-output-tokens: 5``; ``fault="drop"`` -> the fault header."""
    names = {"output": "x-emulator-output-tokens", "fault": "x-emulator-fault"}
    return {names.get(key, key.replace("_", "-")): value for key, value in headers.items()}


@asynccontextmanager
async def harness(configuration: EmulatorConfig | None = None) -> AsyncIterator[Harness]:
    clock = FakeClock()
    app = create_app(configuration or config(), clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        yield Harness(clock, app, client)
