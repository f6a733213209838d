"""The run's on-disk index: what OUT already holds, which ids were seen, which lines are bad.

A throwaway SQLite file (stdlib ``sqlite3``), so that memory stays flat for any input size:
nothing per line is kept in Python. It is rebuilt from OUT by every run, next to OUT (or in a
given folder), and deleted when the run ends; one left by a crashed run is replaced. A lock
file beside OUT (``flock``, where the platform has it; wherever the index goes) keeps two runs
off the same OUT.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import IO, Final, NamedTuple, Self

from quotaflow.batch._file_errors import OutputBusyError

#: ``flock`` where the platform has it (not on Windows: runs there are not locked).
_FCNTL: ModuleType | None = (
    importlib.import_module("fcntl") if importlib.util.find_spec("fcntl") else None
)

__all__ = ["DoneRecord", "WorkIndex"]

_SCHEMA: Final = """
CREATE TABLE done (
    line INTEGER PRIMARY KEY, custom_id TEXT, final INTEGER NOT NULL, ok INTEGER NOT NULL,
    ordinal INTEGER NOT NULL, matched INTEGER NOT NULL DEFAULT 0, line_hash TEXT,
    invalid_input INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE ids (custom_id TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE invalid (line INTEGER PRIMARY KEY, message TEXT NOT NULL, custom_id TEXT);
CREATE TABLE worst (line INTEGER PRIMARY KEY, line_hash TEXT, cost INTEGER);
"""
_COMMIT_EVERY: Final = 10_000
_LOCK_ATTEMPTS: Final = 5


class DoneRecord(NamedTuple):
    """What OUT holds for a line.

    Attributes:
        custom_id: the record's id.
        final: the line is done for good (skipped).
        ordinal: which record of OUT it is (from 0).
        ok: the record is a success.
        line_hash: the hash of the line it was written for (``None`` in older records).
        invalid_input: the record is that of a bad line (code ``invalid_input``).
    """

    custom_id: str | None
    final: bool
    ordinal: int
    ok: bool
    line_hash: str | None = None
    invalid_input: bool = False


class WorkIndex:
    """The SQLite index of one run; a context manager that deletes its file on exit.

    Args:
        folder: where to create the file (OUT's folder, so that a huge index does not fill
            a RAM-backed ``/tmp``).
        stem: a name to recognise the file by (OUT's name).
        lock_folder: where the lock file goes (default: ``folder``). A run passes OUT's
            folder, so that the lock protects OUT wherever the index is.
    """

    def __init__(
        self, folder: Path, stem: str = "batch", *, lock_folder: Path | None = None
    ) -> None:
        self._lock_path = (folder if lock_folder is None else lock_folder) / f".{stem}.lock"
        self._lock = _lock(self._lock_path, stem)
        self.path = folder / f".{stem}.index.sqlite"
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a run that crashed: OUT is the record, not this
        self._db = sqlite3.connect(self.path)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE;" + _SCHEMA
        )
        self._pending = 0

    # Records found in OUT -------------------------------------------------------------------------

    def add_record(self, line: int, record: DoneRecord) -> None:
        """Note OUT's ``record`` for ``line``; the first final record wins over the others."""
        self._db.execute(
            "INSERT INTO done (line, custom_id, final, ordinal, ok, line_hash, invalid_input) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(line) DO UPDATE SET custom_id = excluded.custom_id, "
            "final = excluded.final, ordinal = excluded.ordinal, ok = excluded.ok, "
            "line_hash = excluded.line_hash, invalid_input = excluded.invalid_input "
            "WHERE done.final = 0",
            (
                line, record.custom_id, int(record.final), record.ordinal, int(record.ok),
                record.line_hash, int(record.invalid_input),
            ),
        )  # fmt: skip
        self._tick()

    def record_of(self, line: int) -> DoneRecord | None:
        """What OUT holds for ``line``, or ``None``."""
        row = self._db.execute(
            "SELECT custom_id, final, ordinal, ok, line_hash, invalid_input FROM done "
            "WHERE line = ?",
            (line,),
        ).fetchone()
        if row is None:
            return None
        return DoneRecord(row[0], bool(row[1]), row[2], bool(row[3]), row[4], bool(row[5]))

    def reopen(self, line: int) -> None:
        """Make ``line`` one to do again (its record no longer settles it, and is removed)."""
        self._db.execute("UPDATE done SET final = 0 WHERE line = ?", (line,))
        self._tick()

    def mark_matched(self, line: int) -> None:
        """Note that the input still has ``line``."""
        self._db.execute("UPDATE done SET matched = 1 WHERE line = ?", (line,))
        self._tick()

    def first_unmatched(self) -> int | None:
        """The first line OUT has a record for that the input no longer has."""
        row = self._db.execute("SELECT min(line) FROM done WHERE matched = 0").fetchone()
        return None if row is None else row[0]

    def settled_ordinals(self) -> Iterator[int]:
        """The ordinals of OUT's records that settle their lines, in order.

        Nothing may be written to the index while this is iterated.
        """
        query = "SELECT ordinal FROM done WHERE final = 1 ORDER BY ordinal"
        for (ordinal,) in self._db.execute(query):
            yield ordinal

    def counts(self) -> tuple[int, int]:
        """Lines of OUT done for good, and lines with only a failure to redo."""
        row = self._db.execute("SELECT sum(final), count(*) - sum(final) FROM done").fetchone()
        return (row[0] or 0, row[1] or 0)

    # Ids and invalid lines ------------------------------------------------------------------------

    def claim_id(self, custom_id: str, line: int) -> int | None:
        """Claim ``custom_id`` for ``line``: ``None``, or the line that claimed it first."""
        row = self._db.execute("SELECT line FROM ids WHERE custom_id = ?", (custom_id,)).fetchone()
        if row is not None:
            first: int = row[0]
            return None if first == line else first
        self._db.execute("INSERT INTO ids (custom_id, line) VALUES (?, ?)", (custom_id, line))
        self._tick()
        return None

    def add_invalid(self, line: int, custom_id: str | None, message: str) -> None:
        """Note that ``line`` is invalid and why."""
        self._db.execute(
            "INSERT OR REPLACE INTO invalid (line, message, custom_id) VALUES (?, ?, ?)",
            (line, message, custom_id),
        )
        self._tick()

    def invalid(self, line: int) -> tuple[str | None, str] | None:
        """``(custom_id, message)`` if ``line`` is invalid, else ``None``."""
        row = self._db.execute(
            "SELECT custom_id, message FROM invalid WHERE line = ?", (line,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    # Worst-case costs (under --max-cost) ----------------------------------------------------------

    def set_worst(self, line: int, line_hash: str | None, cost: int | None) -> None:
        """Note the worst-case cost of ``line`` (``None``: unpriced), as the pre-flight found it."""
        self._db.execute(
            "INSERT OR REPLACE INTO worst (line, line_hash, cost) VALUES (?, ?, ?)",
            (line, line_hash, cost),
        )
        self._tick()

    def worst(self, line: int, line_hash: str | None) -> int | None:
        """The worst-case cost noted for ``line`` with this content; ``None``: none is known."""
        row = self._db.execute(
            "SELECT cost FROM worst WHERE line = ? AND line_hash IS ?", (line, line_hash)
        ).fetchone()
        return None if row is None else row[0]

    # Lifecycle ------------------------------------------------------------------------------------

    def commit(self) -> None:
        """Write what is pending (the file is a scratch file: this bounds the journal)."""
        self._db.commit()
        self._pending = 0

    def _tick(self) -> None:
        self._pending += 1
        if self._pending >= _COMMIT_EVERY:
            self.commit()

    def close(self) -> None:
        """Close the database, delete its file, and release the lock."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self._lock_path.unlink()
        self._lock.close()  # closing the file releases the lock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _lock(path: Path, stem: str) -> IO[bytes]:
    """Open and lock ``path``; :class:`OutputBusyError` if another run holds it.

    The holder deletes the file when it is done, so a lock taken on a file that was deleted
    meanwhile is worth nothing: the file is then opened again.
    """
    for _ in range(_LOCK_ATTEMPTS):
        handle = path.open("ab")
        if _FCNTL is None:
            return handle
        try:
            _FCNTL.flock(handle.fileno(), _FCNTL.LOCK_EX | _FCNTL.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise OutputBusyError(
                f"another quotaflow batch run is writing {stem} (lock {path})"
            ) from None
        try:
            if path.stat().st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()  # the holder deleted it as we locked it: try the new one
    raise OutputBusyError(f"could not lock {path}: other runs keep replacing it")
