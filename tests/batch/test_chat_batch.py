"""Chat batches through a ChatLimiter, against the provider emulator (OpenAI and Anthropic)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from quotaflow.batch import (
    BatchConfig,
    BatchResult,
    ChatBatchProcessor,
    process_chat_batch,
    process_chat_batch_sync,
)
from quotaflow.client import ChatLimiter, ChatResponse, ClientConfig, RetryPolicy
from quotaflow.emulator import FAULT_HEADER, EmulatorConfig, EmulatorServer

MODELS = {
    "openai": ("gpt-4o-mini", "gpt-4o"),
    "anthropic": ("claude-haiku-4-5", "claude-sonnet-4-5"),
}
NO_RETRIES = ClientConfig(retry=RetryPolicy(max_retries=0))  # the batch does the retrying


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        openai_rpm=600, openai_tpm=200_000, anthropic_rpm=600, anthropic_itpm=200_000,
        anthropic_otpm=100_000, latency=0.0,
    )  # fmt: skip
    with EmulatorServer(config) as server:
        yield server


def limiter(emulator: EmulatorServer, provider: str, **kwargs: Any) -> ChatLimiter:
    return ChatLimiter(provider, api_key="k", base_url=emulator.url + "/v1", **kwargs)


def ask(model: str, text: str, **params: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]
    return {"model": model, "messages": messages, "max_tokens": 16, **params}


def requests(provider: str) -> list[dict[str, Any]]:
    first, second = MODELS[provider]
    return [
        ask(first, "one"),
        ask(second, "two", temperature=0.2),
        {"messages": [{"role": "user", "content": "no model"}]},
        ask(first, "three"),
        {"model": first, "messages": []},
        ask(second, "four"),
    ]


def check(results: list[BatchResult[Mapping[str, Any], ChatResponse]], provider: str) -> None:
    assert [r.index for r in results] == list(range(6))
    assert [r.status for r in results] == ["ok", "ok", "failed", "ok", "failed", "ok"]
    for result in (results[2], results[4]):
        assert (result.error_class, result.attempts, result.result) == ("invalid_request", 1, None)
    for result in (results[0], results[1], results[3], results[5]):
        assert result.result is not None
        assert result.result.model == result.item["model"]
        assert result.result.text
        assert 0 < result.result.output_tokens <= 16
        assert result.result.input_tokens > 0
        assert result.error is None
    assert "model" in str(results[2].error)
    assert "messages" in str(results[4].error)
    if provider == "openai":
        assert results[1].result is not None
        assert results[1].result.raw["object"] == "chat.completion"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.asyncio
async def test_an_async_chat_batch_with_invalid_items(
    emulator: EmulatorServer, provider: str
) -> None:
    async with limiter(emulator, provider) as chat:
        results = await process_chat_batch(
            chat, requests(provider), BatchConfig(max_concurrent_requests=3)
        )
        check(results, provider)
        assert chat.get_usage().succeeded == 4  # the invalid items never reached the provider


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_sync_chat_batch_with_invalid_items(emulator: EmulatorServer, provider: str) -> None:
    with limiter(emulator, provider) as chat:
        config = BatchConfig(max_concurrent_requests=3, group_by_model=True)
        results = process_chat_batch_sync(chat, requests(provider), config)
        check(results, provider)
        assert chat.get_usage().succeeded == 4


class Faulty(ChatBatchProcessor):
    """Sends an item's ``fault`` (an emulator fault) on its first ``fault_tries`` tries."""

    def __init__(self, chat: ChatLimiter, config: BatchConfig) -> None:
        self.waits: list[float] = []
        super().__init__(chat, config, sleep=self.waits.append, random=lambda: 0.0)
        self.tries: Counter[str] = Counter()

    def _faulty(self, item: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        request = {k: v for k, v in item.items() if k not in {"fault", "fault_tries", "id"}}
        if "fault" not in item:
            return request, None
        self.tries[item["id"]] += 1
        return request, item["fault"] if self.tries[item["id"]] <= item["fault_tries"] else None

    async def process_item(self, item: Mapping[str, Any]) -> ChatResponse:
        request, fault = self._faulty(item)
        if fault is not None:
            path = self.limiter.provider_config.chat_path
            headers = {FAULT_HEADER: fault}
            response = await self.limiter.request("POST", path, json=request, headers=headers)
            response.raise_for_status()
        return await super().process_item(request)

    def process_item_sync(self, item: Mapping[str, Any]) -> ChatResponse:
        request, fault = self._faulty(item)
        if fault is not None:
            path = self.limiter.provider_config.chat_path
            headers = {FAULT_HEADER: fault}
            self.limiter.request_sync(
                "POST", path, json=request, headers=headers
            ).raise_for_status()
        return super().process_item_sync(request)


def faulty_requests(provider: str) -> list[dict[str, Any]]:
    model = MODELS[provider][0]
    overloaded = "529" if provider == "anthropic" else "503"
    return [
        ask(model, "fine"),
        {**ask(model, "once"), "id": "once", "fault": "500", "fault_tries": 1},
        {**ask(model, "always"), "id": "always", "fault": overloaded, "fault_tries": 99},
    ]


def check_faults(results: list[BatchResult[Mapping[str, Any], ChatResponse]]) -> None:
    fine, once, always = results
    assert (fine.status, fine.attempts) == ("ok", 1)
    assert (once.status, once.attempts, once.error_class) == ("ok", 2, None)
    assert (always.status, always.attempts, always.error_class) == ("failed", 3, "overloaded")
    assert always.error is not None
    assert "50" in str(always.error) or "529" in str(always.error)


@pytest.mark.asyncio
async def test_a_forced_server_error_is_retried_and_an_overload_classified_async(
    emulator: EmulatorServer,
) -> None:
    async with limiter(emulator, "openai", config=NO_RETRIES) as chat:
        processor = Faulty(chat, BatchConfig(max_retries_per_item=2, retry_delay=0.5))
        results = await processor.process(faulty_requests("openai"))
        check_faults(results)
        assert sorted(processor.waits) == [0.5, 0.5, 1.0]  # "once" retried once, "always" twice
        assert (processor.retries, processor.succeeded, processor.failed) == (3, 2, 1)


def test_a_forced_server_error_is_retried_and_an_overload_classified_sync(
    emulator: EmulatorServer,
) -> None:
    with limiter(emulator, "anthropic", config=NO_RETRIES) as chat:
        processor = Faulty(chat, BatchConfig(max_retries_per_item=2, retry_delay=0.5))
        results = processor.process_sync(faulty_requests("anthropic"))
        check_faults(results)
        assert sorted(processor.waits) == [0.5, 0.5, 1.0]


@pytest.mark.asyncio
async def test_stop_on_first_error_in_a_chat_batch(emulator: EmulatorServer) -> None:
    async with limiter(emulator, "openai") as chat:
        config = BatchConfig(max_concurrent_requests=1, stop_on_first_error=True)
        batch = [ask("gpt-4o-mini", "a"), {"model": "gpt-4o-mini"}, ask("gpt-4o-mini", "b")]
        results = await process_chat_batch(chat, batch, config)
        assert [r.status for r in results] == ["ok", "failed", "skipped"]
