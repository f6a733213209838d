"""ChatLimiter against the emulator: sync and async, custom clients, limits and usage."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from quotaflow import ConfigurationError
from quotaflow.client import ChatLimiter, ClientConfig, ProviderConfig, RetryPolicy
from quotaflow.emulator import FAULT_HEADER, EmulatorConfig, EmulatorServer

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        openai_rpm=600, openai_tpm=200_000, anthropic_rpm=600, anthropic_itpm=200_000,
        anthropic_otpm=100_000, latency=0.0,
    )  # fmt: skip
    with EmulatorServer(config) as server:
        yield server


def test_sync_chat_completion_with_anthropic(emulator: EmulatorServer) -> None:
    with ChatLimiter("anthropic", api_key="k", base_url=emulator.url + "/v1") as chat:
        answer = chat.chat_completion_sync("claude-sonnet-4-5", MESSAGES, max_tokens=64)
        assert answer.text
        assert answer.output_tokens <= 64
        assert answer.input_tokens > 0
        limits = chat.get_current_limits()
        status = limits["anthropic:claude-sonnet-4-5"]
        assert {str(s.metric) for s in status.limits} == {
            "requests", "input_tokens", "output_tokens",
        }  # fmt: skip
        usage = chat.get_usage()
        assert (usage.calls, usage.succeeded, usage.provider_429) == (1, 1, 0)
        chat.reset_usage_tracking()
        assert chat.get_usage().calls == 0


@pytest.mark.asyncio
async def test_async_request_and_chat_completion_with_openai(emulator: EmulatorServer) -> None:
    async with ChatLimiter("openai", api_key="k", base_url=emulator.url + "/v1") as chat:
        raw = await chat.request(
            "POST", "/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 50},
        )  # fmt: skip
        assert raw.status_code == 200
        assert raw.headers["x-ratelimit-limit-tokens"] == "200000"
        answer = await chat.chat_completion("gpt-4o-mini", MESSAGES, max_tokens=50)
        assert answer.model == "gpt-4o-mini"
        assert chat.get_usage().succeeded == 2
        # The limits came from the headers: 98% of the emulator's, no configuration.
        tokens = next(
            s for s in chat.get_current_limits()["openai:gpt-4o-mini"].limits
            if str(s.metric) == "tokens"
        )  # fmt: skip
        assert tokens.capacity == 196_000


def test_a_custom_http_client_sends_the_calls(emulator: EmulatorServer) -> None:
    sent: list[str] = []

    def record(request: httpx.Request) -> None:
        sent.append(request.url.path)

    with httpx.Client(event_hooks={"request": [record]}) as own:
        url = emulator.url + "/v1"
        with ChatLimiter("openai", api_key="k", base_url=url, http_client=own) as chat:
            chat.chat_completion_sync("gpt-4o-mini", MESSAGES, max_tokens=20)
        assert sent == ["/v1/chat/completions"]
        assert not own.is_closed  # the caller's client is the caller's to close


def test_errors_are_retried_then_returned(emulator: EmulatorServer) -> None:
    config = ClientConfig(retry=RetryPolicy(max_retries=1, base=0.001, cap=0.002))
    url = emulator.url + "/v1"
    with ChatLimiter("openai", api_key="k", base_url=url, config=config) as chat:
        response = chat.request_sync(
            "POST", "/chat/completions", headers={FAULT_HEADER: "500"},
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20},
        )  # fmt: skip
        assert response.status_code == 500
        usage = chat.get_usage()
        assert (usage.attempts, usage.retries, usage.failed) == (2, 1, 1)


def test_provider_configs_and_bad_input() -> None:
    openai = ProviderConfig.for_provider("openai")
    assert openai.base_url == "https://api.openai.com/v1"
    assert [str(limit) for limit in openai.default_limits()] == [
        "500 requests/min", "30000 tokens/min",
    ]  # fmt: skip
    with pytest.raises(ConfigurationError, match="ChatLimiter knows"):
        ProviderConfig.for_provider("gemini")
    with pytest.raises(ConfigurationError, match="needs a provider"):
        ChatLimiter()
    with ChatLimiter("openai", api_key="k") as chat:
        with pytest.raises(ConfigurationError, match="model"):
            chat.chat_completion_sync("", MESSAGES)
        with pytest.raises(ConfigurationError, match="messages"):
            chat.chat_completion_sync("gpt-4o", [])


def test_threads_starting_sync_calls_at_once_share_one_client_and_transport() -> None:
    """Regression: the sync client and its inner transport were made lazily without a lock."""
    import threading  # noqa: PLC0415

    chat = ChatLimiter("openai", api_key="k", base_url="http://127.0.0.1:9/v1")
    barrier = threading.Barrier(16)
    clients: list[object] = []
    inners: list[object] = []

    def start() -> None:
        barrier.wait(5)
        client = chat._sync_client()
        clients.append(client)
        transport = chat._sync_transport
        assert transport is not None
        inners.append(transport._inner_for(client.build_request("POST", "/")))

    threads = [threading.Thread(target=start) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(clients) == 16
    assert len({id(c) for c in clients}) == 1
    assert len({id(i) for i in inners}) == 1
    chat.close()
