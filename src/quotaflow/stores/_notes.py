"""Notes: small values that every limiter sharing a store can read, each with its own expiry.

The governed client keeps what it learns about a scope here (the limits a provider's headers
gave, a pause after a quota error), so that every worker of every process sharing the store
acts on it without asking the provider again. A note is a short string under a short key;
it is not part of any admission, so it needs no atomicity with the limit state.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Final, Protocol, runtime_checkable

from quotaflow._errors import ConfigurationError
from quotaflow.core import NS_PER_SECOND

__all__ = ["MAX_NOTE_CHARS", "AsyncNotes", "NoteBook", "Notes", "check_note"]

#: The longest note value (characters); notes are hints, not documents.
MAX_NOTE_CHARS: Final = 16_384
_MAX_KEY_CHARS: Final = 512
_MAX_TTL: Final = 366 * 86_400.0
#: Notes one in-process note book keeps at most (the least recently written go first).
_MAX_NOTES: Final = 10_000


@runtime_checkable
class Notes(Protocol):
    """A store that keeps notes, used from threads."""

    def get_note(self, key: str) -> str | None:
        """Return the note under ``key``, or ``None``."""

    def put_note(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds."""


@runtime_checkable
class AsyncNotes(Protocol):
    """A store that keeps notes, used from an event loop."""

    async def aget_note(self, key: str) -> str | None:
        """Return the note under ``key``, or ``None``."""

    async def aput_note(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds."""


def check_note(key: object, value: object, ttl: object) -> int:
    """Validate a note; return its time to live in nanoseconds.

    Raises:
        ConfigurationError: a key or value that is not a non-empty string of bounded size, or
            a TTL that is not a positive number of seconds (at most a year).
    """
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY_CHARS:
        raise ConfigurationError(f"a note key must be a non-empty string, got {key!r}")
    if not isinstance(value, str) or len(value) > MAX_NOTE_CHARS:
        raise ConfigurationError(
            f"a note value must be a string of at most {MAX_NOTE_CHARS} characters, "
            f"got {type(value).__name__} of length {len(value) if isinstance(value, str) else '?'}"
        )
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or not 0 < ttl <= _MAX_TTL
    ):
        raise ConfigurationError(f"a note ttl must be positive seconds, at most a year: {ttl!r}")
    return max(1, round(ttl * NS_PER_SECOND))


class NoteBook:
    """Notes in process memory, bounded in number; not thread-safe by itself."""

    __slots__ = ("_notes",)

    def __init__(self) -> None:
        self._notes: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def get(self, key: str, now: int) -> str | None:
        """The live note under ``key`` at ``now``."""
        found = self._notes.get(key)
        if found is None:
            return None
        value, expires = found
        if expires <= now:
            del self._notes[key]
            return None
        return value

    def put(self, key: str, value: str, expires: int) -> None:
        """Keep ``value`` under ``key`` until ``expires`` (ns)."""
        notes = self._notes
        notes.pop(key, None)
        notes[key] = (value, expires)
        while len(notes) > _MAX_NOTES:
            notes.popitem(last=False)
