"""Resuming: what OUT already holds, read into the index before a run.

A record settles its line when it is a success or a final failure (see
:func:`~quotaflow.batch._output.is_final`); those lines are skipped. A line whose only record
is a failure to redo is sent again: its old record is removed from OUT first (OUT is rewritten
through a temporary file and an atomic rename), so that every line ends as exactly one record.
A partially written last line (a crash mid-write) is cut away and its line redone. Blank lines
of OUT are ignored (and dropped when OUT is rewritten).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from quotaflow.batch._file_errors import OutputFormatError
from quotaflow.batch._index import DoneRecord, WorkIndex
from quotaflow.batch._output import is_final, is_invalid_input

__all__ = ["ResumeState", "prepare_output", "scan_output", "with_counts"]


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What OUT held when the run started.

    Attributes:
        records: complete records found.
        settled: lines done for good (skipped if the input still has them).
        redo: lines whose failure is sent again (their records are removed from OUT).
        partial_bytes: bytes of an unfinished last line, cut away (or that a real run would
            cut, in a dry run).
    """

    records: int = 0
    settled: int = 0
    redo: int = 0
    partial_bytes: int = 0


def scan_output(path: Path, index: WorkIndex, *, retry_failed: bool) -> ResumeState:
    """Read OUT's records into ``index`` (OUT is not changed).

    Raises:
        OutputFormatError: a complete line of OUT is not a record of ``quotaflow batch``.
    """
    if not path.exists():
        return ResumeState()
    records, complete_size = 0, 0
    with path.open("rb") as file:
        for raw in file:
            if not raw.endswith(b"\n"):
                break
            complete_size += len(raw)
            if raw.isspace():
                continue
            _add(index, path, records, raw, retry_failed=retry_failed)
            records += 1
        total_size = file.seek(0, os.SEEK_END)
    index.commit()
    settled, redo = index.counts()
    return ResumeState(records, settled, redo, total_size - complete_size)


def prepare_output(path: Path, index: WorkIndex, state: ResumeState) -> None:
    """Cut OUT's unfinished last line, and remove the records of lines to redo.

    ``state`` must count the lines the pre-flight reopened (see :func:`with_counts`).
    """
    if state.partial_bytes:
        with path.open("r+b") as file:
            file.truncate(file.seek(0, os.SEEK_END) - state.partial_bytes)
    if state.records > state.settled:
        _compact(path, index)


def with_counts(state: ResumeState, index: WorkIndex) -> ResumeState:
    """``state`` with the index's current counts (after the pre-flight reopened lines)."""
    settled, redo = index.counts()
    return replace(state, settled=settled, redo=redo)


def _add(index: WorkIndex, path: Path, ordinal: int, raw: bytes, *, retry_failed: bool) -> None:
    try:
        record: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        record = None
    line = record.get("line") if isinstance(record, dict) else None
    custom_id = record.get("custom_id") if isinstance(record, dict) else None
    if (
        not isinstance(record, dict)
        or isinstance(line, bool)
        or not isinstance(line, int)
        or line < 1
        or not (custom_id is None or isinstance(custom_id, str))
        or "error" not in record
    ):
        raise OutputFormatError(
            f"{path}, line {ordinal + 1}: not a record of 'quotaflow batch' (each needs "
            "'line', 'custom_id' and 'error'); pass another output file"
        )
    final = is_final(record, retry_failed=retry_failed)
    digest = record.get("line_hash")
    found = DoneRecord(
        custom_id, final, ordinal, record["error"] is None,
        digest if isinstance(digest, str) else None, is_invalid_input(record),
    )  # fmt: skip
    index.add_record(line, found)


def _compact(path: Path, index: WorkIndex) -> None:
    """Rewrite OUT with only the records that settle their lines, atomically."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as target, path.open("rb") as source:
            _copy_settled(source, target, index)
            target.flush()
            os.fsync(target.fileno())
        Path(name).chmod(path.stat().st_mode & 0o7777)
        Path(name).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(name).unlink()
        raise


def _copy_settled(source: IO[bytes], target: IO[bytes], index: WorkIndex) -> None:
    """Copy the records that settle their lines, found by their ordinals (OUT was parsed once)."""
    keep = index.settled_ordinals()
    wanted = next(keep, None)
    ordinal = -1
    for raw in source:
        if wanted is None:
            return
        if raw.isspace():
            continue
        ordinal += 1
        if ordinal == wanted:
            target.write(raw)
            wanted = next(keep, None)
