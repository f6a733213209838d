"""What a running emulator offers, wherever it runs (a thread or a process)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Self

import httpx

from quotaflow.emulator._serving import url_for

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["EmulatorHandle"]

_ADMIN_TIMEOUT: Final = 10.0


class EmulatorHandle:
    """The base URL, the emulator's statistics and reset, and ``with`` support (start, stop)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (the Anthropic SDK's ``base_url``)."""
        return url_for(self.host, self.port)

    @property
    def openai_base_url(self) -> str:
        """The OpenAI SDK's ``base_url``: :attr:`url` + ``/v1``."""
        return self.url + "/v1"

    @property
    def running(self) -> bool:
        """Whether the server is running (started and not stopped)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start serving and wait until the server accepts connections."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """``GET /emulator/stats``: what was admitted, refused and counted, per model."""
        response = httpx.get(self.url + "/emulator/stats", timeout=_ADMIN_TIMEOUT, trust_env=False)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def reset(self) -> None:
        """``POST /emulator/reset``: fresh (full) buckets and zero counters."""
        url = self.url + "/emulator/reset"
        httpx.post(url, timeout=_ADMIN_TIMEOUT, trust_env=False).raise_for_status()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
