"""A strict reader of RFC 9651 Structured Field Lists, as the IETF ``RateLimit`` fields use.

Only what those fields need is exposed, but the grammar is followed exactly (integers,
decimals, strings, tokens, byte sequences, booleans, inner lists, parameters), because the
draft requires a client to ignore a malformed field as a whole.
"""

from __future__ import annotations

import base64
import binascii
import string
from dataclasses import dataclass
from typing import Final

__all__ = ["BareItem", "Item", "parse_list"]

BareItem = int | float | str | bytes | bool


@dataclass(frozen=True, slots=True)
class Item:
    """One list member: a bare item (or a tuple of items, for an inner list) and parameters."""

    value: BareItem | tuple[Item, ...]
    params: dict[str, BareItem]


class _MalformedError(Exception):
    pass


_KEY_FIRST: Final = frozenset(string.ascii_lowercase + "*")
_KEY_REST: Final = frozenset(string.ascii_lowercase + string.digits + "_-.*")
_TOKEN_FIRST: Final = frozenset(string.ascii_letters + "*")
_TOKEN_REST: Final = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~:/")
_BASE64: Final = frozenset(string.ascii_letters + string.digits + "+/=")
_MAX_INTEGER_DIGITS: Final = 15
_MAX_DECIMAL_INT_DIGITS: Final = 12
_MAX_DECIMAL_FRACTION_DIGITS: Final = 3
_MAX_FIELD_CHARS: Final = 8192


def parse_list(field: str) -> list[Item] | None:
    """Parse a Structured Field List; ``None`` if the field is malformed (or absurdly long)."""
    if len(field) > _MAX_FIELD_CHARS:
        return None
    try:
        return _Reader(field.strip(" ")).read_list()
    except _MalformedError:
        return None


class _Reader:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        char = self.peek()
        if not char:
            raise _MalformedError
        self.pos += 1
        return char

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def read_list(self) -> list[Item]:
        members: list[Item] = []
        while self.peek():
            members.append(self.read_member())
            self.skip(" \t")
            if not self.peek():
                return members
            if self.take() != ",":
                raise _MalformedError
            self.skip(" \t")
            if not self.peek():
                raise _MalformedError  # trailing comma
        return members

    def read_member(self) -> Item:
        if self.peek() != "(":
            return Item(self.read_bare_item(), self.read_params())
        self.pos += 1
        items: list[Item] = []
        while True:
            self.skip(" ")
            if self.peek() == ")":
                self.pos += 1
                return Item(tuple(items), self.read_params())
            items.append(Item(self.read_bare_item(), self.read_params()))
            if self.peek() not in {" ", ")"}:
                raise _MalformedError

    def read_params(self) -> dict[str, BareItem]:
        params: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            key = self.read_key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.read_bare_item()
            params[key] = value
        return params

    def read_key(self) -> str:
        start = self.pos
        if self.take() not in _KEY_FIRST:
            raise _MalformedError
        while self.peek() and self.peek() in _KEY_REST:
            self.pos += 1
        return self.text[start : self.pos]

    def read_bare_item(self) -> BareItem:
        char = self.peek()
        if char == "-" or (char.isdigit() and char.isascii()):
            return self.read_number()
        if char == '"':
            return self.read_string()
        if char == ":":
            return self.read_bytes()
        if char == "?":
            return self.read_boolean()
        if char and char in _TOKEN_FIRST:
            start = self.pos
            while self.peek() and self.peek() in _TOKEN_REST:
                self.pos += 1
            return self.text[start : self.pos]
        raise _MalformedError

    def read_number(self) -> int | float:
        sign = -1 if self.peek() == "-" else 1
        if sign < 0:
            self.pos += 1
        start = self.pos
        while self.peek() and (self.peek() in string.digits or self.peek() == "."):
            self.pos += 1
        text = self.text[start : self.pos]
        whole, dot, fraction = text.partition(".")
        if not whole or not whole.isdigit() or not whole.isascii():
            raise _MalformedError
        if not dot:
            if len(whole) > _MAX_INTEGER_DIGITS:
                raise _MalformedError
            return sign * int(whole)
        if (
            len(whole) > _MAX_DECIMAL_INT_DIGITS
            or not 1 <= len(fraction) <= _MAX_DECIMAL_FRACTION_DIGITS
            or not fraction.isdigit()
        ):
            raise _MalformedError
        return sign * float(text)

    def read_string(self) -> str:
        self.pos += 1
        chars: list[str] = []
        while True:
            char = self.take()
            if char == "\\":
                escaped = self.take()
                if escaped not in {'"', "\\"}:
                    raise _MalformedError
                chars.append(escaped)
            elif char == '"':
                return "".join(chars)
            elif not " " <= char <= "~":
                raise _MalformedError
            else:
                chars.append(char)

    def read_bytes(self) -> bytes:
        self.pos += 1
        end = self.text.find(":", self.pos)
        if end < 0:
            raise _MalformedError
        encoded = self.text[self.pos : end]
        self.pos = end + 1
        if not set(encoded) <= _BASE64:
            raise _MalformedError
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise _MalformedError from None

    def read_boolean(self) -> bool:
        self.pos += 1
        char = self.take()
        if char not in {"0", "1"}:
            raise _MalformedError
        return char == "1"
