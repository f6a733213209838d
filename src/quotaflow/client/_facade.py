"""ChatLimiter: governed chat calls for users who do not bring an SDK.

The interface users of chat-limiter know (a provider, a key, ``request`` / ``request_sync``,
``chat_completion``, ``get_current_limits``, ``reset_usage_tracking``), on the engine of the
governed transports: FIFO admission under every limit, limits learned from headers, shared
across workers through a store, retries by error class, nothing leaked.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Final, Self

import httpx

from quotaflow._errors import ConfigurationError
from quotaflow._limiter import Limiter
from quotaflow._status import ScopeStatus
from quotaflow._sync_limiter import SyncLimiter
from quotaflow.client._config import ENV_PREFIX, ClientConfig
from quotaflow.client._stats import ClientStats, StatsSnapshot
from quotaflow.client._transport import AsyncQuotaflowTransport, QuotaflowTransport
from quotaflow.core import Limit
from quotaflow.core._limits import itpm, otpm, rpm, tpm
from quotaflow.providers import Provider, extract_usage
from quotaflow.stores import MemoryStore, open_store

__all__ = ["ChatLimiter", "ChatResponse", "ProviderConfig"]

_DEFAULT_TIMEOUT: Final = 600.0


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """A provider's endpoint, authentication, default limits, retries and buffers.

    The default limits apply until the first response's headers give the real ones.

    Attributes:
        provider: the provider.
        base_url: the API's base URL.
        api_key_env: the environment variable holding the key.
        auth_header: ``"authorization"`` (``Bearer`` key) or ``"x-api-key"``.
        chat_path: the chat endpoint, relative to ``base_url``.
        default_request_limit: requests per minute until learned.
        default_token_limit: tokens (Anthropic: input tokens) per minute until learned.
        default_output_token_limit: output tokens per minute until learned (Anthropic).
        max_retries: retries after the first attempt.
        base_backoff: the first backoff delay, seconds.
        request_buffer_ratio: the fraction of request limits used.
        token_buffer_ratio: the fraction of token limits used.
        extra_headers: headers sent with every call (``anthropic-version``).
    """

    provider: Provider
    base_url: str
    api_key_env: str
    auth_header: str = "authorization"
    chat_path: str = "/chat/completions"
    default_request_limit: int = 60
    default_token_limit: int | None = None
    default_output_token_limit: int | None = None
    max_retries: int = 4
    base_backoff: float = 0.5
    request_buffer_ratio: float = 0.98
    token_buffer_ratio: float = 0.98
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_provider(cls, provider: Provider | str) -> ProviderConfig:
        """The configuration of a known provider."""
        provider = Provider.parse(provider)
        config = _PROVIDERS.get(provider)
        if config is None:
            known = ", ".join(p.value for p in _PROVIDERS)
            raise ConfigurationError(
                f"ChatLimiter knows {known}; for {provider.value}, pass a ProviderConfig"
            )
        return config

    def default_limits(self) -> tuple[Limit, ...]:
        """The limits in force until the provider's headers give the real ones."""
        limits: list[Limit] = [rpm(self.default_request_limit)]
        if self.default_token_limit is not None:
            token = itpm if self.provider is Provider.ANTHROPIC else tpm
            limits.append(token(self.default_token_limit))
        if self.default_output_token_limit is not None:
            limits.append(otpm(self.default_output_token_limit))
        return tuple(limits)


_PROVIDERS: Final = {
    Provider.OPENAI: ProviderConfig(
        Provider.OPENAI, "https://api.openai.com/v1", "OPENAI_API_KEY",
        default_request_limit=500, default_token_limit=30_000,
    ),
    Provider.ANTHROPIC: ProviderConfig(
        Provider.ANTHROPIC, "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY",
        auth_header="x-api-key", chat_path="/messages", default_request_limit=50,
        default_token_limit=30_000, default_output_token_limit=8_000,
        extra_headers={"anthropic-version": "2023-06-01"},
    ),
    Provider.OPENROUTER: ProviderConfig(
        Provider.OPENROUTER, "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY",
        default_request_limit=20,
    ),
    Provider.GROQ: ProviderConfig(
        Provider.GROQ, "https://api.groq.com/openai/v1", "GROQ_API_KEY",
        default_request_limit=30, default_token_limit=6_000,
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A chat completion: its text, usage and the provider's JSON.

    Attributes:
        text: the answer's text (all text parts joined).
        model: the model that answered.
        input_tokens: input tokens reported.
        output_tokens: output tokens reported.
        raw: the decoded JSON body.
    """

    text: str
    model: str | None
    input_tokens: int
    output_tokens: int
    raw: dict[str, Any]


class ChatLimiter:
    """Rate-limited, retried, accounted chat calls to one provider, sync and async.

    Args:
        provider: the provider (``"openai"``, ``"anthropic"``, ``"openrouter"``, ``"groq"``).
        api_key: the key (default: the provider's environment variable).
        base_url: the API's base URL (default: the provider's; an emulator's for tests).
        http_client: an ``httpx.Client`` or ``httpx.AsyncClient`` (or httpx2's) to send
            with; its own settings (proxies, TLS, timeouts) are kept.
        provider_config: a full :class:`ProviderConfig` (overrides ``provider``).
        config: the governed client's options (default: from ``QUOTAFLOW_*`` variables,
            with the provider's defaults for limits, retries and buffers).
        timeout: seconds per HTTP request.

    Example:
        >>> async with ChatLimiter(provider="openai", api_key="sk-...") as chat:
        ...     answer = await chat.chat_completion(
        ...         "gpt-4o-mini", [{"role": "user", "content": "Hi"}]
        ...     )
    """

    def __init__(
        self,
        provider: Provider | str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        http_client: Any = None,  # noqa: ANN401 (httpx or httpx2, sync or async)
        provider_config: ProviderConfig | None = None,
        config: ClientConfig | None = None,
        timeout: float = _DEFAULT_TIMEOUT,
    ) -> None:
        if provider_config is None:
            if provider is None:
                raise ConfigurationError("ChatLimiter needs a provider or a provider_config")
            provider_config = ProviderConfig.for_provider(provider)
        self.provider_config = pc = provider_config
        self.api_key = api_key if api_key is not None else os.environ.get(pc.api_key_env)
        self.base_url = (base_url or pc.base_url).rstrip("/")
        self.config = _with_provider_defaults(config, pc)
        # One store for both flavours, so sync and async calls share the limits.
        store = open_store(self.config.store) if self.config.store else MemoryStore()
        limits = dict(self.config.limits)
        self._async_limiter = Limiter(
            limits, store=store, fault_policy=self.config.fault_policy,
            reservation_ttl=self.config.reservation_ttl,
        )  # fmt: skip
        self._sync_limiter = SyncLimiter(
            limits, store=store, fault_policy=self.config.fault_policy,
            reservation_ttl=self.config.reservation_ttl,
        )  # fmt: skip
        self._store = store
        self._timeout = timeout
        if http_client is not None and not (
            _is_sync_client(http_client) or _is_async_client(http_client)
        ):
            raise ConfigurationError(
                "http_client must be an httpx (or httpx2) Client or AsyncClient, "
                f"got {http_client!r}"
            )
        self._user_client = http_client
        self._async: Any = None
        self._sync: Any = None
        self._async_transport: AsyncQuotaflowTransport | None = None
        self._sync_transport: QuotaflowTransport | None = None
        self._stats = ClientStats()  # both flavours count into one
        self._sync_lock = threading.Lock()  # sync calls may come from many threads

    # Clients ---------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = dict(self.provider_config.extra_headers)
        if self.api_key:
            if self.provider_config.auth_header == "authorization":
                headers["authorization"] = f"Bearer {self.api_key}"
            else:
                headers[self.provider_config.auth_header] = self.api_key
        return headers

    def _inner(self, *, asynchronous: bool) -> tuple[Any, Any]:
        """The inner transport (the caller's client, if any) and the library to wrap it in."""
        user = self._user_client
        if user is None:
            return None, httpx
        if _is_async_client(user) != asynchronous:
            wanted, other = ("AsyncClient", "sync") if asynchronous else ("Client", "async")
            raise ConfigurationError(
                f"{'async' if asynchronous else 'sync'} calls need an {wanted} as http_client; "
                f"this ChatLimiter was given {user!r} (use the {other} methods with it)"
            )
        return _ClientTransport(user), _library_of(user)

    def _async_client(self) -> Any:  # noqa: ANN401
        if self._async is None:
            self._async_transport, self._async = self._make_client(asynchronous=True)
        return self._async

    def _sync_client(self) -> Any:  # noqa: ANN401
        if self._sync is None:
            with self._sync_lock:  # threads calling at once must share one client
                if self._sync is None:
                    self._sync_transport, self._sync = self._make_client(asynchronous=False)
        return self._sync

    def _make_client(self, *, asynchronous: bool) -> tuple[Any, Any]:
        """A governed transport and the httpx (or httpx2) client that sends through it."""
        inner, library = self._inner(asynchronous=asynchronous)
        if asynchronous:
            transport: Any = AsyncQuotaflowTransport(
                inner, config=self.config, limiter=self._async_limiter, stats=self._stats
            )
        else:
            transport = QuotaflowTransport(
                inner, config=self.config, limiter=self._sync_limiter, stats=self._stats
            )
        kind = library.AsyncClient if asynchronous else library.Client
        client = kind(
            transport=transport, base_url=self.base_url, headers=self._headers(),
            timeout=self._timeout,
        )  # fmt: skip
        return transport, client

    # Requests --------------------------------------------------------------------------------

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:  # noqa: ANN401
        """Send a governed request (``url`` relative to the base URL); httpx's keywords."""
        response: httpx.Response = await self._async_client().request(method, url, **kwargs)
        return response

    def request_sync(self, method: str, url: str, **kwargs: Any) -> httpx.Response:  # noqa: ANN401
        """Send a governed request from synchronous code."""
        response: httpx.Response = self._sync_client().request(method, url, **kwargs)
        return response

    def _chat_body(
        self, model: str, messages: Sequence[Mapping[str, Any]], max_tokens: int | None,
        params: Mapping[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a non-empty string, got {model!r}")
        if not isinstance(messages, Sequence) or not messages:
            raise ConfigurationError(f"messages must be a non-empty list, got {messages!r}")
        body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
        if self.provider_config.provider is Provider.ANTHROPIC:
            system = [m for m in body["messages"] if m.get("role") == "system"]
            if system:
                body["messages"] = [m for m in body["messages"] if m.get("role") != "system"]
                body["system"] = "\n\n".join(str(m.get("content", "")) for m in system)
            body["max_tokens"] = max_tokens or 1024  # required by Anthropic
        elif max_tokens is not None:
            body["max_tokens"] = max_tokens
        body.update(params)
        return body

    def _answer(self, response: httpx.Response) -> ChatResponse:
        response.raise_for_status()
        data = response.json()
        usage = extract_usage(self.provider_config.provider, data)
        return ChatResponse(
            text=_text_of(data),
            model=data.get("model") if isinstance(data, dict) else None,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            raw=data,
        )

    async def chat_completion(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = None,
        **params: Any,  # noqa: ANN401
    ) -> ChatResponse:
        """One chat completion; raises ``httpx.HTTPStatusError`` for an error response."""
        body = self._chat_body(model, messages, max_tokens, params)
        return self._answer(await self.request("POST", self.provider_config.chat_path, json=body))

    def chat_completion_sync(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = None,
        **params: Any,  # noqa: ANN401
    ) -> ChatResponse:
        """One chat completion from synchronous code."""
        body = self._chat_body(model, messages, max_tokens, params)
        return self._answer(self.request_sync("POST", self.provider_config.chat_path, json=body))

    # State -----------------------------------------------------------------------------------

    def get_current_limits(self) -> dict[str, ScopeStatus]:
        """Every governed scope's limits in force, use and remaining capacity."""
        limits: dict[str, tuple[Limit, ...]] = {}
        for transport in (self._async_transport, self._sync_transport):
            if transport is not None:
                for scope in transport.governor.scopes():
                    limits[scope] = transport.limiter.limits_of(scope)
        # Both flavours share one store: read it through the sync limiter, which must know
        # the limits the async one learned.
        current = {}
        for scope in sorted(limits):
            if self._sync_limiter.limits_of_or_none(scope) != limits[scope]:
                self._sync_limiter.set_limits(scope, limits[scope])
            current[scope] = self._sync_limiter.status(scope)
        return current

    def get_usage(self) -> StatsSnapshot:
        """Calls, retries, provider 429s, waits, tokens and cost since the last reset."""
        return self._stats.snapshot()

    def reset_usage_tracking(self) -> None:
        """Start the usage statistics again (limits and learned state are kept)."""
        self._stats.reset()

    # Lifecycle -------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the clients this limiter made (not the caller's ``http_client``), the store."""
        if self._async is not None:
            await self._async.aclose()
            self._async = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        await self._store.aclose()

    def close(self) -> None:
        """Close the sync client and the store (use :meth:`aclose` after async calls)."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        self._store.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _with_provider_defaults(config: ClientConfig | None, pc: ProviderConfig) -> ClientConfig:
    """The client options: code, then ``QUOTAFLOW_*`` variables, then the provider's defaults.

    The provider config fills what neither code nor the environment set: default limits,
    retries, backoff and the buffer ratios (headroom).
    """
    if config is not None:
        return replace(
            config,
            provider=pc.provider,
            default_limits=config.default_limits or pc.default_limits(),
        )
    env = {k[len(ENV_PREFIX) :].lower() for k in os.environ if k.startswith(ENV_PREFIX)}
    base = ClientConfig.from_env()
    retry = base.retry
    if "max_retries" not in env:
        retry = replace(retry, max_retries=pc.max_retries)
    if "retry_base" not in env:
        retry = replace(retry, base=pc.base_backoff)
    return replace(
        base,
        provider=pc.provider,
        default_limits=base.default_limits or pc.default_limits(),
        headroom=base.headroom if "headroom" in env else pc.request_buffer_ratio,
        token_headroom=base.token_headroom if "token_headroom" in env else pc.token_buffer_ratio,
        retry=retry,
    )


class _ClientTransport:
    """An inner transport that sends through a caller's client (keeping its settings)."""

    def __init__(self, client: Any) -> None:  # noqa: ANN401
        self._client = client

    def handle_request(self, request: Any) -> Any:  # noqa: ANN401
        return self._client.send(request, stream=True)

    async def handle_async_request(self, request: Any) -> Any:  # noqa: ANN401
        return await self._client.send(request, stream=True)

    def close(self) -> None:
        """The caller's client is the caller's to close."""

    async def aclose(self) -> None:
        """The caller's client is the caller's to close."""


def _library_of(client: object) -> Any:  # noqa: ANN401
    return importlib.import_module(type(client).__module__.split(".", 1)[0])


def _client_classes(name: str) -> tuple[type, ...]:
    classes: list[type] = [getattr(httpx, name)]
    with contextlib.suppress(ImportError):
        classes.append(getattr(importlib.import_module("httpx2"), name))
    return tuple(classes)


def _is_async_client(client: object) -> bool:
    return isinstance(client, _client_classes("AsyncClient"))


def _is_sync_client(client: object) -> bool:
    return isinstance(client, _client_classes("Client"))


def _text_of(data: object) -> str:
    if not isinstance(data, dict):
        return ""
    choices = data.get("choices")
    if isinstance(choices, list) and choices:
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        return content if isinstance(content, str) else ""
    content = data.get("content")
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )  # fmt: skip
    return ""
