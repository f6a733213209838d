"""quotaflow batch, offline parts: input lines, the index, resume scans, limits, settings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from quotaflow import ConfigurationError
from quotaflow.batch import _limits, _send
from quotaflow.batch._file_config import load_config
from quotaflow.batch._file_errors import OutputBusyError, OutputFormatError
from quotaflow.batch._index import DoneRecord, WorkIndex
from quotaflow.batch._input import (
    DEFAULT_MAX_TOKENS,
    InputDefaults,
    InvalidLine,
    RequestLine,
    line_hash,
    parse_line,
    read_lines,
)
from quotaflow.batch._limits import check_preset, scope_limits
from quotaflow.batch._options import BatchFileOptions
from quotaflow.batch._output import OutputWriter, error_record, is_final, success_record
from quotaflow.batch._resume import prepare_output, scan_output
from quotaflow.client._config import LIMIT_SHORTHANDS
from quotaflow.providers import Provider
from quotaflow.providers._bodies import MAX_BODY_BYTES

OPENAI = InputDefaults(Provider.OPENAI, model="gpt-4o-mini")
USER = [{"role": "user", "content": "hi"}]


def parse(data: object, defaults: InputDefaults = OPENAI, number: int = 7) -> RequestLine:
    text = data if isinstance(data, str) else json.dumps(data)
    parsed = parse_line(number, text, defaults)
    assert isinstance(parsed, RequestLine), parsed
    return parsed


def problem(data: object, defaults: InputDefaults = OPENAI, number: int = 7) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    parsed = parse_line(number, text, defaults)
    assert isinstance(parsed, InvalidLine), parsed
    assert parsed.line == number
    assert parsed.message.startswith(f"line {number}: ")
    return parsed.message


# Formats -------------------------------------------------------------------------------------


def test_openai_batch_lines_keep_their_id_url_and_body() -> None:
    body = {"model": "gpt-4o", "messages": USER, "max_completion_tokens": 30, "temperature": 0}
    line = parse({"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": body})
    assert (line.custom_id, line.url, line.path, line.model) == (
        "q1", "/v1/chat/completions", "/chat/completions", "gpt-4o",
    )  # fmt: skip
    assert line.body == body  # its own cap is kept, and no other is added


def test_responses_lines_need_an_input() -> None:
    line = parse({"custom_id": "r", "method": "POST", "url": "/v1/responses",
                  "body": {"input": "Say hi", "max_output_tokens": 9}})  # fmt: skip
    assert (line.path, line.model, line.body["max_output_tokens"]) == (
        "/responses", "gpt-4o-mini", 9,
    )  # fmt: skip
    assert "input must be" in problem(
        {"method": "POST", "url": "/v1/responses", "body": {"input": []}}
    )


def test_plain_lines_take_defaults_and_drop_their_id_from_the_body() -> None:
    defaults = InputDefaults(Provider.OPENAI, model="m1", max_tokens=55)
    line = parse({"id": 12, "messages": USER, "top_p": 0.5}, defaults)
    assert line.custom_id == "12"
    assert line.body == {"messages": USER, "top_p": 0.5, "model": "m1", "max_tokens": 55}
    assert line.url == "/v1/chat/completions"


def test_bare_lists_are_messages_with_a_line_id() -> None:
    line = parse(USER, number=3)
    assert line.custom_id == "line-3"
    assert line.body == {"messages": USER, "model": "gpt-4o-mini"}
    # no cap is invented for OpenAI without --max-cost


def test_a_budget_caps_every_body() -> None:
    defaults = InputDefaults(Provider.OPENAI, model="m", force_cap=True)
    assert parse(USER, defaults).body["max_tokens"] == DEFAULT_MAX_TOKENS


def test_anthropic_bodies_get_a_system_field_and_a_cap() -> None:
    defaults = InputDefaults(Provider.ANTHROPIC, model="claude-sonnet-4-5")
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    line = parse(messages, defaults)
    assert line.path == "/messages"
    assert line.body == {"messages": USER, "system": "Be brief.", "model": "claude-sonnet-4-5",
                         "max_tokens": DEFAULT_MAX_TOKENS}  # fmt: skip
    assert "not served by anthropic" in problem(
        {"method": "POST", "url": "/v1/chat/completions", "body": {"messages": USER}}, defaults
    )


def test_blank_lines_keep_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('[1]\n\n  \n{"a": 1}\n[2]', encoding="utf-8")
    assert list(read_lines(path)) == [(1, "[1]"), (4, '{"a": 1}'), (5, "[2]")]


def test_a_byte_order_mark_before_line_1_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    text = json.dumps(USER)
    path.write_bytes(b"\xef\xbb\xbf" + text.encode() + b"\r\n[2]\r\n")
    assert list(read_lines(path)) == [(1, text), (2, "[2]")]
    assert parse(text, number=1).line_hash == line_hash(text)


def test_lines_that_are_not_utf8_are_bad_lines_and_never_altered(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    good = json.dumps({"custom_id": "a", "messages": [{"role": "user", "content": "café"}]})
    bad = b'{"custom_id": "b", "messages": [{"role": "user", "content": "caf\xe9"}]}'
    path.write_bytes(good.encode() + b"\n" + bad + b"\n" + b"\xed\xa0\x80\n")
    lines = list(read_lines(path))
    assert [n for n, _ in lines] == [1, 2, 3]
    assert parse(lines[0][1], number=1).body["messages"][0]["content"] == "café"
    for number, text in lines[1:]:
        parsed = parse_line(number, text, OPENAI)
        assert isinstance(parsed, InvalidLine)
        assert (parsed.message, parsed.custom_id) == (f"line {number}: not UTF-8 text", None)
    # The hash is that of the bytes as they are: another bad byte is another line.
    other = bad.replace(b"\xe9", b"\xe8")
    path.write_bytes(other + b"\n")
    [(_, changed)] = read_lines(path)
    assert line_hash(changed) != line_hash(lines[1][1])
    assert line_hash(lines[1][1]) == hashlib.sha256(bad).hexdigest()[:16]


@pytest.mark.parametrize(
    "text",
    [
        '{"custom_id": "x\\ud800", "messages": [{"role": "user", "content": "hi"}]}',
        '{"custom_id": "a", "messages": "\\udc00"}',
        '[{"role": "user", "content": "a \\uDBFF b"}]',
    ],
)
def test_lone_surrogate_escapes_are_bad_lines(text: str) -> None:
    parsed = parse_line(5, text, OPENAI)
    assert isinstance(parsed, InvalidLine)
    assert parsed.message == "line 5: not valid UTF-8 text: a lone surrogate"
    assert parsed.custom_id is None  # nothing unencodable reaches the index or OUT


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    pair = parse('[{"role": "user", "content": "\\ud83d\\ude00"}]')
    assert pair.body["messages"][0]["content"] == "\U0001f600"
    text = parse('[{"role": "user", "content": "\\\\ud800"}]')
    assert text.body["messages"][0]["content"] == "\\ud800"


def test_every_line_has_the_hash_of_its_text() -> None:
    text = json.dumps(USER)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert parse(text).line_hash == digest == line_hash(text)
    broken = parse_line(3, "{", OPENAI)
    assert isinstance(broken, InvalidLine)
    assert broken.line_hash == line_hash("{")
    assert parse(json.dumps([{"role": "user", "content": "other"}])).line_hash != digest


# Bad lines -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"messages": [', "malformed JSON"),
        ('"text"', "expected a JSON object or a list of messages"),
        ("42", "expected a JSON object"),
        ({"model": "m"}, "messages must be a non-empty list"),
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": "hi"}, "messages must be a non-empty list"),
        ([1, 2], "messages[0] must be an object"),
        ([{"content": "x"}], "messages[0] needs a 'role'"),
        ([{"role": "user"}], "messages[0] has no 'content'"),
        ({"messages": USER, "model": 5}, "model must be a non-empty string"),
        ({"messages": USER, "stream": True}, "'stream' is not supported"),
        ({"messages": USER, "max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"messages": USER, "max_tokens": "9"}, "max_tokens must be a positive integer"),
        ({"custom_id": "", "messages": USER}, "custom_id must be a non-empty string"),
        ({"custom_id": ["x"], "messages": USER}, "custom_id must be a non-empty string"),
        ({"method": "GET", "url": "/v1/chat/completions", "body": {}}, "method must be 'POST'"),
        ({"method": "POST", "url": "/v1/embeddings", "body": {}}, "is not served by openai"),
        ({"method": "POST", "url": "/v1/chat/completions", "body": []}, "body must be a JSON"),
    ],
)
def test_every_bad_line_is_named_with_its_number(line: object, expected: str) -> None:
    assert expected in problem(line)


def test_a_line_without_a_model_needs_the_default() -> None:
    assert "no model" in problem(USER, InputDefaults(Provider.OPENAI))


def test_models_outside_the_allowed_set_are_unknown() -> None:
    defaults = InputDefaults(Provider.OPENAI, model="a", models=frozenset({"a", "b"}))
    assert parse(USER, defaults).model == "a"
    assert "unknown model 'c' (allowed: a, b)" in problem(
        {"messages": USER, "model": "c"}, defaults
    )


def test_a_bad_line_keeps_its_id_when_it_has_one() -> None:
    parsed = parse_line(2, json.dumps({"custom_id": "x", "messages": []}), OPENAI)
    assert isinstance(parsed, InvalidLine)
    assert parsed.custom_id == "x"
    broken = parse_line(3, "{", OPENAI)
    assert isinstance(broken, InvalidLine)
    assert broken.custom_id is None


# The index and OUT ---------------------------------------------------------------------------


def test_the_index_finds_duplicates_and_deletes_its_file(tmp_path: Path) -> None:
    with WorkIndex(tmp_path) as index:
        assert index.claim_id("a", 1) is None
        assert index.claim_id("a", 1) is None  # the same line again is no duplicate
        assert index.claim_id("a", 4) == 1
        index.add_record(2, DoneRecord("b", final=False, ordinal=0, ok=False))
        index.add_record(2, DoneRecord("b", final=True, ordinal=1, ok=True))
        index.add_record(2, DoneRecord("b", final=False, ordinal=2, ok=False))
        assert index.record_of(2) == DoneRecord("b", final=True, ordinal=1, ok=True)
        assert index.first_unmatched() == 2
        index.mark_matched(2)
        assert index.first_unmatched() is None
        path = index.path
        assert path.exists()
    assert not path.exists()


def _records(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def test_resume_cuts_a_partial_line_and_drops_records_to_redo(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    ok = success_record(1, "a", {"status_code": 200, "request_id": None, "body": {}})
    failed = error_record(2, "b", "server_error", "HTTP 500")
    bad = error_record(3, None, "invalid_input", "line 3: malformed JSON")
    out.write_bytes(_records(ok, failed, bad) + b'{"id": "batch_req_x", "cust')
    with WorkIndex(tmp_path) as index:
        state = scan_output(out, index, retry_failed=False)
        assert (state.records, state.settled, state.redo) == (3, 2, 1)
        assert state.partial_bytes == len(b'{"id": "batch_req_x", "cust')
        assert out.stat().st_size > len(_records(ok, failed, bad))  # scanning changes nothing
        prepare_output(out, index, state)
    assert out.read_bytes() == _records(ok, bad)


def test_retry_failed_redoes_every_failure(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(_records(error_record(1, "a", "invalid_request", "HTTP 400")))
    with WorkIndex(tmp_path) as index:
        assert scan_output(out, index, retry_failed=False).settled == 1
    with WorkIndex(tmp_path) as index:
        assert scan_output(out, index, retry_failed=True).redo == 1


def test_the_scan_keeps_each_records_hash_and_kind(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    ok = success_record(1, "a", {"status_code": 200}, "00aa")
    bad = error_record(2, None, "invalid_input", "line 2: malformed JSON", line_hash="11bb")
    old = error_record(3, "c", "invalid_request", "HTTP 400")
    del old["line_hash"]  # written before line_hash existed
    out.write_bytes(_records(ok, bad, old))
    with WorkIndex(tmp_path) as index:
        scan_output(out, index, retry_failed=False)
        ok_found = DoneRecord("a", final=True, ordinal=0, ok=True, line_hash="00aa")
        assert index.record_of(1) == ok_found
        assert index.record_of(2) == DoneRecord(
            None, final=True, ordinal=1, ok=False, line_hash="11bb", invalid_input=True
        )
        assert index.record_of(3) == DoneRecord("c", final=True, ordinal=2, ok=False)
        index.reopen(2)
        assert index.counts() == (2, 1)


def test_blank_lines_of_an_output_are_ignored(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    ok = success_record(1, "a", {"status_code": 200, "request_id": None, "body": {}})
    failed = error_record(2, "b", "server_error", "HTTP 500")
    out.write_bytes(_records(ok) + b"\n  \r\n" + _records(failed) + b"\n")
    with WorkIndex(tmp_path) as index:
        state = scan_output(out, index, retry_failed=False)
        assert (state.records, state.settled, state.redo, state.partial_bytes) == (2, 1, 1, 0)
        assert index.record_of(2) == DoneRecord("b", final=False, ordinal=1, ok=False)
        prepare_output(out, index, state)
    assert out.read_bytes() == _records(ok)


def test_a_record_with_a_lone_surrogate_is_written_with_ascii_escapes(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    body = {"choices": [{"message": {"content": "a\ud800 é"}}]}
    with OutputWriter(out) as writer:
        writer.write(success_record(1, "é", {"status_code": 200, "body": body}))
        writer.write(success_record(2, "é", {"status_code": 200, "body": {}}))
    first, second = out.read_bytes().splitlines()
    assert b"\\ud800" in first
    assert json.loads(first)["response"]["body"] == body
    assert "é".encode() in second  # UTF-8 text otherwise


def test_an_output_of_something_else_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"custom_id": "a", "response": null}\n', encoding="utf-8")
    with WorkIndex(tmp_path) as index, pytest.raises(OutputFormatError, match="line 1"):
        scan_output(out, index, retry_failed=False)


def test_final_and_redone_failures() -> None:
    def record(code: str, status: int | None = None) -> dict[str, Any]:
        response = None if status is None else {"status_code": status}
        return error_record(1, "a", code, "m", response)

    assert is_final(success_record(1, "a", {}))
    assert is_final(record("invalid_input"))
    assert is_final(record("invalid_request", 400))
    assert is_final(record("request_too_large", 429))
    assert not is_final(record("invalid_request", 401))  # the key, not the line
    assert not is_final(record("rate_limited", 429))
    assert not is_final(record("quota_exhausted"))
    assert not is_final(record("network"))
    assert not is_final(record("transport_error"))
    assert not is_final(record("invalid_request", 400), retry_failed=True)


# Limits, settings and options ----------------------------------------------------------------


def test_numbers_apply_to_every_model_of_the_provider() -> None:
    limits = scope_limits(Provider.OPENAI, {"rpm": 100, "tpm": 5000}, None, ["m"])
    assert list(limits) == ["openai:*"]
    assert [str(limit) for limit in limits["openai:*"]] == ["100 requests/min", "5000 tokens/min"]
    assert scope_limits(Provider.OPENAI, {}, None, ["m"]) == {}


def test_presets_are_per_model_and_numbers_override_them() -> None:
    limits = scope_limits(Provider.OPENAI, {"rpm": 7}, "openai:tier-3", ["gpt-4o-mini"])
    assert [str(limit) for limit in limits["openai:gpt-4o-mini"]] == [
        "7 requests/min", "4000000 tokens/min",
    ]  # fmt: skip
    assert [str(limit) for limit in limits["openai:*"]] == ["7 requests/min"]
    anthropic = scope_limits(Provider.ANTHROPIC, {}, "anthropic:2", ["claude-sonnet-4-5"])
    assert len(anthropic["anthropic:claude-sonnet-4-5"]) == 3
    assert check_preset("anthropic:build") == ("anthropic", "build")
    with pytest.raises(ConfigurationError, match="FAMILY:TIER"):
        check_preset("tier-3")
    with pytest.raises(ConfigurationError, match="no OpenAI preset"):
        scope_limits(Provider.OPENAI, {}, "openai:1", ["unknown-model"])


def test_config_files_are_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "batch.toml"
    path.write_text(
        'provider = "anthropic"\nmodels = "a, b"\nworkers = 3\nmax_cost = 2\nconcurrency = 4\n'
        "[limits]\nrpm = 50\n",
        encoding="utf-8",
    )
    assert load_config(path) == {
        "provider": "anthropic", "models": frozenset({"a", "b"}), "workers": 3,
        "max_cost": 2.0, "limits": {"rpm": 50, "concurrency": 4},
    }  # fmt: skip
    for text, message in [
        ("colour = 1", "unknown setting 'colour'"),
        ("[limits]\nrph = 1", "unknown limits rph"),
        ("workers = 'x'", "workers must be a whole number"),
        ("provider = 1", "provider must be a string"),
        ("= broken", "not valid TOML"),
    ]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigurationError, match=message):
            load_config(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"provider": "gemini"}, "provider must be one of"),
        ({"workers": 0}, "workers must be"),
        ({"limits": {"rph": 1}}, "unknown limit"),
        ({"limits": {"rpm": 0}}, "positive integer"),
        ({"max_cost": -1.0}, "max_cost must be"),
        ({"on_invalid": "skip"}, "on_invalid must be"),
        ({"preset": "openai"}, "FAMILY:TIER"),
        ({"grace": -1.0}, "grace must be"),
        ({"models": frozenset()}, "at least one model"),
        ({"output": "in.jsonl"}, "must not be the input"),
    ],
)
def test_bad_options_are_refused(changes: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"input": "in.jsonl", "output": "out.jsonl", **changes}
    with pytest.raises(ConfigurationError, match=message):
        BatchFileOptions(**settings)


def test_an_index_left_by_a_crashed_run_is_replaced_and_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".out.jsonl.index.sqlite"
    stale.write_bytes(b"left by a run that was killed")
    with WorkIndex(tmp_path, "out.jsonl") as index:
        assert index.path == stale
        index.add_invalid(1, None, "line 1: bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_two_runs_cannot_write_the_same_output(tmp_path: Path) -> None:
    with WorkIndex(tmp_path, "out.jsonl"), pytest.raises(OutputBusyError, match=r"out\.jsonl"):
        WorkIndex(tmp_path, "out.jsonl")
    with WorkIndex(tmp_path, "out.jsonl"):  # free again
        pass


def test_the_lock_is_beside_the_output_wherever_the_index_goes(tmp_path: Path) -> None:
    out_dir, first, second = tmp_path / "out", tmp_path / "index-1", tmp_path / "index-2"
    for folder in (out_dir, first, second):
        folder.mkdir()
    with WorkIndex(first, "out.jsonl", lock_folder=out_dir):
        assert (out_dir / ".out.jsonl.lock").exists()
        assert not (first / ".out.jsonl.lock").exists()
        with pytest.raises(OutputBusyError, match=r"out\.jsonl"):
            WorkIndex(second, "out.jsonl", lock_folder=out_dir)
    with WorkIndex(second, "out.jsonl", lock_folder=out_dir):  # free again
        pass
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_the_index_keeps_worst_cases_by_line_and_content(tmp_path: Path) -> None:
    with WorkIndex(tmp_path) as index:
        index.set_worst(1, "aa", 120)
        index.set_worst(2, None, 7)
        index.set_worst(3, "cc", None)  # unpriced
        assert (index.worst(1, "aa"), index.worst(2, None)) == (120, 7)
        assert index.worst(1, "bb") is None  # another content: not this line's
        assert index.worst(3, "cc") is None
        assert index.worst(4, "dd") is None


def test_compaction_keeps_the_first_settling_record_of_each_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    ok = success_record(1, "a", {"status_code": 200, "request_id": None, "body": {}})
    again = success_record(1, "a", {"status_code": 200, "request_id": None, "body": {"n": 2}})
    failed = error_record(2, "b", "server_error", "HTTP 500")
    before = error_record(3, "c", "server_error", "HTTP 500")
    bad = error_record(3, "c", "invalid_request", "HTTP 400", {"status_code": 400})
    out.write_bytes(_records(failed, ok) + b"\n" + _records(again, before, bad))
    with WorkIndex(tmp_path) as index:
        state = scan_output(out, index, retry_failed=False)
        assert list(index.settled_ordinals()) == [1, 4]
        prepare_output(out, index, state)
    assert out.read_bytes() == _records(ok, bad)


@pytest.mark.parametrize(
    ("preset", "provider", "message"),
    [
        ("openai:tier-9", "openai", "openai has no tier '9'"),
        ("openai:build", "openai", "no tier 'build'"),
        ("anthropic:tier-2", "openai", "is for anthropic, and the batch goes to openai"),
        ("openai:tier-1", "openrouter", "is for openai"),
        ("openrouter:paid", "openrouter", "openrouter has no tier 'paid'; known: free"),
        ("gemini:1", "openai", "FAMILY:TIER"),
    ],
)
def test_presets_are_checked_for_their_tier_and_provider(
    preset: str, provider: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        BatchFileOptions(input=Path("in.jsonl"), output=Path("out.jsonl"), provider=provider,
                         preset=preset)  # fmt: skip
    with pytest.raises(ConfigurationError, match=message):
        scope_limits(Provider.parse(provider), {}, preset, ["gpt-4o-mini"])


def test_the_known_tiers_are_those_of_the_preset_tables() -> None:
    samples = {
        "openai": ("gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo"),
        "anthropic": ("claude-sonnet-4-5", "claude-haiku-4-5"),
    }
    for family, tiers in _limits._TIERS.items():
        for tier in tiers:
            assert check_preset(f"{family}:{tier}") == (family, tier)
            if family == "openrouter":
                continue
            accepted = 0
            for model in samples[family]:
                try:
                    scope_limits(Provider.parse(family), {}, f"{family}:{tier}", [model])
                except ConfigurationError:
                    continue
                accepted += 1
            assert accepted, (family, tier)
    assert check_preset("openai:tier-3", Provider.OPENAI) == ("openai", 3)
    assert check_preset("OpenRouter:Free", Provider.OPENROUTER) == ("openrouter", "free")
    free = scope_limits(Provider.OPENROUTER, {}, "openrouter:free", ["m:free"])
    assert len(free["openrouter:m:free"]) == 2
    with pytest.raises(ConfigurationError, match="no published limits"):
        scope_limits(Provider.OPENAI, {}, "openai:free", ["gpt-4o-mini"])  # gpt-3.5-turbo only


def test_batch_limits_are_the_clients_shorthands() -> None:
    assert isinstance(LIMIT_SHORTHANDS, MappingProxyType)
    with pytest.raises(TypeError):
        LIMIT_SHORTHANDS["qps"] = LIMIT_SHORTHANDS["rps"]  # type: ignore[index]
    assert all(_limits._FACTORIES[n] is LIMIT_SHORTHANDS[n] for n in _limits.LIMIT_NAMES)
    _limits.check_limit_names(["rpm", "concurrency"])
    with pytest.raises(ConfigurationError, match=r"^where: unknown limits a, rps; use rpm"):
        _limits.check_limit_names(["rps", "a", "rpm"], "where: ")


def test_answers_are_decoded_once_whatever_their_size() -> None:
    big = {"choices": [{"message": {"content": "x" * (MAX_BODY_BYTES + 10)}}]}
    content = json.dumps(big).encode()
    assert _send._shown(_send._decoded(content), content) == big  # kept whole in its record
    assert _send._shown(_send._decoded(b'{"a": 1}'), b'{"a": 1}') == {"a": 1}
    html = b"<html>" + b"x" * 1000
    assert _send._shown(_send._decoded(html), html) == html.decode()[:500]
    assert _send._shown(_send._decoded(b"\xff oops"), b"\xff oops") == "\ufffd oops"
