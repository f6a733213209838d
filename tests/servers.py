"""Throwaway Redis servers and a Redis Cluster for the tests, started from the binaries on PATH.

Everything here binds 127.0.0.1 only, every wait is bounded, and every process started is
stopped: by its owner, on a failed start, and by an atexit hook as a last resort.

- `find_free_port()`: a port nobody listens on, chosen below the kernel's ephemeral range so
  that no outgoing connection can take it while a server is stopped (restart reuses it).
- `RedisServer`: one `redis-server` with `start()`, `stop()`, `kill()`, `pause()`, `resume()`,
  `restart()` (same port) and `close()`; a context manager.
- `RedisCluster`: N such servers with cluster mode on, joined by `redis-cli --cluster create`.
- `skip_or_fail(reason)`: skip a test whose service is missing, or fail it when
  `QUOTAFLOW_REQUIRE_SERVICES=1` (CI), so that CI cannot silently skip the real-server tests.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Self

import pytest

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

__all__ = [
    "HOST",
    "REQUIRE_SERVICES_ENV",
    "RedisCluster",
    "RedisServer",
    "ServerError",
    "find_free_port",
    "parse_cluster_url",
    "services_required",
    "skip_or_fail",
]

HOST = "127.0.0.1"
REQUIRE_SERVICES_ENV = "QUOTAFLOW_REQUIRE_SERVICES"

_STOP_TIMEOUT = 5.0  # seconds a stopping server gets before SIGKILL
_POLL = 0.02  # seconds between readiness checks
_CLUSTER_SLOTS = 16384


class ServerError(RuntimeError):
    """A server did not start, did not answer in time, or a cluster did not form."""


# --- skip or fail -----------------------------------------------------------------------------


def services_required() -> bool:
    """Whether `QUOTAFLOW_REQUIRE_SERVICES` asks for every real-server test to run."""
    return os.environ.get(REQUIRE_SERVICES_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the current test for `reason`, or fail it when `QUOTAFLOW_REQUIRE_SERVICES=1`."""
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_ENV}=1: the real servers are required)")
    pytest.skip(reason)


# --- ports ------------------------------------------------------------------------------------


def _ephemeral_low() -> int | None:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
    except OSError:
        return None
    return int(text.split()[0])


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def find_free_port(host: str = HOST) -> int:
    """A TCP port on `host` that nobody listens on right now.

    It is drawn at random below the kernel's ephemeral range (when that range is known and
    leaves room): the kernel never hands such a port to an outgoing connection, so a server
    stopped by a fault test finds its port still free when it restarts.
    """
    low = _ephemeral_low()
    if low is not None and low > 11_000:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(10_000, low)
            if _bindable(port, host):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        chosen: int = probe.getsockname()[1]
        return chosen


# --- a tiny RESP client (the helpers do not depend on redis-py) ------------------------------


def _read_line(sock: socket.socket, buffer: bytearray) -> bytes:
    while b"\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


def _command(port: int, *args: str, host: str = HOST, timeout: float = 1.0) -> str:
    """Send one command and return its reply as text (simple string, error or bulk string).

    Raises OSError when the server does not answer within `timeout` seconds.
    """
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(payload)
        buffer = bytearray()
        line = _read_line(sock, buffer)
        if line[:1] != b"$":
            return line.decode(errors="replace")
        size = int(line[1:])
        if size < 0:
            return ""
        while len(buffer) < size + 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            buffer += chunk
        return bytes(buffer[:size]).decode(errors="replace")


def _info_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


# --- last-resort cleanup ------------------------------------------------------------------------

_LIVE: set[RedisServer] = set()


@atexit.register
def _close_everything() -> None:  # pragma: no cover - runs only when an owner forgot to close
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


# --- one server ---------------------------------------------------------------------------------


class RedisServer:
    """A throwaway `redis-server` on 127.0.0.1, without persistence, in its own temp directory.

    `stop()` ends the process (SIGTERM, then SIGKILL after 5 s) and keeps the port and the
    directory, so `start()` or `restart()` brings the server back on the same port, empty.
    `close()` stops it for good and removes the directory; leaving the `with` block closes it.

    Args:
        port: the port; a free one is chosen when omitted (and re-chosen should another
            process take it before the server binds it).
        extra_args: more `redis-server` arguments, e.g. `("--maxmemory", "10mb")`.
        startup_timeout: seconds a start may take before it fails with the log's tail.
        binary: the `redis-server` executable; the one on PATH by default.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
        binary: str | None = None,
    ) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise ServerError("redis-server is not on PATH")
        self.binary = found
        self.host = HOST
        self._fixed_port = port is not None
        self._port = port if port is not None else find_free_port()
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    # properties

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/0`."""
        return f"redis://{self.host}:{self._port}/0"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self._port)

    @property
    def directory(self) -> Path | None:
        """The server's working directory (its log is `redis.log` there), once started."""
        return self._dir

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive (a paused server is alive)."""
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def state(self) -> str:
        """The state: "running", "paused" or "stopped"."""
        return "paused" if self._paused else "running" if self.running else "stopped"

    def __repr__(self) -> str:
        return f"RedisServer({self.host}:{self._port}, {self.state})"

    # life cycle

    def start(self) -> Self:
        """Start the server (if not running) and return once it answers; raise ServerError."""
        if self.running:
            return self
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"quotaflow-redis-{self._port}-"))
        _LIVE.add(self)
        try:
            self._start_until(time.monotonic() + self.startup_timeout)
        except BaseException:
            self.close()
            raise
        self._fixed_port = True  # from now on the server lives on this port
        return self

    def stop(self) -> None:
        """End the process: SIGTERM, wait up to 5 s, then SIGKILL. The port stays reserved."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            self._continue()  # a stopped process would not act on SIGTERM
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
        self._reap()

    def kill(self) -> None:
        """End the process abruptly (SIGKILL), as a crash would."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        self._reap()

    def restart(self) -> Self:
        """Stop, then start again on the same port. The data is gone: nothing is persisted."""
        self.stop()
        return self.start()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections are accepted but nothing is answered."""
        process = self._require_running()
        process.send_signal(signal.SIGSTOP)
        self._paused = True
        self._wait_state(process.pid, stopped=True)

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT)."""
        process = self._require_running()
        self._continue()
        self._wait_state(process.pid, stopped=False)

    def close(self) -> None:
        """Stop the server for good and remove its directory."""
        try:
            self.stop()
        finally:
            _LIVE.discard(self)
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the server's log, or "" when there is none."""
        if self._dir is None:
            return ""
        try:
            text = (self._dir / "redis.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # internals

    def _arguments(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self._port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self._dir),
            *self.extra_args,
        ]

    def _spawn(self) -> None:
        assert self._dir is not None
        with (self._dir / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - the arguments are ours
                self._arguments(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
            )
        self._paused = False

    def _start_until(self, deadline: float) -> None:
        while True:
            self._spawn()
            if self._wait_ready(deadline):
                return
            # the port was taken between choosing it and binding it
            self._reap()
            if time.monotonic() >= deadline:
                raise self._failure("its port stayed in use")
            if self._fixed_port:
                time.sleep(0.1)  # wait for the port to come free again
            else:
                self._port = find_free_port()

    def _wait_ready(self, deadline: float) -> bool:
        """True once our own process answers; False when it exited for want of its port."""
        process = self._process
        assert process is not None
        while True:
            if process.poll() is not None:
                if "Address already in use" in self.log_tail(50):
                    return False
                raise self._failure(f"it exited with status {process.returncode}")
            if self._answers(process.pid):
                return True
            if time.monotonic() >= deadline:
                if "Address already in use" in self.log_tail(50):
                    raise self._failure("its port stayed in use")
                raise self._failure(f"it did not answer PING within {self.startup_timeout:g} s")
            time.sleep(_POLL)

    def _answers(self, pid: int) -> bool:
        # INFO's process_id tells our server apart from another one that got the port first.
        try:
            info = _info_fields(_command(self._port, "INFO", "server", timeout=0.5))
        except OSError:
            return False
        return info.get("process_id") == str(pid)

    def _failure(self, what: str) -> ServerError:
        tail = self.log_tail() or "(empty log)"
        return ServerError(
            f"redis-server on {self.host}:{self._port} failed to start: {what}.\n"
            f"Command: {' '.join(self._arguments())}\nLog tail:\n{tail}"
        )

    def _reap(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT)
        self._process = None
        self._paused = False

    def _continue(self) -> None:
        if self._paused and self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
        self._paused = False

    def _require_running(self) -> subprocess.Popen[bytes]:
        process = self._process
        if process is None or process.poll() is not None:
            raise ServerError(f"{self!r} is not running")
        return process

    @staticmethod
    def _wait_state(pid: int, *, stopped: bool) -> None:
        """Wait (up to 2 s) until Linux reports the process stopped or running again."""
        stat = Path(f"/proc/{pid}/stat")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                text = stat.read_text(encoding="ascii", errors="replace")
                state = text.rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return  # no procfs: signals to a child are delivered promptly anyway
            if (state in {"T", "t"}) == stopped:
                return
            time.sleep(0.005)


# --- a cluster ----------------------------------------------------------------------------------


def parse_cluster_url(url: str) -> list[tuple[str, int]]:
    """`redis+cluster://h1:p1,h2:p2/...` -> [("h1", p1), ("h2", p2)]."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"redis+cluster", "rediss+cluster"}:
        raise ValueError(f"not a redis+cluster:// URL: {url!r}")
    hosts = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"expected host:port in {url!r}, got {item!r}")
        nodes.append((host, int(port)))
    return nodes


class RedisCluster:
    """A throwaway Redis Cluster of `size` masters (no replicas) on 127.0.0.1.

    Each node is a `RedisServer` (see `servers`) started with cluster mode on and an explicit
    cluster bus port; `redis-cli --cluster create` assigns the slots. `start()` returns once
    every node reports `cluster_state:ok`. `stop()` tears every node down.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        node_timeout_ms: int = 2000,
        startup_timeout: float = 30.0,
    ) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise ServerError("redis-cli is not on PATH")
        if size < 3:  # redis-cli refuses fewer masters
            raise ValueError("a Redis Cluster needs at least 3 masters")
        self.cli = cli
        self.size = size
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout = startup_timeout
        self.servers: list[RedisServer] = []

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [server.address for server in self.servers]

    @property
    def url(self) -> str:
        """`redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`."""
        return "redis+cluster://" + ",".join(f"{host}:{port}" for host, port in self.nodes)

    def __repr__(self) -> str:
        return f"RedisCluster({self.url})"

    def start(self) -> Self:
        """Start the nodes, create the cluster and wait for `cluster_state:ok` on every node."""
        if self.servers:
            return self
        deadline = time.monotonic() + self.startup_timeout
        try:
            for index in range(self.size):
                server = RedisServer(startup_timeout=max(1.0, deadline - time.monotonic()))
                bus_port = find_free_port()
                while bus_port == server.port:
                    bus_port = find_free_port()
                server.extra_args = (
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{index}.conf",
                    "--cluster-node-timeout",
                    str(self.node_timeout_ms),
                    "--cluster-port",
                    str(bus_port),
                )
                self.servers.append(server)
                server.start()
            self._create(deadline)
            self._wait_ok(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node and remove their directories."""
        servers, self.servers = self.servers, []
        for server in servers:
            with contextlib.suppress(Exception):
                server.close()

    close = stop

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _create(self, deadline: float) -> None:
        command = [
            self.cli,
            "--cluster",
            "create",
            *(f"{host}:{port}" for host, port in self.nodes),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        try:
            result = subprocess.run(  # noqa: S603 - the arguments are ours
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise ServerError(f"{' '.join(command)} timed out:\n{error.stdout!r}") from error
        if result.returncode != 0:
            raise ServerError(
                f"{' '.join(command)} exited with status {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )

    def _wait_ok(self, deadline: float) -> None:
        last: dict[tuple[str, int], str] = {}
        while True:
            ready = True
            for host, port in self.nodes:
                try:
                    info = _info_fields(_command(port, "CLUSTER", "INFO", host=host, timeout=0.5))
                except OSError as error:
                    last[host, port] = f"no answer: {error}"
                    ready = False
                    continue
                last[host, port] = ", ".join(
                    f"{key}:{info.get(key)}"
                    for key in ("cluster_state", "cluster_slots_ok", "cluster_known_nodes")
                )
                ready = ready and (
                    info.get("cluster_state") == "ok"
                    and info.get("cluster_slots_ok") == str(_CLUSTER_SLOTS)
                    and info.get("cluster_known_nodes") == str(self.size)
                )
            if ready:
                return
            if time.monotonic() >= deadline:
                states = "\n".join(f"  {host}:{port}: {s}" for (host, port), s in last.items())
                raise ServerError(
                    f"the cluster did not reach cluster_state:ok within "
                    f"{self.startup_timeout:g} s:\n{states}"
                )
            time.sleep(0.05)
