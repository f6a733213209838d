"""The ASGI application: the providers' endpoints, plus the emulator's own."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from quotaflow._clock import SystemClock
from quotaflow.core import NS_PER_SECOND
from quotaflow.emulator._anthropic_messages import message, message_stream
from quotaflow.emulator._call import Api, Call
from quotaflow.emulator._config import EmulatorConfig
from quotaflow.emulator._delivery import DroppedResponse, paced, quiet_drops
from quotaflow.emulator._emulator import Emulator
from quotaflow.emulator._errors import ErrorReply, unauthorized
from quotaflow.emulator._faults import Fault
from quotaflow.emulator._openai_chat import chat_completion, chat_stream
from quotaflow.emulator._openai_responses import response_object, responses_stream
from quotaflow.emulator._openrouter import key_info
from quotaflow.emulator._sse import dumps
from quotaflow.providers import Provider

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from starlette.requests import Request

    from quotaflow.emulator._clock import TimeSource
    from quotaflow.emulator._sse import Frame

__all__ = ["create_app"]

_JSON: Final = "application/json"
_RENDER: Final[dict[Api, Callable[[Call], dict[str, object]]]] = {
    Api.CHAT: chat_completion,
    Api.RESPONSES: response_object,
    Api.MESSAGES: message,
}
_STREAM: Final[dict[Api, Callable[[Call], Iterator[Frame]]]] = {
    Api.CHAT: chat_stream,
    Api.RESPONSES: responses_stream,
    Api.MESSAGES: message_stream,
}
#: The models ``GET /v1/models`` lists, besides those configured or already used.
OPENAI_MODELS: Final = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini")
ANTHROPIC_MODELS: Final = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers, _JSON)


def _error(reply: ErrorReply) -> Response:
    return _json(reply.body, reply.status, reply.headers)


async def _answer(emulator: Emulator, api: Api, request: Request) -> Response:
    outcome = emulator.receive(api, request.headers, await request.body())
    if isinstance(outcome, ErrorReply):
        return _error(outcome)
    config = emulator.config
    if outcome.stream:
        if config.latency:
            await asyncio.sleep(config.latency)
        events = paced(outcome, _STREAM[api](outcome), config.token_latency)
        return StreamingResponse(events, headers=outcome.headers, media_type="text/event-stream")
    meter = outcome.meter
    try:
        delay = config.latency + outcome.output.tokens * config.token_latency
        if delay:
            await asyncio.sleep(delay)
        meter.produced(outcome.output.tokens)
    finally:
        meter.finish()
    kind = DroppedResponse if outcome.fault is Fault.DROP else Response
    return kind(dumps(_RENDER[api](outcome)), headers=outcome.headers, media_type=_JSON)


def _models(emulator: Emulator, request: Request) -> Response:
    anthropic = "anthropic-version" in request.headers or "x-api-key" in request.headers
    family = Provider.ANTHROPIC if anthropic else Provider.OPENAI
    if not emulator.authorized(family, request.headers):
        return _error(unauthorized(family, emulator.ids.request_id(family)))
    names = dict.fromkeys(ANTHROPIC_MODELS if anthropic else OPENAI_MODELS)
    names |= dict.fromkeys(emulator.config.model_limits)
    names |= dict.fromkeys(model for known, model in emulator.models if known is family)
    created = emulator.clock.now_ns() // NS_PER_SECOND
    if anthropic:
        data: list[dict[str, object]] = [
            {
                "type": "model",
                "id": name,
                "display_name": name,
                "created_at": "2025-01-01T00:00:00Z",
            }
            for name in names
        ]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return _json({"data": data, "has_more": False, "first_id": first, "last_id": last})
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "quotaflow-emulator"}
        for name in names
    ]
    return _json({"object": "list", "data": data})


def _key(emulator: Emulator, request: Request) -> Response:
    if not emulator.authorized(Provider.OPENROUTER, request.headers):
        return _json({"error": {"code": 401, "message": "Invalid API key"}}, 401)
    return _json(key_info(emulator.config, *emulator.token_totals()))


def create_app(
    config: EmulatorConfig | None = None, *, clock: TimeSource | None = None
) -> Starlette:
    """The emulator as an ASGI application (Starlette).

    Endpoints: ``POST /v1/chat/completions``, ``POST /v1/responses`` (OpenAI),
    ``POST /v1/messages`` (Anthropic), ``GET /v1/models``, ``GET /api/v1/key`` and
    ``GET /api/v1/auth/key`` (OpenRouter), ``GET /health``, ``GET /emulator/stats`` and
    ``POST /emulator/reset``. The state lives in ``app.state.emulator``.

    Args:
        config: what to enforce (the defaults when ``None``).
        clock: the time source (anything with ``now_ns()``); :class:`quotaflow.SystemClock` by
            default. Responses carry their own ``Date`` header from it: serve the app with
            uvicorn's ``date_header=False``.
    """
    emulator = Emulator(config or EmulatorConfig(), clock or SystemClock())
    quiet_drops()

    def endpoint(api: Api) -> Callable[[Request], object]:
        async def generate(request: Request) -> Response:
            return await _answer(emulator, api, request)

        return generate

    async def models(request: Request) -> Response:
        return _models(emulator, request)

    async def key(request: Request) -> Response:
        return _key(emulator, request)

    async def health(_: Request) -> Response:
        return _json({"status": "ok"})

    async def stats(_: Request) -> Response:
        return _json(emulator.stats())

    async def reset(_: Request) -> Response:
        emulator.reset()
        return _json({"reset": True})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", endpoint(Api.CHAT), methods=["POST"]),
            Route("/v1/responses", endpoint(Api.RESPONSES), methods=["POST"]),
            Route("/v1/messages", endpoint(Api.MESSAGES), methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/api/v1/key", key, methods=["GET"]),
            Route("/api/v1/auth/key", key, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/emulator/stats", stats, methods=["GET"]),
            Route("/emulator/reset", reset, methods=["POST"]),
        ]
    )
    app.state.emulator = emulator
    return app
