"""Identifiers in the providers' shapes, reproducible from the seed."""

from __future__ import annotations

import random
import string
from typing import Final

from quotaflow.emulator._call import Api
from quotaflow.providers import Provider

__all__ = ["Ids"]

_BASE62: Final = string.digits + string.ascii_letters


class Ids:
    """Makes request and response ids (from a generator of their own, seeded from ``seed``)."""

    __slots__ = ("_rng",)

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random() if seed is None else random.Random(f"ids:{seed}")  # noqa: S311

    def _hex(self, length: int) -> str:
        return f"{self._rng.getrandbits(4 * length):0{length}x}"

    def _base62(self, length: int) -> str:
        return "".join(self._rng.choices(_BASE62, k=length))

    def request_id(self, family: Provider) -> str:
        """``x-request-id`` (OpenAI) or ``request-id`` (Anthropic)."""
        return "req_" + (self._base62(24) if family is Provider.ANTHROPIC else self._hex(32))

    def response_id(self, api: Api) -> str:
        """The id of a chat completion, a response or a message."""
        if api is Api.CHAT:
            return "chatcmpl-" + self._base62(29)
        if api is Api.RESPONSES:
            return "resp_" + self._hex(48)
        return "msg_" + self._base62(24)
