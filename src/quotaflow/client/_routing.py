"""Which provider, endpoint and model a request is for, and what to reserve for it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from quotaflow.providers import Provider

__all__ = ["Endpoint", "Route", "route_request"]

_HOSTS: Final = (
    ("api.openai.com", Provider.OPENAI),
    ("api.anthropic.com", Provider.ANTHROPIC),
    ("openrouter.ai", Provider.OPENROUTER),
    ("api.groq.com", Provider.GROQ),
    (".openai.azure.com", Provider.AZURE),
    ("generativelanguage.googleapis.com", Provider.GEMINI),
)
#: How the body of a governed request is read, and the provider family it implies.
_ENDPOINTS: Final = (
    ("/chat/completions", "chat", Provider.OPENAI),
    ("/responses", "responses", Provider.OPENAI),
    ("/messages", "messages", Provider.ANTHROPIC),
)
#: Request bodies larger than this are not parsed (they are still governed, as one request).
_MAX_BODY: Final = 32 * 1024 * 1024


class Endpoint(StrEnum):
    """The API a governed request calls."""

    CHAT = "chat"
    RESPONSES = "responses"
    MESSAGES = "messages"


@dataclass(frozen=True, slots=True)
class Route:
    """A governed request: its provider, endpoint, model and decoded body."""

    provider: Provider
    endpoint: Endpoint
    model: str | None
    body: dict[str, object] | None


def route_request(
    method: str, host: str, path: str, content: bytes, provider: Provider | None
) -> Route | None:
    """The route of a request, or ``None`` for a request quotaflow does not govern.

    Only ``POST`` requests to a completion endpoint (``…/chat/completions``, ``…/responses``,
    ``…/messages``) are governed; listing models, uploading files and the like pass through.
    The provider is ``provider`` when given, else recognised from the host, else from the
    endpoint (``/messages`` is Anthropic's, the others OpenAI's and their clones').
    """
    if method != "POST":
        return None
    path = path.rstrip("/")
    found = next((e for e in _ENDPOINTS if path.endswith(e[0])), None)
    if found is None or "/threads/" in path:  # OpenAI's Assistants threads are not completions
        return None
    _, endpoint, family = found
    if provider is None:
        provider = _provider_of(host.lower()) or family
    body = _decode(content)
    model = body.get("model") if body is not None else None
    return Route(
        provider=provider,
        endpoint=Endpoint(endpoint),
        model=model if isinstance(model, str) and model else None,
        body=body,
    )


def _provider_of(host: str) -> Provider | None:
    for name, provider in _HOSTS:
        if host == name or (name.startswith(".") and host.endswith(name)):
            return provider
    return None


def _decode(content: bytes) -> dict[str, object] | None:
    if not content or len(content) > _MAX_BODY:
        return None
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None
