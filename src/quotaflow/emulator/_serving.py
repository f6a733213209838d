"""uvicorn plumbing shared by the thread, the process and the command line."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Final

import uvicorn

from quotaflow.providers import exact_counter

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["GRACE_SECONDS", "bind", "make_server", "url_for", "warm_up"]

#: How long a stopping server lets unfinished responses (slow streams) run before cancelling.
GRACE_SECONDS: Final = 2
_BACKLOG: Final = 2_048


def warm_up() -> None:
    """Load the OpenAI tokenizers now (about 0.5 s), not during the first requests."""
    for encoding in ("o200k_base", "cl100k_base"):
        exact_counter(encoding)


def url_for(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 hosts in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one the kernel picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (and their accepted
    # connections); with proto 0, Nagle's algorithm and delayed ACKs add 40 ms per response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def make_server(app: Starlette, *, configure_logging: bool) -> uvicorn.Server:
    """A quiet uvicorn server for ``app``: no access log, no lifespan, the app's own ``Date``.

    ``configure_logging`` lets uvicorn install its logging configuration (the command line and
    the child process do; a server started inside someone's program leaves theirs alone).
    """
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=uvicorn.config.LOGGING_CONFIG if configure_logging else None,
        access_log=False,
        lifespan="off",
        date_header=False,
        server_header=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
        backlog=_BACKLOG,
    )
    return uvicorn.Server(config)
