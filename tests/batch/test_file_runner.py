"""run_batch_file against the emulator: records, bad lines, resume, budgets, stops."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from quotaflow.batch._cost import Pricing
from quotaflow.batch._file_errors import (
    BudgetExceededError,
    InputChangedError,
    InvalidInputError,
)
from quotaflow.batch._input import InputDefaults, InvalidLine, RequestLine, parse_line
from quotaflow.batch._options import BatchFileOptions
from quotaflow.batch._output import error_record
from quotaflow.batch._preflight import Preflight, estimate
from quotaflow.batch._progress import Reporter
from quotaflow.batch._runner import StopControl, run_batch_file
from quotaflow.batch._summary import RunCounters
from quotaflow.client import ClientConfig, RetryPolicy
from quotaflow.emulator import FAULT_HEADER, OUTPUT_HEADER, EmulatorConfig, EmulatorServer
from quotaflow.providers import Provider

MODEL = "gpt-4o-mini"
FAST = ClientConfig(retry=RetryPolicy(max_retries=0))


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        openai_rpm=100_000, openai_tpm=10_000_000, anthropic_rpm=100_000,
        anthropic_itpm=10_000_000, anthropic_otpm=10_000_000, latency=0.0,
        output_tokens=(5, 5),
    )  # fmt: skip
    with EmulatorServer(config) as emulator:
        yield emulator


@pytest.fixture
def emulator(server: EmulatorServer) -> EmulatorServer:
    server.reset()
    return server


def sent(server: EmulatorServer, family: str = "openai") -> int:
    admitted: dict[str, int] = server.stats()["admitted"]
    return admitted.get(family, 0)


def write(path: Path, rows: list[object]) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path


def chat(i: int, **extra: Any) -> dict[str, Any]:
    return {"custom_id": f"r{i}", "messages": [{"role": "user", "content": f"q {i}"}], **extra}


def index_files(folder: Path) -> list[Path]:
    return list(folder.glob(".*.sqlite"))


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def by_line(path: Path) -> dict[int, dict[str, Any]]:
    found = records(path)
    lines = Counter(r["line"] for r in found)
    assert all(n == 1 for n in lines.values()), lines  # exactly one record per line
    return {r["line"]: r for r in found}


def options(tmp_path: Path, server: EmulatorServer, **changes: Any) -> BatchFileOptions:
    settings: dict[str, Any] = {
        "input": tmp_path / "in.jsonl", "output": tmp_path / "out.jsonl",
        "base_url": server.openai_base_url, "api_key": "test", "model": MODEL,
        "max_tokens": 20, "workers": 8, "client_config": FAST, **changes,
    }  # fmt: skip
    return BatchFileOptions(**settings)


class Recorder(Reporter):
    """Keeps what a run reports; calls ``when_done(done)`` after each record."""

    def __init__(self, when_done: Callable[[int], None] | None = None) -> None:
        self.bad: list[InvalidLine] = []
        self.notices: list[str] = []
        self.report: Preflight | None = None
        self._when_done = when_done

    def preflight(self, report: Preflight) -> None:
        self.report = report

    def bad_line(self, problem: InvalidLine) -> None:
        self.bad.append(problem)

    def notice(self, text: str) -> None:
        self.notices.append(text)

    def update(self, counters: RunCounters) -> None:
        if self._when_done is not None:
            self._when_done(counters.done)


def headers_for(mapping: Mapping[str, Mapping[str, str]]) -> Callable[[RequestLine], Any]:
    return lambda item: mapping.get(item.custom_id, {})


# Formats, records, bad lines -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_format_becomes_one_record(tmp_path: Path, emulator: EmulatorServer) -> None:
    write(tmp_path / "in.jsonl", [
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}},
        chat(2, model=MODEL, temperature=0),
        [{"role": "user", "content": "bare"}],
        {"custom_id": "r", "method": "POST", "url": "/v1/responses", "body": {"input": "hi"}},
    ])  # fmt: skip
    summary = await run_batch_file(options(tmp_path, emulator))
    found = by_line(tmp_path / "out.jsonl")
    assert [found[n]["custom_id"] for n in (1, 2, 3, 4)] == ["a", "r2", "line-3", "r"]
    for record in found.values():
        assert record["error"] is None
        assert record["id"].startswith("batch_req_")
        assert record["response"]["status_code"] == 200
        assert record["response"]["request_id"].startswith("req_")
    assert found[4]["response"]["body"]["object"] == "response"
    assert sent(emulator) == 4
    assert (summary.lines, summary.done_now, summary.succeeded, summary.exit_code) == (4, 4, 4, 0)
    assert (summary.input_tokens > 0, summary.output_tokens, summary.cost > 0) == (True, 20, True)


@pytest.mark.asyncio
async def test_anthropic_lines(tmp_path: Path, emulator: EmulatorServer) -> None:
    system = {"role": "system", "content": "Be brief."}
    write(tmp_path / "in.jsonl", [[system, {"role": "user", "content": "hi"}]])
    run = options(tmp_path, emulator, provider="anthropic", base_url=emulator.url + "/v1",
                  model="claude-sonnet-4-5", max_tokens=None)  # fmt: skip
    summary = await run_batch_file(run)
    assert summary.succeeded == 1
    assert records(tmp_path / "out.jsonl")[0]["response"]["body"]["type"] == "message"
    assert sent(emulator, "anthropic") == 1


@pytest.mark.asyncio
async def test_bad_lines_are_recorded_and_the_rest_goes_on(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [
        chat(1), "{broken", chat(3, messages=[]), chat(1), chat(5, model="other"), "", chat(7),
    ])  # fmt: skip
    run = options(tmp_path, emulator, models=frozenset({MODEL}))
    summary = await run_batch_file(run)
    found = by_line(tmp_path / "out.jsonl")
    assert sorted(found) == [1, 2, 3, 4, 5, 7]
    errors = {n: r["error"] for n, r in found.items() if r["error"]}
    assert {n: e["code"] for n, e in errors.items()} == dict.fromkeys((2, 3, 4, 5), "invalid_input")
    assert "line 2: malformed JSON" in errors[2]["message"]
    assert "line 3: messages must be a non-empty list" in errors[3]["message"]
    assert "line 4: duplicate custom_id 'r1' (first on line 1)" in errors[4]["message"]
    assert "line 5: unknown model 'other'" in errors[5]["message"]
    assert found[4]["custom_id"] == "r1"
    assert sent(emulator) == 2
    assert (summary.invalid, summary.succeeded, summary.exit_code) == (4, 2, 1)


@pytest.mark.asyncio
async def test_fail_mode_lists_every_bad_line_and_sends_nothing(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [chat(1), "nope", chat(3, messages="x"), chat(1)])
    reporter = Recorder()
    with pytest.raises(InvalidInputError, match="3 invalid lines") as caught:
        await run_batch_file(options(tmp_path, emulator, on_invalid="fail"), reporter=reporter)
    assert [line for line, _ in caught.value.first] == [2, 3, 4]
    assert [p.line for p in reporter.bad] == [2, 3, 4]
    assert not (tmp_path / "out.jsonl").exists()
    assert sent(emulator) == 0
    assert not index_files(tmp_path)  # the index is gone


@pytest.mark.asyncio
async def test_error_responses_are_classified(tmp_path: Path, emulator: EmulatorServer) -> None:
    write(tmp_path / "in.jsonl", [chat(1), chat(2), chat(3)])
    faults = {"r1": {FAULT_HEADER: "500"}, "r2": {OUTPUT_HEADER: "many"}}
    summary = await run_batch_file(options(tmp_path, emulator, request_headers=headers_for(faults)))
    found = by_line(tmp_path / "out.jsonl")
    assert found[1]["error"]["code"] == "server_error"
    assert found[1]["response"]["status_code"] == 500
    assert found[1]["error"]["message"].startswith("HTTP 500")
    assert found[2]["error"]["code"] == "invalid_request"
    assert found[3]["error"] is None
    assert summary.failed == {"invalid_request": 1, "server_error": 1}
    assert summary.exit_code == 1


@pytest.mark.asyncio
async def test_a_bom_bad_bytes_and_lone_surrogates_are_handled(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b"\xef\xbb\xbf" + json.dumps(chat(1)).encode() + b"\r\n"
        + b'{"custom_id": "r2", "messages": [{"role": "user", "content": "caf\xe9"}]}\n'
        + b'{"custom_id": "x\\ud800", "messages": [{"role": "user", "content": "hi"}]}\n'
        + b'{"custom_id": "r4", "messages": "\\udc00"}\n'
        + json.dumps(chat(5)).encode() + b"\n"
    )  # fmt: skip
    summary = await run_batch_file(options(tmp_path, emulator))
    found = by_line(tmp_path / "out.jsonl")
    assert [found[n]["error"] for n in (1, 5)] == [None, None]
    assert found[2]["error"]["message"] == "line 2: not UTF-8 text"
    assert found[3]["error"]["message"] == "line 3: not valid UTF-8 text: a lone surrogate"
    assert found[4]["error"]["message"] == "line 4: not valid UTF-8 text: a lone surrogate"
    assert {found[n]["custom_id"] for n in (2, 3, 4)} == {None}
    assert (summary.succeeded, summary.invalid, sent(emulator)) == (2, 3, 2)
    again = await run_batch_file(options(tmp_path, emulator))
    assert (again.skipped, again.done_now, sent(emulator)) == (5, 0, 2)


# Resume --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_stopped_run_is_continued_without_sending_anything_twice(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [chat(i) for i in range(1, 31)])
    control = StopControl()

    def stop_at(done: int) -> None:
        if done >= 5:
            control.stop()

    first = await run_batch_file(
        options(tmp_path, emulator, workers=2), control=control, reporter=Recorder(stop_at)
    )
    assert first.stopped == "interrupted"
    assert first.exit_code == 130
    assert 5 <= first.done_now <= 7
    assert first.not_done == 30 - first.done_now
    assert len(by_line(tmp_path / "out.jsonl")) == first.done_now
    second = await run_batch_file(options(tmp_path, emulator))
    assert (second.skipped, second.done_now, second.exit_code) == (
        first.done_now,
        30 - first.done_now,
        0,
    )
    assert sorted(by_line(tmp_path / "out.jsonl")) == list(range(1, 31))
    assert sent(emulator) == 30  # no line was sent twice


@pytest.mark.asyncio
async def test_a_partial_last_record_is_cut_and_redone(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [chat(i) for i in range(1, 5)])
    out = tmp_path / "out.jsonl"
    await run_batch_file(options(tmp_path, emulator))
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:3]) + lines[3][:25])  # a crash in the middle of a write
    redone = json.loads(lines[3])["line"]
    summary = await run_batch_file(options(tmp_path, emulator))
    assert (summary.skipped, summary.done_now) == (3, 1)
    assert sorted(by_line(out)) == [1, 2, 3, 4]
    assert by_line(out)[redone]["error"] is None
    assert sent(emulator) == 5


@pytest.mark.asyncio
async def test_retryable_failures_are_redone_and_final_ones_kept(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [chat(i) for i in range(1, 5)])
    out = tmp_path / "out.jsonl"
    # Lines go one at a time; the quota error comes last (it pauses every later call).
    faults = {"r1": {FAULT_HEADER: "503"}, "r2": {OUTPUT_HEADER: "bad"},
              "r4": {FAULT_HEADER: "insufficient_quota"}}  # fmt: skip
    first = await run_batch_file(
        options(tmp_path, emulator, request_headers=headers_for(faults), workers=1)
    )
    assert first.failed == {"invalid_request": 1, "overloaded": 1, "quota_exhausted": 1}
    second = await run_batch_file(options(tmp_path, emulator))
    assert (second.skipped, second.skipped_failed, second.done_now) == (2, 1, 2)
    assert sent(emulator) == 1 + 2  # r3, then r1 and r4
    assert second.exit_code == 1  # OUT still has a failed line
    found = by_line(out)
    assert [found[n]["error"] for n in (1, 3, 4)] == [None, None, None]
    assert found[2]["error"]["code"] == "invalid_request"
    third = await run_batch_file(options(tmp_path, emulator, retry_failed=True))
    assert (third.done_now, third.exit_code) == (1, 0)
    assert all(r["error"] is None for r in by_line(out).values())


@pytest.mark.asyncio
async def test_a_changed_input_is_refused(tmp_path: Path, emulator: EmulatorServer) -> None:
    source = write(tmp_path / "in.jsonl", [chat(1), chat(2), chat(3)])
    await run_batch_file(options(tmp_path, emulator))
    write(source, [chat(1), chat(9), chat(3)])
    with pytest.raises(InputChangedError, match="line 2 is now 'r9'"):
        await run_batch_file(options(tmp_path, emulator))
    write(source, [chat(1), chat(2)])
    with pytest.raises(InputChangedError, match="record for line 3"):
        await run_batch_file(options(tmp_path, emulator))
    assert sent(emulator) == 3


@pytest.mark.asyncio
async def test_lines_without_ids_that_moved_are_refused(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    def bare(i: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"q{i}"}]

    source = write(tmp_path / "in.jsonl", [bare(i) for i in range(4)])
    await run_batch_file(options(tmp_path, emulator))
    write(source, [bare(i) for i in range(1, 5)])  # the first line removed, one appended
    with pytest.raises(InputChangedError, match=r"line 1 of .* is not the line its record"):
        await run_batch_file(options(tmp_path, emulator))
    write(source, [bare(0), bare(9), bare(2), bare(3)])  # one edited in place
    with pytest.raises(InputChangedError, match=r"line 2 of .* is not the line its record"):
        await run_batch_file(options(tmp_path, emulator))
    write(source, [bare(i) for i in range(5)])  # appending is fine
    summary = await run_batch_file(options(tmp_path, emulator))
    assert (summary.skipped, summary.done_now, sent(emulator)) == (4, 1, 5)


@pytest.mark.asyncio
async def test_a_line_with_an_id_and_other_content_is_refused(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    source = write(tmp_path / "in.jsonl", [chat(1), chat(2)])
    await run_batch_file(options(tmp_path, emulator))
    write(source, [chat(1), chat(2, temperature=0)])
    with pytest.raises(InputChangedError, match="line 2 of"):
        await run_batch_file(options(tmp_path, emulator))
    assert sent(emulator) == 2


@pytest.mark.asyncio
async def test_records_without_a_line_hash_are_matched_by_id(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    source = write(tmp_path / "in.jsonl", [chat(1), chat(2)])
    out = tmp_path / "out.jsonl"
    await run_batch_file(options(tmp_path, emulator))
    old = [{k: v for k, v in r.items() if k != "line_hash"} for r in records(out)]
    out.write_text("".join(json.dumps(r) + "\n" for r in old), encoding="utf-8")
    write(source, [chat(1), chat(2, temperature=0), chat(3)])
    summary = await run_batch_file(options(tmp_path, emulator))
    assert (summary.skipped, summary.done_now, sent(emulator)) == (2, 1, 3)
    write(source, [chat(1), chat(9), chat(3)])
    with pytest.raises(InputChangedError, match="line 2 is now 'r9'"):
        await run_batch_file(options(tmp_path, emulator))


@pytest.mark.asyncio
async def test_bad_lines_fixed_in_place_are_checked_and_sent_again(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    source = write(tmp_path / "in.jsonl", [
        chat(1), '{"custom_id": "r2", "messages": [', chat(3, messages=[]), chat(1), "nope",
    ])  # fmt: skip
    out = tmp_path / "out.jsonl"
    first = await run_batch_file(options(tmp_path, emulator))
    assert (first.succeeded, first.invalid) == (1, 4)
    # Line 2 fixed; line 3 still bad (another problem); line 4 given its own id; 5 unchanged.
    write(source, [chat(1), chat(2), chat(3, messages="x"), chat(4), "nope"])
    second = await run_batch_file(options(tmp_path, emulator))
    assert (second.skipped, second.succeeded, second.invalid) == (2, 2, 1)
    assert second.exit_code == 1
    found = by_line(out)
    assert [found[n]["error"] for n in (1, 2, 4)] == [None, None, None]
    assert "line 3: messages must be a non-empty list" in found[3]["error"]["message"]
    assert "line 5: malformed JSON" in found[5]["error"]["message"]
    write(source, [chat(1), chat(2), chat(3), chat(4), "nope"])
    third = await run_batch_file(options(tmp_path, emulator))
    assert (third.skipped, third.succeeded) == (4, 1)
    assert sorted(by_line(out)) == [1, 2, 3, 4, 5]
    assert sent(emulator) == 4


@pytest.mark.asyncio
async def test_blank_lines_in_the_output_are_ignored(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [chat(1), chat(2), chat(3)])
    out = tmp_path / "out.jsonl"
    faults = {"r2": {FAULT_HEADER: "500"}}
    await run_batch_file(options(tmp_path, emulator, request_headers=headers_for(faults)))
    with out.open("ab") as file:
        file.write(b"\n\n")
    summary = await run_batch_file(options(tmp_path, emulator))
    assert (summary.skipped, summary.done_now, summary.exit_code) == (2, 1, 0)
    assert b"\n\n" not in out.read_bytes()  # dropped when OUT was rewritten
    assert sorted(by_line(out)) == [1, 2, 3]
    with out.open("ab") as file:
        file.write(b"\n")
    assert (await run_batch_file(options(tmp_path, emulator))).skipped == 3


# Budget --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_max_cost_refuses_a_batch_whose_worst_case_is_above(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [chat(i) for i in range(1, 11)])
    reporter = Recorder()
    with pytest.raises(BudgetExceededError, match="above --max-cost"):
        await run_batch_file(options(tmp_path, emulator, max_cost=0.000_01), reporter=reporter)
    assert reporter.report is not None
    assert reporter.report.total.cost > 10
    assert sent(emulator) == 0
    dry = await run_batch_file(options(tmp_path, emulator, dry_run=True))
    assert (dry.dry_run, dry.exit_code, dry.estimated_cost) == (True, 0, reporter.report.total.cost)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.asyncio
async def test_unpriced_models_are_unknown_under_a_budget(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    write(tmp_path / "in.jsonl", [chat(1), chat(2, model="no-such-model-xyz")])
    summary = await run_batch_file(options(tmp_path, emulator, max_cost=1.0))
    message = by_line(tmp_path / "out.jsonl")[2]["error"]["message"]
    assert "line 2: unknown model 'no-such-model-xyz': no price" in message
    assert (summary.succeeded, summary.invalid) == (1, 1)


@pytest.mark.asyncio
async def test_a_partial_run_stops_at_the_budget_and_a_rerun_continues(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    # Every answer is exactly its cap (5 tokens), so the worst case is the actual cost.
    write(tmp_path / "in.jsonl", [chat(i, max_tokens=5) for i in range(1, 11)])
    reporter = Recorder()
    run = options(tmp_path, emulator, max_cost=0.000_03, allow_partial=True, workers=4)
    summary = await run_batch_file(run, reporter=reporter)
    assert summary.stopped == "max_cost"
    assert 0 < summary.done_now < 10
    assert summary.cost <= 30
    assert summary.not_done == 10 - summary.done_now
    assert summary.exit_code == 1
    assert any("--max-cost" in notice for notice in reporter.notices)
    rest = await run_batch_file(options(tmp_path, emulator, max_cost=1.0))
    assert rest.done_now == 10 - summary.done_now
    assert sorted(by_line(tmp_path / "out.jsonl")) == list(range(1, 11))
    assert sent(emulator) == 10


class _NoUsage(BaseHTTPRequestHandler):
    """A provider (or a gateway) that answers without a usage: ``status`` and ``body``."""

    status: ClassVar[int] = 200
    body: ClassVar[bytes] = b""
    calls: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.calls.append(1)
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def no_usage() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoUsage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _NoUsage.calls = []
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


_ANSWER = json.dumps({
    "id": "c", "object": "chat.completion", "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 80},
                 "finish_reason": "stop"}],
}).encode()  # fmt: skip
_ERROR = json.dumps({"error": {"message": "bad", "type": "invalid_request_error"}}).encode()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "body", "billed"),
    [(200, _ANSWER, True), (200, b"<html>proxy</html>", True), (400, _ERROR, False)],
)
async def test_an_answer_without_a_usage_is_charged_its_worst_case_unless_an_error(
    tmp_path: Path, no_usage: str, status: int, body: bytes, *, billed: bool
) -> None:
    _NoUsage.status, _NoUsage.body = status, body
    write(tmp_path / "in.jsonl", [chat(i) for i in range(10)])
    defaults = InputDefaults(Provider.OPENAI, MODEL, 20, force_cap=True)
    line = parse_line(1, json.dumps(chat(0)), defaults)
    assert isinstance(line, RequestLine)
    worst = estimate(Provider.OPENAI, Pricing(Provider.OPENAI), line).cost
    assert worst is not None
    settings: dict[str, Any] = {
        "input": tmp_path / "in.jsonl", "output": tmp_path / "out.jsonl", "base_url": no_usage,
        "api_key": "test", "model": MODEL, "max_tokens": 20, "workers": 1,
        "client_config": FAST, "max_cost": 3 * worst / 1e6, "allow_partial": True,
    }  # fmt: skip
    summary = await run_batch_file(BatchFileOptions(**settings))
    if billed:
        assert 1 <= len(_NoUsage.calls) <= 3
        assert summary.stopped == "max_cost"
        assert summary.unpriced == len(_NoUsage.calls)
    else:  # an error answer is not billed: the budget is untouched
        assert len(_NoUsage.calls) == 10
        assert (summary.stopped, summary.unpriced) == (None, 0)


# Stops ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancelled_lines_are_not_written_and_redone(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    # On this emulator every answer takes 0.5 s a token: r5 asks for 20 tokens (10 s), the
    # others get 1 (0.5 s). Once those four are written, the run is cancelled.
    write(tmp_path / "in.jsonl", [chat(i) for i in range(1, 6)])
    control = StopControl()

    def cancel_at(done: int) -> None:
        if done == 4:
            control.cancel()

    slow = headers_for({"r5": {OUTPUT_HEADER: "20"}})
    config = EmulatorConfig(latency=0.0, token_latency=0.5, output_tokens=(1, 1))
    with EmulatorServer(config) as server:
        run = options(tmp_path, server, request_headers=slow, workers=5)
        summary = await run_batch_file(run, control=control, reporter=Recorder(cancel_at))
    assert (summary.done_now, summary.not_done, summary.stopped) == (4, 1, "interrupted")
    assert 5 not in by_line(tmp_path / "out.jsonl")
    rest = await run_batch_file(options(tmp_path, emulator))
    assert (rest.skipped, rest.done_now) == (4, 1)
    assert sorted(by_line(tmp_path / "out.jsonl")) == [1, 2, 3, 4, 5]


@pytest.mark.asyncio
async def test_a_stop_lets_lines_in_flight_finish(tmp_path: Path, emulator: EmulatorServer) -> None:
    write(tmp_path / "in.jsonl", [chat(i) for i in range(1, 21)])
    control = StopControl()
    reporter = Recorder(lambda _: control.stop())
    summary = await run_batch_file(
        options(tmp_path, emulator, workers=3), control=control, reporter=reporter
    )
    assert 1 <= summary.done_now <= 3
    assert len(by_line(tmp_path / "out.jsonl")) == summary.done_now
    assert sent(emulator) == summary.done_now  # whatever was sent was written


@pytest.mark.asyncio
async def test_the_end_of_the_grace_period_cancels_the_lines_in_flight(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    # Every answer takes 0.5 s a token: r3 asks for 20 tokens (10 s), the others get 1. Once
    # r1 and r2 are written, the run is stopped with a grace of 0.2 s: r3 is cancelled then.
    write(tmp_path / "in.jsonl", [chat(i) for i in range(1, 4)])
    control = StopControl()

    def stop_at(done: int) -> None:
        if done == 2:
            control.stop()

    reporter = Recorder(stop_at)
    slow = headers_for({"r3": {OUTPUT_HEADER: "20"}})
    config = EmulatorConfig(latency=0.0, token_latency=0.5, output_tokens=(1, 1))
    with EmulatorServer(config) as server:
        run = options(tmp_path, server, request_headers=slow, workers=3, grace=0.2)
        started = time.monotonic()
        summary = await run_batch_file(run, control=control, reporter=reporter)
        elapsed = time.monotonic() - started
        assert sent(server) == 3
    assert elapsed < 5  # far below r3's 10 s: it was not waited for
    assert (summary.done_now, summary.not_done, summary.stopped) == (2, 1, "interrupted")
    assert summary.exit_code == 130
    assert any("waiting up to 0.2s for 1 lines" in notice for notice in reporter.notices)
    assert sorted(by_line(tmp_path / "out.jsonl")) == [1, 2]  # r3 was not written
    rest = await run_batch_file(options(tmp_path, emulator))
    assert (rest.skipped, rest.done_now, sent(emulator)) == (2, 1, 1)
    assert sorted(by_line(tmp_path / "out.jsonl")) == [1, 2, 3]


@pytest.mark.asyncio
async def test_a_stop_during_the_preflight_sends_nothing(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    # Line 1 is bad: the pre-flight reports it first, and the stop it asks for is seen a few
    # hundred lines later, long before the end of the input.
    write(tmp_path / "in.jsonl", ["nope", *(chat(i) for i in range(2, 3001))])
    out = write(tmp_path / "out.jsonl", [error_record(2, "r2", "server_error", "HTTP 500")])
    before = out.read_bytes()
    control = StopControl()

    class StopAtABadLine(Recorder):
        def bad_line(self, problem: InvalidLine) -> None:
            super().bad_line(problem)
            control.stop()

    reporter = StopAtABadLine()
    summary = await run_batch_file(options(tmp_path, emulator), control=control, reporter=reporter)
    assert (summary.stopped, summary.exit_code, summary.done_now) == ("interrupted", 130, 0)
    assert summary.lines < 3000  # the pass ended early
    assert reporter.report is None  # no table: the pre-flight did not finish
    assert sent(emulator) == 0
    assert out.read_bytes() == before  # OUT is not rewritten
    assert index_files(tmp_path) == []


@pytest.mark.asyncio
async def test_the_sending_pass_reads_the_worst_cases_of_the_preflight(
    tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "in.jsonl", [chat(i) for i in range(1, 6)])

    def counted_again(*_: object) -> None:
        pytest.fail("the sending pass estimated a line again")

    monkeypatch.setattr("quotaflow.batch._runner.estimate", counted_again)
    summary = await run_batch_file(options(tmp_path, emulator, max_cost=1.0))
    assert (summary.succeeded, summary.stopped, sent(emulator)) == (5, None, 5)
    assert 0 < summary.cost <= summary.estimated_cost
