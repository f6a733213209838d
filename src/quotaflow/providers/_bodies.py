"""Tolerant access to JSON bodies whose shape is not guaranteed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["as_int", "as_json", "as_mapping", "as_str", "get"]

#: Bodies larger than this are not parsed: error bodies and usage objects are small, and a
#: multi-megabyte payload is a response body the caller should not hand over whole.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
_MAX_TEXT_CHARS: Final = 2000
_MAX_COUNT: Final = 10**15


def as_json(body: object) -> object:
    """Return ``body`` decoded from JSON if it is ``bytes`` or ``str``; as is otherwise.

    Undecodable or oversized text yields the text itself (callers may still scan it), and
    bytes that are not UTF-8 yield ``None``.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        if len(body) > MAX_BODY_BYTES:
            return None
        try:
            body = (body if type(body) is bytes else bytes(body)).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(body, str):
        if len(body) > MAX_BODY_BYTES:
            return None
        try:
            decoded: object = json.loads(body)
        except (ValueError, RecursionError):
            return body
        return decoded
    return body


def get(data: object, *path: str | int) -> object:
    """Follow ``path`` through nested mappings and lists; ``None`` where it breaks."""
    for step in path:
        # Decoded JSON (a dict and a str key) is the common case: checked first, without the
        # slower isinstance against the Mapping ABC.
        if (type(data) is dict and type(step) is str) or (
            isinstance(step, str) and isinstance(data, Mapping)
        ):
            data = data.get(step)
        elif isinstance(step, int) and isinstance(data, list) and -len(data) <= step < len(data):
            data = data[step]
        else:
            return None
    return data


def as_int(value: object) -> int | None:
    """``value`` if it is a non-negative integer (JSON ``12`` or ``12.0``); ``None`` otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < _MAX_COUNT else None
    if isinstance(value, float) and value.is_integer() and 0 <= value < _MAX_COUNT:
        return int(value)
    return None


def as_str(value: object) -> str | None:
    """``value`` if it is a string (truncated to 2,000 characters); ints become text."""
    if isinstance(value, str):
        return value[:_MAX_TEXT_CHARS]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def as_mapping(value: object) -> Mapping[str, Any] | None:
    """``value`` if it is a mapping; ``None`` otherwise."""
    return value if isinstance(value, Mapping) else None
