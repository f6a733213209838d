"""Running the emulator: a thread and a process, each started, used and stopped cleanly."""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading

import httpx
import pytest

from quotaflow.emulator import EmulatorProcess, EmulatorServer
from quotaflow.testing import FakeClock
from tests.emulator.helpers import chat, config


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


def running(handle: EmulatorServer | EmulatorProcess) -> bool:
    return handle.running  # read through a call: mypy narrows a property read twice


def emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "quotaflow-emulator"]


def test_server_thread_serves_and_stops() -> None:
    clock = FakeClock()
    server = EmulatorServer(config(), clock=clock)
    with server:
        assert server.running
        assert server.port != 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.openai_base_url == server.url + "/v1"
        assert httpx.get(server.url + "/health").json() == {"status": "ok"}
        response = httpx.post(server.openai_base_url + "/chat/completions", json=chat())
        assert response.headers["date"] == "Thu, 01 Jan 2026 00:00:00 GMT"  # the given clock
        assert server.stats()["admitted"] == {"openai": 1}
        server.reset()
        assert server.stats()["admitted"] == {}
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
    assert not running(server)
    assert emulator_threads() == []
    assert refuses(server.port)
    server.stop()  # idempotent


def test_a_busy_port_fails_at_start() -> None:
    with EmulatorServer(config()) as first:
        with pytest.raises(OSError, match="in use"):
            EmulatorServer(config(), port=first.port).start()
        assert httpx.get(first.url + "/health").status_code == 200
    assert emulator_threads() == []


def test_stopping_cancels_a_slow_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("quotaflow.emulator._serving.GRACE_SECONDS", 0)  # no grace: cancel now
    server = EmulatorServer(config(token_latency=10.0))
    with server, httpx.Client(base_url=server.url, timeout=10) as client:
        body = chat(stream=True, stream_options={"include_usage": True})
        with client.stream("POST", "/v1/chat/completions", json=body) as stream:
            chunks = stream.iter_bytes()
            assert next(chunks).startswith(b"data: ")  # the role chunk; the next takes 40 s
            stopper = threading.Thread(target=server.stop)
            stopper.start()
            with pytest.raises(httpx.RemoteProtocolError):
                list(chunks)
            stopper.join(10)
    assert emulator_threads() == []


@pytest.mark.slow
def test_process_serves_and_stops() -> None:
    with EmulatorProcess(config(openai_rpm=3)) as process:
        assert process.running
        assert process.process is not None
        pid = process.process.pid
        statuses = [
            httpx.post(process.openai_base_url + "/chat/completions", json=chat()).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        stats = process.stats()["families"]["openai"]["gpt-4o-mini"]
        assert (stats["admitted"], stats["rate_limited"]) == (3, {"requests": 1})
        process.reset()
        assert process.stats()["families"] == {}
    assert not running(process)
    assert pid is not None
    assert all(child.pid != pid for child in multiprocessing.active_children())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, and reaped
    assert refuses(process.port)
