"""The emulator served by uvicorn: in a background thread, or in the foreground."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Final

from quotaflow.emulator._app import create_app
from quotaflow.emulator._config import EmulatorConfig
from quotaflow.emulator._handle import EmulatorHandle
from quotaflow.emulator._serving import bind, make_server, url_for, warm_up

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    import uvicorn

    from quotaflow.emulator._clock import TimeSource

__all__ = ["EmulatorServer", "serve"]

_POLL: Final = 0.005  # seconds between checks while waiting for uvicorn to start


class EmulatorServer(EmulatorHandle):
    """The emulator in a background thread of this process.

    Example:
        >>> with EmulatorServer(EmulatorConfig(latency=0)) as server:
        ...     client = openai.OpenAI(base_url=server.openai_base_url, api_key="x")

    Args:
        config: what to enforce (the defaults when ``None``).
        host: the address to listen on.
        port: the port; 0 picks a free one (read it back from :attr:`port` or :attr:`url`).
        clock: the time source (anything with ``now_ns()``); the system clock by default.
        start_timeout: seconds to wait for the server to start before failing.
        stop_timeout: seconds to wait for it to stop (unfinished responses are cancelled after
            2 s).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: TimeSource | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self._clock = clock
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._failure: BaseException | None = None

    @property
    def running(self) -> bool:
        """Whether the server thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the server thread and wait (at most ``start_timeout``) until it accepts.

        Raises:
            RuntimeError: it is already running, or it failed or did not start in time.
        """
        if self._thread is not None:
            raise RuntimeError("the emulator server is already running")
        app = create_app(self.config, clock=self._clock)
        self._socket = sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = server = make_server(app, configure_logging=False)
        self._failure = None

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # noqa: BLE001 (reported by start())
                self._failure = exc

        self._thread = thread = threading.Thread(target=run, name="quotaflow-emulator", daemon=True)
        thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                failure = self._failure
                self.stop()
                reason = "failed" if failure is not None else "did not start in time"
                raise RuntimeError(f"the emulator server {reason}") from failure
            time.sleep(_POLL)

    def stop(self) -> None:
        """Stop the server and join its thread (idempotent).

        Raises:
            RuntimeError: the thread did not stop within ``stop_timeout`` (twice: gracefully,
                then forced).
        """
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(self.stop_timeout)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(self.stop_timeout)
        if sock is not None:
            sock.close()
        if thread is not None and thread.is_alive():
            raise RuntimeError("the emulator server thread did not stop")


def serve(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the emulator in the foreground until interrupted (Ctrl-C, SIGTERM).

    Args:
        config: what to enforce (the defaults when ``None``).
        host: the address to listen on.
        port: the port (0: a free one).
        ready: called with the base URL once the socket listens.
    """
    app = create_app(config)
    warm_up()
    sock = bind(host, port)
    try:
        server = make_server(app, configure_logging=True)
        if ready is not None:
            ready(url_for(host, sock.getsockname()[1]))
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn shut down gracefully, then re-raised the interrupt
    finally:
        sock.close()
