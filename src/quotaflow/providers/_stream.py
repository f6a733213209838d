"""Usage from a streamed response, accumulated incrementally as the events arrive.

* OpenAI Chat Completions (and clones): the final chunk (``choices: []``) carries ``usage``
  when the request set ``stream_options.include_usage``; ``data: [DONE]`` ends the stream.
* OpenAI Responses: ``response.completed`` (or ``.incomplete`` / ``.failed``) carries it.
* Anthropic Messages: ``message_start`` has the input side; each ``message_delta`` carries
  *cumulative* counts (the last one wins, never a sum); ``message_stop`` ends the stream.
* Gemini (``alt=sse``): every chunk may carry ``usageMetadata``, a running total; the last wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from quotaflow.providers._bodies import as_json, as_mapping, as_str, get
from quotaflow.providers._classify import ErrorClass, classify_stream_error
from quotaflow.providers._log import note_ignored
from quotaflow.providers._provider import Provider
from quotaflow.providers._sse import SSEDecoder, SSEEvent
from quotaflow.providers._usage import (
    ReportedUsage,
    usage_from_anthropic,
    usage_from_gemini,
    usage_from_openai,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

__all__ = ["StreamUsage", "StreamUsageAccumulator"]

#: Named events that carry content only (Anthropic), never usage, errors or the end.
_CONTENT_EVENTS: Final = frozenset(
    {"content_block_start", "content_block_delta", "content_block_stop", "ping"}
)


@dataclass(frozen=True, slots=True)
class StreamUsage:
    """What a stream has reported so far.

    Attributes:
        usage: the best usage known (``None`` if nothing was reported yet).
        final: ``usage`` is the provider's final, authoritative report. When ``False`` after
            the stream ended, settle conservatively: the numbers are a lower bound
            (Anthropic's last cumulative count) or missing.
        complete: the stream reached its normal end (a terminal event was seen).
        error: an error reported inside the stream, after the HTTP status was already 200.
        model: the model named by the stream, when it named one.
    """

    usage: ReportedUsage | None = None
    final: bool = False
    complete: bool = False
    error: ErrorClass | None = None
    model: str | None = None


class StreamUsageAccumulator:
    r"""Follows one streamed response and keeps the usage it reports.

    Feed it raw bytes (:meth:`feed`), decoded SSE events (:meth:`feed_event`) or decoded JSON
    payloads (:meth:`feed_json`), in order; read :attr:`state` at any time. It never raises on
    provider output: unreadable events are skipped and logged.

    Example:
        >>> acc = StreamUsageAccumulator("anthropic")
        >>> acc.feed(
        ...     b'event: message_start\ndata: {"type":"message_start","message":'
        ...     b'{"usage":{"input_tokens":25,"output_tokens":1}}}\\n\\n'
        ... )
        >>> acc.state.usage.input_tokens, acc.state.final
        (25, False)
    """

    __slots__ = ("_decoder", "_now", "_provider", "_state")

    def __init__(self, provider: Provider | str, *, now: datetime | None = None) -> None:
        """Start following a stream from ``provider`` (``now`` dates any quota resets)."""
        self._provider = Provider.parse(provider)
        self._now = now
        self._decoder = SSEDecoder()
        self._state = StreamUsage()

    @property
    def state(self) -> StreamUsage:
        """What the stream has reported so far."""
        return self._state

    def feed(self, chunk: bytes | str) -> StreamUsage:
        """Feed raw bytes (or text) of the event stream; return the updated state."""
        for event in self._decoder.feed(chunk):
            self.feed_event(event)
        return self._state

    def close(self) -> StreamUsage:
        """Mark the end of input (an interrupted stream too); return the final state."""
        for event in self._decoder.close():
            self.feed_event(event)
        return self._state

    def feed_event(self, event: SSEEvent) -> StreamUsage:
        """Feed one decoded SSE event."""
        if event.data.strip() == "[DONE]":
            self._state = replace(self._state, complete=True)
            return self._state
        if self._carries_nothing(event):
            return self._state
        try:
            payload = json.loads(event.data)
        except (ValueError, RecursionError):
            note_ignored("sse data", event.data, reason="non-JSON")
            return self._state
        if event.event == "error" and isinstance(payload, dict) and "error" not in payload:
            payload = {"error": payload}
        return self.feed_json(payload)

    def _carries_nothing(self, event: SSEEvent) -> bool:
        """Whether ``event`` can be skipped without decoding its JSON: a content delta.

        Most events of a stream carry text only. Decoding each one's JSON cost ~15 µs, the
        largest part of following a stream. An event is skipped only when its data cannot hold
        usage or an error (neither word appears in it), and it is either a named delta
        (Anthropic's ``content_block_*`` and ``ping``, OpenAI Responses' ``*.delta``) or an
        unnamed chunk (OpenAI Chat) once the stream's model is known.
        """
        data = event.data
        if "usage" in data or "error" in data:
            return False
        name = event.event
        if name == "message":
            return self._state.model is not None
        return name in _CONTENT_EVENTS or (name.startswith("response.") and name.endswith(".delta"))

    def feed_json(self, payload: object) -> StreamUsage:
        """Feed one decoded event payload (the JSON of one ``data:`` field)."""
        data = as_mapping(as_json(payload))
        if data is None:
            return self._state
        kind = as_str(data.get("type")) or ""
        if kind.startswith("response."):
            self._responses(kind, data)
        elif kind.startswith(("message_", "content_block_")) or kind in {"ping", "error"}:
            self._anthropic(kind, data)
        elif "usageMetadata" in data or "candidates" in data:
            self._gemini(data)
        else:
            self._chat(data)
        if kind != "response.failed" and "error" in data and self._state.error is None:
            error = classify_stream_error(self._provider, data, now=self._now)
            self._state = replace(self._state, error=error, complete=True)
        return self._state

    def _update(
        self, usage: ReportedUsage | None, *, final: bool = False, complete: bool = False
    ) -> None:
        state = self._state
        model = state.model if usage is None or usage.model is None else usage.model
        if usage is not None and model is not None and usage.model is None:
            usage = replace(usage, model=model)
        self._state = replace(
            state,
            usage=usage if usage is not None else state.usage,
            final=state.final or (final and usage is not None),
            complete=state.complete or complete,
            model=model,
        )

    def _model(self, name: object) -> None:
        model = as_str(name)
        if model is not None and self._state.model is None:
            self._state = replace(self._state, model=model)

    def _chat(self, data: Mapping[str, object]) -> None:
        self._model(data.get("model"))
        usage = data.get("usage")
        if usage is not None:
            # OpenRouter and some clones put usage on every chunk; only the last is final, and
            # the last is the one on the chunk without choices (or the one before [DONE]).
            self._update(usage_from_openai(usage), final=not data.get("choices"))

    def _responses(self, kind: str, data: Mapping[str, object]) -> None:
        response = get(data, "response")
        self._model(get(response, "model"))
        terminal = kind in {"response.completed", "response.incomplete", "response.failed"}
        if terminal:
            self._update(usage_from_openai(get(response, "usage")), final=True, complete=True)
        if kind == "response.failed":
            error = classify_stream_error(self._provider, data, now=self._now)
            self._state = replace(self._state, error=error)

    def _anthropic(self, kind: str, data: Mapping[str, object]) -> None:
        if kind == "message_start":
            self._model(get(data, "message", "model"))
            self._update(usage_from_anthropic(get(data, "message", "usage")))
        elif kind == "message_delta":
            delta = as_mapping(data.get("usage"))
            previous = self._state.usage
            if delta is None:
                return
            if previous is not None:
                # Cumulative counts: fields present replace earlier values, absent ones keep
                # the input side that message_start reported.
                merged = {
                    "input_tokens": previous.uncached_input_tokens,
                    "cache_read_input_tokens": previous.cache_read_tokens,
                    "cache_creation_input_tokens": previous.cache_write_tokens,
                    "output_tokens": previous.output_tokens,
                } | {k: v for k, v in delta.items() if v is not None}
                self._update(usage_from_anthropic(merged))
            else:
                self._update(usage_from_anthropic(delta))
        elif kind == "message_stop":
            self._update(self._state.usage, final=True, complete=True)

    def _gemini(self, data: Mapping[str, object]) -> None:
        self._model(data.get("modelVersion"))
        candidates = data.get("candidates")
        finished = isinstance(candidates, list) and any(
            get(candidate, "finishReason") is not None for candidate in candidates
        )
        usage = usage_from_gemini(data.get("usageMetadata"))
        self._update(usage, final=finished, complete=finished)
