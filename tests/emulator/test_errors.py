"""Every error the emulator sends, in the provider's format, classified by quotaflow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from quotaflow import Metric
from quotaflow.providers import ErrorKind, Provider, classify_error
from tests.emulator.helpers import (
    ANTHROPIC_MODEL,
    OPENAI_MODEL,
    chat,
    config,
    harness,
    messages,
    prompt_tokens,
    responses,
)

if TYPE_CHECKING:
    import httpx

    from quotaflow.providers import ErrorClass


def classified(provider: str, response: httpx.Response) -> ErrorClass:
    return classify_error(provider, response.status_code, response.headers, response.content)


def openai_error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def anthropic_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["type"] == "error"
    assert body["request_id"] == response.headers["request-id"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.asyncio
async def test_openai_tokens_429_names_the_limit_and_the_exact_wait() -> None:
    async with harness(config(openai_tpm=1_000)) as h:
        body = chat(max_tokens=900)
        prompt = prompt_tokens("openai", body)
        assert (await h.chat(body, output="900")).status_code == 200
        refused = await h.chat(body)
        assert refused.status_code == 429
        error = openai_error(refused)
        assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
        # missing: (p + 900) - (1000 - p - 900) tokens at 1000/60 s
        wait = (2 * prompt + 800) * 0.06
        assert error["message"] == (
            f"Rate limit reached for {OPENAI_MODEL} in organization org-emulator on tokens per "
            f"min (TPM): Limit 1000, Used {prompt + 900}, Requested {prompt + 900}. Please try "
            f"again in {wait:.2f}s. Visit https://platform.openai.com/account/rate-limits to "
            f"learn more."
        )
        assert refused.headers["retry-after"] == str(int(wait) + 1)
        kind = classified("openai", refused)
        assert kind.kind is ErrorKind.RATE_LIMITED
        assert kind.retry_after == int(wait) + 1
        assert kind.limit is not None
        assert (kind.limit.metric, kind.limit.limit, kind.limit.requested) == (
            Metric.TOKENS,
            1_000,
            prompt + 900,
        )
        # the refused request still counted one request, and no tokens
        assert h.remaining(Provider.OPENAI, OPENAI_MODEL, "requests") == 498
        assert h.remaining(Provider.OPENAI, OPENAI_MODEL, "tokens") == 100 - prompt
        h.clock.advance(wait)
        assert (await h.chat(body)).status_code == 200


@pytest.mark.asyncio
async def test_openai_requests_429_charges_nothing() -> None:
    async with harness(config(openai_rpm=1)) as h:
        body = responses(max_output_tokens=50)
        assert (await h.responses(body, output="50")).status_code == 200
        tokens = h.remaining(Provider.OPENAI, OPENAI_MODEL, "tokens")
        refused = await h.responses(body)
        error = openai_error(refused)
        assert (refused.status_code, error["type"]) == (429, "requests")
        assert "on requests per min (RPM): Limit 1, Used 1, Requested 1." in error["message"]
        assert refused.headers["retry-after"] == "60"
        assert classified("openai", refused).kind is ErrorKind.RATE_LIMITED
        assert h.remaining(Provider.OPENAI, OPENAI_MODEL, "tokens") == tokens


@pytest.mark.asyncio
async def test_openai_daily_limits() -> None:
    async with harness(config(openai_rpd=2, openai_tpd=100_000)) as h:
        for _ in range(2):
            assert (await h.chat(chat(max_tokens=10))).status_code == 200
        refused = await h.chat(chat(max_tokens=10))
        error = openai_error(refused)
        assert "on requests per day (RPD): Limit 2, Used 2, Requested 1." in error["message"]
        assert refused.headers["retry-after"] == "43200"  # half a day: one request's refill
        verdict = classified("openai", refused)
        assert verdict.kind is ErrorKind.RATE_LIMITED
        assert verdict.limit is not None
        assert verdict.limit.window == 86_400.0


@pytest.mark.asyncio
async def test_openai_request_too_large_is_never_admissible() -> None:
    async with harness(config(openai_tpm=1_000)) as h:
        refused = await h.chat(chat(max_tokens=1_000))
        error = openai_error(refused)
        assert refused.status_code == 429
        assert error["message"].startswith(
            f"Request too large for {OPENAI_MODEL} in organization org-emulator on tokens per min "
            f"(TPM): Limit 1000, Requested {1_000 + prompt_tokens('openai', chat())}."
        )
        assert "retry-after" not in refused.headers
        assert classified("openai", refused).kind is ErrorKind.REQUEST_TOO_LARGE
        stats = h.emulator.stats()["families"]["openai"][OPENAI_MODEL]  # type: ignore[index]
        assert stats["rate_limited"] == {"too_large": 1}


@pytest.mark.asyncio
async def test_anthropic_429s_for_each_bucket() -> None:
    async with harness(config(anthropic_rpm=2, anthropic_itpm=1_000, anthropic_otpm=60)) as h:
        # input larger than ITPM: named, never admissible (no retry-after)
        huge = await h.messages(messages("word " * 2_000))
        assert huge.status_code == 429
        assert "retry-after" not in huge.headers
        assert classified("anthropic", huge).kind is ErrorKind.RATE_LIMITED
        # output tokens into debt: 100 generated with 60 per minute
        assert (await h.messages(messages(max_tokens=500), output="100")).status_code == 200
        refused = await h.messages(messages())
        error = anthropic_error(refused)
        assert error == {
            "type": "rate_limit_error",
            "message": "This request would exceed your organization's rate limit of 60 output "
            "tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."
            " You can see the response headers for current usage. Please reduce the prompt "
            "length or the maximum tokens requested, or try again later.",
        }
        assert refused.headers["retry-after"] == "41"  # 41 tokens back at 1 per second
        verdict = classified("anthropic", refused)
        assert verdict.kind is ErrorKind.RATE_LIMITED
        assert verdict.limit is not None
        assert (verdict.limit.metric, verdict.limit.limit) == (Metric.OUTPUT_TOKENS, 60)
        h.clock.advance(41)
        assert (await h.messages(messages(), output="0")).status_code == 200
    async with harness(config(anthropic_rpm=2, anthropic_itpm=1_000)) as h:
        for _ in range(2):
            assert (await h.messages(messages())).status_code == 200
        refused = await h.messages(messages())
        assert "rate limit of 2 requests per minute" in anthropic_error(refused)["message"]
        assert refused.headers["retry-after"] == "30"
        h.clock.advance(60)
        big = messages("word " * 500)  # about 630 tokens: one fits, two do not
        assert (await h.messages(big)).status_code == 200
        refused = await h.messages(big)
        assert "rate limit of 1,000 input tokens per minute" in anthropic_error(refused)["message"]
        verdict = classified("anthropic", refused)
        assert verdict.limit is not None
        assert verdict.limit.metric is Metric.INPUT_TOKENS
        stats = h.emulator.stats()["families"]["anthropic"][ANTHROPIC_MODEL]  # type: ignore[index]
        assert stats["rate_limited"] == {"requests": 1, "input_tokens": 1}


@pytest.mark.asyncio
async def test_quota_errors_after_the_configured_number_of_admissions() -> None:
    async with harness(config(quota_exhausted_after=1)) as h:
        assert (await h.chat(chat())).status_code == 200
        refused = await h.chat(chat())
        error = openai_error(refused)
        assert (refused.status_code, error["type"], error["code"]) == (
            429,
            "insufficient_quota",
            "insufficient_quota",
        )
        assert "retry-after" not in refused.headers
        assert classified("openai", refused).kind is ErrorKind.QUOTA_EXHAUSTED
        # counted per family: Anthropic has its own account
        assert (await h.messages(messages())).status_code == 200
        refused = await h.messages(messages())
        error = anthropic_error(refused)
        assert error["details"] == {"error_code": "enforced_spend_limit_reached"}
        assert "retry-after" not in refused.headers
        verdict = classified("anthropic", refused)
        assert (verdict.kind, verdict.error_code) == (
            ErrorKind.QUOTA_EXHAUSTED,
            "enforced_spend_limit_reached",
        )


@pytest.mark.parametrize(
    ("fault", "status", "openai_kind", "anthropic_kind", "kind"),
    [
        ("500", 500, "server_error", "api_error", ErrorKind.SERVER_ERROR),
        ("503", 503, "server_error", "overloaded_error", ErrorKind.OVERLOADED),
        ("529", 529, "overloaded_error", "overloaded_error", ErrorKind.OVERLOADED),
        (
            "insufficient_quota",
            429,
            "insufficient_quota",
            "rate_limit_error",
            ErrorKind.QUOTA_EXHAUSTED,
        ),
        ("rate_limit", 429, "requests", "rate_limit_error", ErrorKind.RATE_LIMITED),
    ],
)
@pytest.mark.asyncio
async def test_faults_before_admission(
    fault: str, status: int, openai_kind: str, anthropic_kind: str, kind: ErrorKind
) -> None:
    async with harness() as h:
        response = await h.chat(chat(), fault=fault)
        assert response.status_code == status
        assert openai_error(response)["type"] == openai_kind
        assert classified("openai", response).kind is kind
        response = await h.messages(messages(), fault=fault)
        assert response.status_code == status
        assert anthropic_error(response)["type"] == anthropic_kind
        assert classified("anthropic", response).kind is kind
        if fault == "503":
            assert openai_error(await h.chat(chat(), fault=fault))["message"] == (
                "The engine is currently overloaded, please try again later"
            )
        retry = "1" if fault == "rate_limit" else None
        assert response.headers.get("retry-after") == retry
        # server errors count one request and no tokens; the others nothing
        counted = 1 if fault in {"500", "503", "529"} else 0
        assert h.remaining(Provider.ANTHROPIC, ANTHROPIC_MODEL, "requests") == 50 - counted
        assert h.remaining(Provider.ANTHROPIC, ANTHROPIC_MODEL, "input_tokens") == 30_000
        stats = h.emulator.stats()["families"]["anthropic"][ANTHROPIC_MODEL]  # type: ignore[index]
        assert (stats["faults"], stats["admitted"]) == ({fault: 1}, 0)


@pytest.mark.asyncio
async def test_wrong_keys_get_a_401_in_the_providers_format() -> None:
    async with harness(config(api_key="sk-right")) as h:
        response = await h.chat(chat(), authorization="Bearer sk-wrong")
        error = openai_error(response)
        assert (response.status_code, error["code"]) == (401, "invalid_api_key")
        assert classified("openai", response).kind is ErrorKind.INVALID_REQUEST
        assert (await h.chat(chat(), authorization="Bearer sk-right")).status_code == 200
        response = await h.messages(messages(), x_api_key="sk-wrong")
        assert (response.status_code, anthropic_error(response)["type"]) == (
            401,
            "authentication_error",
        )
        assert (await h.messages(messages(), x_api_key="sk-right")).status_code == 200
        assert (await h.client.get("/api/v1/key")).status_code == 401
        assert (await h.client.get("/v1/models")).status_code == 401


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/chat/completions", b"{not json", "We could not parse the JSON body"),
        ("/v1/chat/completions", b"[1, 2]", "We could not parse the JSON body"),
        ("/v1/chat/completions", b'{"messages": []}', "Missing required parameter: 'model'."),
        ("/v1/chat/completions", b'{"model": "m"}', "Missing required parameter: 'messages'."),
        ("/v1/responses", b'{"model": "m"}', "Missing required parameter: 'input'."),
        (
            "/v1/chat/completions",
            b'{"model": "m", "messages": [], "max_tokens": 0}',
            "Invalid 'max_tokens'",
        ),
        ("/v1/messages", b'{"model": "m", "messages": []}', "max_tokens: Field required"),
        ("/v1/messages", b'{"model": "m", "max_tokens": 5}', "messages: Field required"),
        ("/v1/messages", b'{"messages": [], "max_tokens": 5}', "model: Field required"),
        ("/v1/messages", b'{"model": "m", "messages": [], "max_tokens": "5"}', "Invalid 'max_"),
    ],
)
@pytest.mark.asyncio
async def test_malformed_requests_get_a_400(path: str, body: bytes, message: str) -> None:
    async with harness() as h:
        response = await h.client.post(path, content=body)
        assert response.status_code == 400
        provider = "anthropic" if path == "/v1/messages" else "openai"
        error = anthropic_error(response) if provider == "anthropic" else openai_error(response)
        assert error["type"] == "invalid_request_error"
        assert message in error["message"]
        assert classified(provider, response).kind is ErrorKind.INVALID_REQUEST
        assert h.emulator.stats()["errors"] == {"400": 1}


@pytest.mark.asyncio
async def test_bad_control_headers_get_a_400() -> None:
    async with harness() as h:
        response = await h.chat(chat(), fault="teapot")
        assert response.status_code == 400
        assert "unknown fault 'teapot'" in openai_error(response)["message"]
        response = await h.messages(messages(), output="-3")
        assert response.status_code == 400
        assert "x-emulator-output-tokens" in anthropic_error(response)["message"]
