"""The run's on-disk index: what OUT already holds, which ids were seen, which lines are bad.

A throwaway SQLite file (stdlib ``sqlite3``), so that memory stays flat for any input size:
nothing per line is kept in Python. It is rebuilt from OUT by every run, next to OUT (or in a
given folder), and deleted when the run ends; one left by a crashed run is replaced. A lock
file beside it (``flock``, where the platform has it) keeps two runs off the same OUT.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import IO, Final, NamedTuple, Self

from quotaflow.batch._file_errors import OutputBusyError

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows: no lock)
    fcntl = None  # type: ignore[assignment]

__all__ = ["DoneRecord", "WorkIndex"]

_SCHEMA: Final = """
CREATE TABLE done (
    line INTEGER PRIMARY KEY, custom_id TEXT, final INTEGER NOT NULL, ok INTEGER NOT NULL,
    ordinal INTEGER NOT NULL, matched INTEGER NOT NULL DEFAULT 0, line_hash TEXT,
    invalid_input INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE ids (custom_id TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE invalid (line INTEGER PRIMARY KEY, message TEXT NOT NULL, custom_id TEXT);
"""
_COMMIT_EVERY: Final = 10_000


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
        stem: a name to recognise the file by.
    """

    def __init__(self, folder: Path, stem: str = "batch") -> None:
        self._lock_path = folder / f".{stem}.lock"
        self._lock = _lock(self._lock_path, stem)
        self.path = folder / f".{stem}.index.sqlite"
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a run that crashed: OUT is the record, not this
        self._db = sqlite3.connect(self.path)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE;" + _SCHEMA
        )
        self._pending = 0

    # Records found in OUT -------------------------------------------------------------------

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

    def counts(self) -> tuple[int, int]:
        """Lines of OUT done for good, and lines with only a failure to redo."""
        row = self._db.execute("SELECT sum(final), count(*) - sum(final) FROM done").fetchone()
        return (row[0] or 0, row[1] or 0)

    # Ids and invalid lines -------------------------------------------------------------------

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

    # Lifecycle -------------------------------------------------------------------------------

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
    """Open and lock ``path``; :class:`OutputBusyError` if another run holds it."""
    handle = path.open("ab")
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise OutputBusyError(
                f"another quotaflow batch run is writing {stem} (lock {path})"
            ) from None
    return handle
