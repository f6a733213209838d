"""What a call really used, read from the provider's response body.

Providers disagree on what their fields include (Anthropic's ``input_tokens`` excludes cache
reads and writes; OpenAI's includes cached tokens; Gemini's output excludes thinking tokens),
so every report is normalised to one shape whose totals include their parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from quotaflow.providers._bodies import as_int, as_json, as_str, get
from quotaflow.providers._log import note_ignored
from quotaflow.providers._provider import Provider

__all__ = [
    "ReportedUsage",
    "extract_usage",
    "usage_from_anthropic",
    "usage_from_gemini",
    "usage_from_openai",
]


@dataclass(frozen=True, slots=True)
class ReportedUsage:
    """Token usage as a provider reported it, normalised.

    Attributes:
        input_tokens: every input token, including cache reads and cache writes.
        output_tokens: every output token, including reasoning (thinking) tokens.
        cache_read_tokens: input tokens read from a prompt cache (part of ``input_tokens``).
        cache_write_tokens: input tokens written to a prompt cache (part of ``input_tokens``).
        reasoning_tokens: output tokens spent reasoning (part of ``output_tokens``).
        model: the model that answered, when the response named it.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    model: str | None = None

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens neither read from nor written to a cache."""
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens


def _count(data: object, *path: str) -> int:
    return as_int(get(data, *path)) or 0


def _checked(usage: ReportedUsage, source: str) -> ReportedUsage | None:
    """Reject reports whose parts exceed their totals: the fields were not what we think."""
    if usage.uncached_input_tokens < 0 or usage.reasoning_tokens > usage.output_tokens:
        note_ignored(f"{source} usage", usage, reason="inconsistent")
        return None
    return usage


def usage_from_openai(usage: object, model: str | None = None) -> ReportedUsage | None:
    """Read an OpenAI ``usage`` object: Chat Completions or Responses shape.

    Chat Completions: ``prompt_tokens`` (cached included), ``completion_tokens`` (reasoning
    included) and their ``*_details``. Responses: ``input_tokens`` / ``output_tokens`` and
    ``input_tokens_details`` / ``output_tokens_details``.
    """
    if as_int(get(usage, "prompt_tokens")) is not None:
        input_key, output_key = "prompt_tokens", "completion_tokens"
    elif as_int(get(usage, "input_tokens")) is not None:
        input_key, output_key = "input_tokens", "output_tokens"
    else:
        return None
    input_details, output_details = f"{input_key}_details", f"{output_key}_details"
    return _checked(
        ReportedUsage(
            input_tokens=_count(usage, input_key),
            output_tokens=_count(usage, output_key),
            cache_read_tokens=_count(usage, input_details, "cached_tokens"),
            cache_write_tokens=_count(usage, input_details, "cache_write_tokens"),
            reasoning_tokens=_count(usage, output_details, "reasoning_tokens"),
            model=model,
        ),
        "openai",
    )


def usage_from_anthropic(usage: object, model: str | None = None) -> ReportedUsage | None:
    """Read an Anthropic ``usage`` object, whose ``input_tokens`` excludes cached tokens."""
    uncached = as_int(get(usage, "input_tokens"))
    output = as_int(get(usage, "output_tokens"))
    if uncached is None and output is None:
        return None
    cache_read = _count(usage, "cache_read_input_tokens")
    cache_write = _count(usage, "cache_creation_input_tokens")
    return ReportedUsage(
        input_tokens=(uncached or 0) + cache_read + cache_write,
        output_tokens=output or 0,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        model=model,
    )


def usage_from_gemini(metadata: object, model: str | None = None) -> ReportedUsage | None:
    """Read a Gemini ``usageMetadata`` object.

    ``candidatesTokenCount`` excludes thinking tokens (``thoughtsTokenCount``), which are
    billed as output, so output is their sum; tool-use prompt tokens count as input.
    """
    prompt = as_int(get(metadata, "promptTokenCount"))
    candidates = as_int(get(metadata, "candidatesTokenCount"))
    if prompt is None and candidates is None:
        return None
    thoughts = _count(metadata, "thoughtsTokenCount")
    return _checked(
        ReportedUsage(
            input_tokens=(prompt or 0) + _count(metadata, "toolUsePromptTokenCount"),
            output_tokens=(candidates or 0) + thoughts,
            cache_read_tokens=_count(metadata, "cachedContentTokenCount"),
            reasoning_tokens=thoughts,
            model=model,
        ),
        "gemini",
    )


_ANTHROPIC_USAGE_KEYS: Final = frozenset({"cache_read_input_tokens", "cache_creation_input_tokens"})


def extract_usage(provider: Provider | str, body: object) -> ReportedUsage | None:
    """Read the usage a complete (non-streamed) response body reports.

    Understands OpenAI Chat Completions and Responses (and every OpenAI-compatible API),
    Anthropic Messages and Gemini ``generateContent``, whatever ``provider`` says, deciding by
    the body's shape where ``provider`` leaves it open (Bedrock and generic gateways).

    Args:
        provider: who answered; Anthropic's ``input_tokens`` means something else than
            OpenAI's, so this decides when the shape alone cannot.
        body: the response body (bytes, text or decoded JSON).

    Returns:
        The normalised usage, or ``None`` if the body reports none (or is unreadable).
    """
    provider = Provider.parse(provider)
    data = as_json(body)
    if isinstance(data, list) and data:  # Gemini's non-SSE stream is a JSON array of chunks
        data = data[-1]
    model = as_str(get(data, "model")) or as_str(get(data, "modelVersion"))
    metadata = get(data, "usageMetadata")
    if metadata is not None:
        return usage_from_gemini(metadata, model)
    usage = get(data, "usage")
    if usage is None:
        usage = get(data, "response", "usage")  # a Responses API terminal event
        model = model or as_str(get(data, "response", "model"))
    if not isinstance(usage, dict):
        return None
    anthropic_shape = _ANTHROPIC_USAGE_KEYS & usage.keys() or get(data, "type") == "message"
    if provider is Provider.ANTHROPIC or (not provider.openai_compatible and anthropic_shape):
        return usage_from_anthropic(usage, model)
    return usage_from_openai(usage, model)
