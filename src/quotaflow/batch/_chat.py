"""Chat requests in batches, through a :class:`~quotaflow.client.ChatLimiter`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from quotaflow._errors import ConfigurationError
from quotaflow.batch._config import BatchConfig
from quotaflow.batch._processor import BatchProcessor, Sleep
from quotaflow.batch._result import BatchResult
from quotaflow.client._facade import ChatLimiter, ChatResponse

__all__ = ["ChatBatchProcessor", "ChatRequest", "process_chat_batch", "process_chat_batch_sync"]

#: One request: ``{"model": ..., "messages": [...], "max_tokens"?: int, **other params}``.
ChatRequest = Mapping[str, Any]


class ChatBatchProcessor(BatchProcessor[ChatRequest, ChatResponse]):
    """Send each request of a batch with ``chat_completion`` (or ``chat_completion_sync``).

    An item is a mapping with ``model``, ``messages`` (a non-empty list), optionally
    ``max_tokens``, and any other body parameters (``temperature``…). A malformed item fails
    alone, with ``error_class`` ``"invalid_request"``.

    The limiter paces and retries each call itself (its ``RetryPolicy``); the batch retries
    what still fails, ``max_retries_per_item`` times.

    Args:
        limiter: the limiter that sends the calls (the caller closes it).
        config: the batch options.
        sleep: as for :class:`BatchProcessor`.
        clock: as for :class:`BatchProcessor`.
        random: as for :class:`BatchProcessor`.
    """

    def __init__(
        self,
        limiter: ChatLimiter,
        config: BatchConfig | None = None,
        *,
        sleep: Sleep | None = None,
        clock: Callable[[], float] | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(config, sleep=sleep, clock=clock, random=random)
        self.limiter = limiter
        self.provider = limiter.provider_config.provider

    async def process_item(self, item: ChatRequest) -> ChatResponse:
        """Send one request."""
        model, messages, max_tokens, params = _unpack(item)
        return await self.limiter.chat_completion(model, messages, max_tokens=max_tokens, **params)

    def process_item_sync(self, item: ChatRequest) -> ChatResponse:
        """Send one request from a worker thread."""
        model, messages, max_tokens, params = _unpack(item)
        return self.limiter.chat_completion_sync(model, messages, max_tokens=max_tokens, **params)


def _unpack(
    item: ChatRequest,
) -> tuple[str, Sequence[Mapping[str, Any]], int | None, dict[str, Any]]:
    """The model, messages, ``max_tokens`` and other parameters of a request; checked."""
    if not isinstance(item, Mapping):
        raise ConfigurationError(f"a chat request must be a mapping, got {item!r}")
    params = dict(item)
    model = params.pop("model", None)
    messages = params.pop("messages", None)
    max_tokens = params.pop("max_tokens", None)
    if not isinstance(model, str) or not model:
        raise ConfigurationError(f"model must be a non-empty string, got {model!r}")
    if not isinstance(messages, list) or not messages:
        raise ConfigurationError(f"messages must be a non-empty list, got {messages!r}")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ConfigurationError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    return model, messages, max_tokens, params


async def process_chat_batch(
    limiter: ChatLimiter, requests: Iterable[ChatRequest], config: BatchConfig | None = None
) -> list[BatchResult[ChatRequest, ChatResponse]]:
    """Send every request through ``limiter``; one result per request, in input order."""
    return await ChatBatchProcessor(limiter, config).process(requests)


def process_chat_batch_sync(
    limiter: ChatLimiter, requests: Iterable[ChatRequest], config: BatchConfig | None = None
) -> list[BatchResult[ChatRequest, ChatResponse]]:
    """:func:`process_chat_batch` from synchronous code, on worker threads."""
    return ChatBatchProcessor(limiter, config).process_sync(requests)
