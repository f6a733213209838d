"""The emulator in a process of its own, so that client load does not share its GIL."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from typing import TYPE_CHECKING

from quotaflow.emulator._app import create_app
from quotaflow.emulator._config import EmulatorConfig
from quotaflow.emulator._handle import EmulatorHandle
from quotaflow.emulator._serving import bind, make_server, warm_up

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

__all__ = ["EmulatorProcess"]


def _run(config: EmulatorConfig, host: str, port: int, ready: Connection) -> None:
    """The child: serve, and report ``("ready", port)`` or ``("error", reason)`` on ``ready``."""
    try:
        app = create_app(config)
        warm_up()
        sock = bind(host, port)
        server = make_server(app, configure_logging=True)
    except Exception as exc:  # noqa: BLE001 (sent to the parent, which raises)
        ready.send(("error", f"{type(exc).__name__}: {exc}"))
        ready.close()
        return

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn has no event)
            await asyncio.sleep(0.005)
        ready.send(("ready", sock.getsockname()[1]) if server.started else ("error", "no start"))
        ready.close()
        await task

    asyncio.run(main())


def _receive(connection: Connection, timeout: float) -> tuple[str, object] | None:
    if not connection.poll(timeout):
        return None
    try:
        message: tuple[str, object] = connection.recv()
    except EOFError:
        return ("error", "it exited before listening")
    return message


class EmulatorProcess(EmulatorHandle):
    """The emulator in a separate process (``multiprocessing`` spawn), for benchmarks.

    Same interface as :class:`EmulatorServer`, without ``clock`` (the child uses the system
    clock). Stopping sends SIGTERM (uvicorn shuts down gracefully), then kills the process if
    it lingers.

    Args:
        config: what to enforce (the defaults when ``None``); it is pickled to the child.
        host: the address to listen on.
        port: the port; 0 picks a free one.
        start_timeout: seconds to wait for the child to listen (a spawn imports everything).
        stop_timeout: seconds to wait for it to exit after SIGTERM, then after SIGKILL.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self._requested_port = port
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.process: BaseProcess | None = None

    @property
    def running(self) -> bool:
        """Whether the child process is running."""
        return self.process is not None and self.process.is_alive()

    def start(self) -> None:
        """Spawn the process and wait (at most ``start_timeout``) until it listens.

        Raises:
            RuntimeError: it is already running, or it failed or did not start in time.
        """
        if self.process is not None:
            raise RuntimeError("the emulator process is already running")
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        args = (self.config, self.host, self._requested_port, send)
        self.process = context.Process(
            target=_run, args=args, name="quotaflow-emulator", daemon=True
        )
        try:
            self.process.start()
            send.close()
            message = _receive(receive, self.start_timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            receive.close()
        if message is None or message[0] != "ready":
            self.stop()
            reason = "did not start in time" if message is None else f"failed: {message[1]}"
            raise RuntimeError(f"the emulator process {reason}")
        self.port = int(str(message[1]))

    def stop(self) -> None:
        """Stop the process (idempotent): SIGTERM, then SIGKILL if it lingers.

        Raises:
            RuntimeError: the process survived SIGKILL for ``stop_timeout`` seconds.
        """
        process, self.process = self.process, None
        if process is None:
            return
        if process.is_alive():
            process.terminate()
            process.join(self.stop_timeout)
        if process.is_alive():
            process.kill()
            process.join(self.stop_timeout)
        if process.is_alive():
            raise RuntimeError(f"the emulator process {process.pid} did not stop")
        with contextlib.suppress(ValueError):
            process.close()
