"""`quotaflow batch` on the command line: tables, flags, exit codes, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from quotaflow.cli import app
from quotaflow.emulator import EmulatorConfig, EmulatorServer

MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(openai_rpm=100_000, openai_tpm=10_000_000, latency=0.0)
    with EmulatorServer(config) as emulator:
        yield emulator


@pytest.fixture
def emulator(server: EmulatorServer) -> EmulatorServer:
    server.reset()
    return server


def chat(i: int, **extra: Any) -> str:
    return json.dumps(
        {"custom_id": f"r{i}", "messages": [{"role": "user", "content": f"q {i}"}], **extra}
    )


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def invoke(tmp_path: Path, server: EmulatorServer, *flags: str) -> Any:
    arguments = [
        "batch", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"),
        "--base-url", server.openai_base_url, "--api-key", "test", "--model", MODEL,
        "--max-tokens", "20", "--no-progress", *flags,
    ]  # fmt: skip
    return CliRunner().invoke(app, arguments)


def test_a_run_prints_both_tables_and_writes_the_summary(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [chat(1), chat(2), "[oops"])
    result = invoke(tmp_path, emulator, "--summary-json", str(tmp_path / "summary.json"))
    assert result.exit_code == 1, result.output  # a bad line
    assert "pre-flight" in result.output
    assert "summary" in result.output
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert {k: summary[k] for k in ("lines", "done_now", "succeeded", "invalid", "exit_code")} == {
        "lines": 3, "done_now": 3, "succeeded": 2, "invalid": 1, "exit_code": 1,
    }  # fmt: skip
    assert summary["cost_usd"] > 0
    assert summary["stopped"] is None
    assert len(records(tmp_path / "out.jsonl")) == 3
    again = invoke(tmp_path, emulator, "--summary-json", str(tmp_path / "summary.json"))
    assert again.exit_code == 1  # OUT still holds the bad line
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))["skipped"] == 3


def test_all_ok_exits_zero(tmp_path: Path, emulator: EmulatorServer) -> None:
    write(tmp_path / "in.jsonl", [chat(1), chat(2)])
    result = invoke(tmp_path, emulator, "--rpm", "1000", "--headroom", "0.9")
    assert result.exit_code == 0, result.output
    assert emulator.stats()["admitted"]["openai"] == 2


def test_fail_mode_lists_the_bad_lines_and_exits_2(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [chat(1), "{", chat(3, messages=[]), chat(1)])
    result = invoke(tmp_path, emulator, "--on-invalid", "fail")
    assert result.exit_code == 2
    for number in (2, 3, 4):
        assert f"invalid: line {number}:" in result.output
    assert "3 invalid lines" in result.output
    assert not (tmp_path / "out.jsonl").exists()
    assert emulator.stats()["admitted"] == {}


def test_a_dry_run_sends_nothing(tmp_path: Path, emulator: EmulatorServer) -> None:
    write(tmp_path / "in.jsonl", [chat(1), chat(2, model="gpt-4o"), "nope"])
    result = invoke(tmp_path, emulator, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "gpt-4o" in result.output
    assert "invalid: line 3: malformed JSON" in result.output
    assert not (tmp_path / "out.jsonl").exists()
    assert emulator.stats()["admitted"] == {}


def test_refusals_exit_2_with_a_message(tmp_path: Path, emulator: EmulatorServer) -> None:
    write(tmp_path / "in.jsonl", [chat(1)])
    summary = tmp_path / "summary.json"
    budget = invoke(tmp_path, emulator, "--max-cost", "0.0000001", "--summary-json", str(summary))
    assert budget.exit_code == 2
    assert "above --max-cost" in budget.output
    assert json.loads(summary.read_text(encoding="utf-8"))["error"] == "budget_exceeded"
    assert invoke(tmp_path, emulator, "--provider", "gemini").exit_code == 2
    assert invoke(tmp_path, emulator, "--preset", "nope").exit_code == 2
    (tmp_path / "in.jsonl").unlink()
    missing = invoke(tmp_path, emulator)
    assert missing.exit_code == 2
    assert "no input file" in missing.output


def test_a_config_file_gives_settings_and_flags_win(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [chat(1), chat(2, model="other")])
    config = tmp_path / "batch.toml"
    config.write_text('models = ["other"]\nworkers = 2\n[limits]\nrpm = 600\n', encoding="utf-8")
    result = invoke(tmp_path, emulator, "--config", str(config), "--models", MODEL)
    assert result.exit_code == 1, result.output
    found = {r["line"]: r for r in records(tmp_path / "out.jsonl")}
    assert found[1]["error"] is None
    assert "unknown model 'other'" in found[2]["error"]["message"]
    config.write_text("colour = 'red'\n", encoding="utf-8")
    bad = invoke(tmp_path, emulator, "--config", str(config))
    assert bad.exit_code == 2
    assert "unknown setting 'colour'" in bad.output


# Ctrl-C, in a real process -------------------------------------------------------------------


@pytest.fixture
def slow_server() -> Iterator[EmulatorServer]:
    """Every answer takes 20 tokens x 0.05 s = 1 s."""
    config = EmulatorConfig(latency=0.0, token_latency=0.05, output_tokens=(20, 20))
    with EmulatorServer(config) as emulator:
        yield emulator


def _start(tmp_path: Path, server: EmulatorServer) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-c", "from quotaflow.cli import main; main()", "batch",
        str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), "--base-url",
        server.openai_base_url, "--api-key", "test", "--model", MODEL, "--max-tokens", "20",
        "--workers", "3", "--grace", "20", "--no-progress",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTAFLOW_")}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603


def _wait_for_a_record(out: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.stat().st_size:
            return
        time.sleep(0.05)
    pytest.fail("the batch wrote no record in 30 s")


@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(
    tmp_path: Path, slow_server: EmulatorServer, emulator: EmulatorServer, presses: int
) -> None:
    write(tmp_path / "in.jsonl", [chat(i) for i in range(1, 41)])
    out = tmp_path / "out.jsonl"
    process = _start(tmp_path, slow_server)
    try:
        _wait_for_a_record(out, process)
        for _ in range(presses):
            process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr.decode()
    assert b"interrupted" in stderr
    written = records(out)  # every line of OUT is a whole record
    assert 1 <= len(written) < 40
    sent = slow_server.stats()["admitted"]["openai"]
    if presses == 1:
        assert sent == len(written)  # in-flight lines were finished and written
    else:
        assert sent >= len(written)  # cancelled ones were sent, not written
    result = invoke(tmp_path, emulator)
    assert result.exit_code == 0, result.output
    lines = sorted(r["line"] for r in records(out))
    assert lines == list(range(1, 41))
    assert emulator.stats()["admitted"]["openai"] == 40 - len(written)


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize(
    ("preset", "model", "message"),
    [
        ("openai:tier-9", MODEL, "openai has no tier '9'"),
        ("anthropic:tier-2", MODEL, "is for anthropic, and the batch goes to openai"),
        ("openai:free", MODEL, "no published limits for OpenAI gpt-4o-mini tier 'free'"),
        ("openai:tier-3", "gpt-4.1-mini", "no OpenAI preset for model 'gpt-4.1-mini'"),
    ],
)
def test_a_bad_preset_is_refused_before_anything_is_touched(
    tmp_path: Path, emulator: EmulatorServer, preset: str, model: str, message: str, *,
    dry_run: bool,
) -> None:  # fmt: skip
    write(tmp_path / "in.jsonl", [chat(1, model=model), chat(2)])
    failed = {"id": "x", "custom_id": "r1", "line": 1, "response": None,
              "error": {"code": "server_error", "message": "HTTP 500"}}  # fmt: skip
    out = tmp_path / "out.jsonl"
    out.write_bytes(json.dumps(failed).encode() + b"\n" + b'{"id": "cut')  # a run rewrites it
    before = out.read_bytes()
    flags = ("--preset", preset, *(["--dry-run"] if dry_run else []))
    result = invoke(tmp_path, emulator, *flags)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert out.read_bytes() == before
    assert emulator.stats()["admitted"] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


@pytest.mark.slow
def test_sigterm_is_a_first_ctrl_c(
    tmp_path: Path, slow_server: EmulatorServer, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [chat(i) for i in range(1, 41)])
    out = tmp_path / "out.jsonl"
    process = _start(tmp_path, slow_server)
    try:
        _wait_for_a_record(out, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr.decode()
    assert b"interrupted: no new line starts" in stderr
    written = records(out)
    assert 1 <= len(written) < 40
    assert slow_server.stats()["admitted"]["openai"] == len(written)  # in flight: finished
    result = invoke(tmp_path, emulator)
    assert result.exit_code == 0, result.output
    assert sorted(r["line"] for r in records(out)) == list(range(1, 41))
    assert emulator.stats()["admitted"]["openai"] == 40 - len(written)
