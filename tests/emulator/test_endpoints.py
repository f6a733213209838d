"""The other endpoints: models, OpenRouter's key information, health."""

from __future__ import annotations

import pytest

from quotaflow.emulator._openrouter import INPUT_PRICE, OUTPUT_PRICE
from tests.emulator.helpers import chat, config, harness, messages, prompt_tokens


@pytest.mark.asyncio
async def test_models_in_each_providers_format() -> None:
    async with harness() as h:
        await h.chat(chat() | {"model": "my-fine-tune"})
        listed = (await h.client.get("/v1/models")).json()
        assert listed["object"] == "list"
        ids = [model["id"] for model in listed["data"]]
        assert {"gpt-4o", "gpt-4o-mini", "my-fine-tune"} <= set(ids)
        assert all(model["object"] == "model" for model in listed["data"])
        claude = (
            await h.client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
        ).json()
        assert claude["has_more"] is False
        assert claude["first_id"] == claude["data"][0]["id"]
        assert "claude-sonnet-4-5" in {model["id"] for model in claude["data"]}
        assert all(model["type"] == "model" for model in claude["data"])


@pytest.mark.parametrize("path", ["/api/v1/key", "/api/v1/auth/key"])
@pytest.mark.asyncio
async def test_openrouter_key_reports_the_credit_limit_and_the_usage(path: str) -> None:
    async with harness(config(openrouter_credit_limit=1.0)) as h:
        empty = (await h.client.get(path)).json()["data"]
        assert (empty["limit"], empty["limit_remaining"], empty["usage"]) == (1.0, 1.0, 0.0)
        await h.chat(chat(), output="100")
        await h.messages(messages(), output="50")
        data = (await h.client.get(path)).json()["data"]
        inputs = prompt_tokens("openai", chat()) + prompt_tokens("anthropic", messages())
        usage = inputs * INPUT_PRICE + 150 * OUTPUT_PRICE
        assert data["usage"] == pytest.approx(usage)
        assert data["usage_daily"] == data["usage_monthly"] == data["usage"]
        assert data["limit_remaining"] == pytest.approx(1.0 - usage)
        assert data["is_free_tier"] is False
        assert data["rate_limit"] == {"requests": 500, "interval": "1m"}
    async with harness() as h:
        unlimited = (await h.client.get(path)).json()["data"]
        assert (unlimited["limit"], unlimited["limit_remaining"]) == (None, None)


@pytest.mark.asyncio
async def test_health_and_unknown_paths() -> None:
    async with harness() as h:
        assert (await h.client.get("/health")).json() == {"status": "ok"}
        assert (await h.client.get("/v1/embeddings")).status_code == 404
        assert (await h.client.get("/v1/chat/completions")).status_code == 405
