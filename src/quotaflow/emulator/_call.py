"""An admitted call: what was asked, what will be answered, and how it is accounted."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from quotaflow.providers import Provider

if TYPE_CHECKING:
    from collections.abc import Mapping

    from quotaflow.emulator._faults import Fault
    from quotaflow.emulator._meter import Meter
    from quotaflow.emulator._output import Output

__all__ = ["Api", "Call"]


class Api(StrEnum):
    """The generation endpoints the emulator serves."""

    CHAT = "chat"
    """OpenAI ``POST /v1/chat/completions``."""
    RESPONSES = "responses"
    """OpenAI ``POST /v1/responses``."""
    MESSAGES = "messages"
    """Anthropic ``POST /v1/messages``."""

    @property
    def family(self) -> Provider:
        """Whose formats and limits apply."""
        return Provider.ANTHROPIC if self is Api.MESSAGES else Provider.OPENAI


@dataclass(frozen=True, slots=True)
class Call:
    """An admitted request, ready to be answered.

    Attributes:
        api: the endpoint.
        model: the model the request named.
        request: the request body.
        stream: whether to answer with server-sent events.
        include_usage: Chat Completions streams: send the final usage chunk.
        input_tokens: the counted input (prompt) tokens.
        max_tokens: the request's output cap, if any.
        output: the answer to generate.
        id: the response's id (``chatcmpl-...``, ``resp_...``, ``msg_...``).
        created: when it was admitted, whole seconds since the epoch.
        headers: the response headers (rate limits, request id, date).
        fault: ``drop`` or ``cut_stream`` when one strikes this call.
        meter: the call's output accounting.
    """

    api: Api
    model: str
    request: Mapping[str, object]
    stream: bool
    include_usage: bool
    input_tokens: int
    max_tokens: int | None
    output: Output
    id: str
    created: int
    headers: dict[str, str]
    fault: Fault | None
    meter: Meter
