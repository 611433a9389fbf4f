"""The embedded state store: one SQLite file (``--storage.path``) for one exporter process.

What it keeps: every record of known state (jobs with their last success and history read
times, clusters, targets; :mod:`cdm_exporter.polling.records`), and the API calls of the current
rolling minute per credential and policy, as wall-clock times (a monotonic clock does not survive
a restart).

How it writes:

* records in the background (:class:`~cdm_exporter.polling.persistence.StateSync`), only what
  changed, at most once per interval, never from a thread serving a scrape;
* the budget **ahead** of the calls: before a polling thread sends calls, its window reserves
  them in the file in blocks of :data:`RESERVE_BLOCK`, each slot stamped :data:`RESERVE_SECONDS`
  ahead and usable only until then. So the file never holds fewer calls, nor older ones, than
  were sent, even when the process is killed the next instant: a restarted process, however
  often it restarts, never spends what the previous ones already spent that minute. Each write
  (and a clean stop) replaces the reservations by the calls really sent.

A file that is not this store's (not SQLite, another application's database, a newer format) or
is corrupt is renamed ``<path>.corrupt-<UTC time>`` and set aside; a fresh file takes its place,
the error is logged, and ``cdm_exporter_storage_up`` reads 0 for :data:`SET_ASIDE_REPORT_SECONDS`
so that an alert can see it. Nothing else is lost: the exporter fetches what the file held.
Another process using the same file is refused at start: the file holds one process's budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from cdm_exporter.polling.budget import COUNTED_WINDOW_SECONDS, BudgetKey, RollingWindow
from cdm_exporter.polling.persistence import Changes, Role, StoreError
from cdm_exporter.polling.records import Record
from cdm_exporter.storage import window_name

log = logging.getLogger(__name__)

#: SQLite's application_id of a cdm-exporter state file ("CDMx"): another application's
#: database has another one
APPLICATION_ID = 0x43444D78
#: the file's format (PRAGMA user_version)
SCHEMA_VERSION = 1
#: calls reserved in the file at once, ahead of sending them
RESERVE_BLOCK = 5
#: how long a reserved slot may be used; its time in the file is when it stops being usable
RESERVE_SECONDS = 5.0
#: how long cdm_exporter_storage_up reads 0 after a file was set aside
SET_ASIDE_REPORT_SECONDS = 900.0

_SCHEMA = """
CREATE TABLE records (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE budget_calls (window TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX budget_calls_by_window ON budget_calls (window, at);
"""
_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class NotOurs(Exception):
    """The file is a database, but not a cdm-exporter state file of this format."""


class FileStore:
    """A :class:`~cdm_exporter.polling.persistence.StateStore` in one SQLite file.

    Raises :class:`StoreError` at construction when the file cannot be used at all (its
    directory is missing or not writable, another process holds it); a corrupt or foreign file
    is set aside instead.
    """

    def __init__(self, path: str | os.PathLike[str], *, wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._wall = wall
        self._lock = threading.RLock()  # one statement at a time on the one connection
        self._ok = True
        self._set_aside_at: float | None = None
        self._lock_file: IO[bytes] | None = None
        self._db = self._open()
        self._windows = FileWindows(self, wall)

    # --- opening -------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise StoreError(f"{self.path.parent} is not a directory")
        self._hold()
        try:
            return self._connect()
        except (sqlite3.DatabaseError, NotOurs) as error:
            self._set_aside(error)
        try:
            return self._connect()
        except (sqlite3.Error, NotOurs) as error:  # a fresh file that does not work
            raise StoreError(f"cannot create {self.path}: {error}") from None

    def _hold(self) -> None:
        """Lock the file for this process (released by the kernel however the process ends)."""
        if self._lock_file is not None:
            self._lock_file.close()
        try:
            handle = open(self.path, "ab")  # noqa: SIM115 - held open for the life of the store
        except OSError as error:
            raise StoreError(f"cannot open {self.path}: {error.strerror or error}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise StoreError(f"{self.path} is in use by another process") from None
        os.chmod(self.path, 0o600)  # job names and cluster ids are nobody else's business
        self._lock_file = handle

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)
        try:
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if application_id == 0 and version == 0 and tables == 0:  # a new file
                db.execute("PRAGMA journal_mode = WAL")
                db.executescript(
                    f"BEGIN; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID}; "
                    f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
            elif application_id != APPLICATION_ID:
                raise NotOurs("it is not a cdm-exporter state file (another application's database)")
            elif version != SCHEMA_VERSION:
                raise NotOurs(f"its format {version} is not {SCHEMA_VERSION} (another cdm-exporter version)")
            else:
                check = db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # a process crash loses nothing committed
        except BaseException:
            db.close()
            raise
        return db

    def _set_aside(self, error: BaseException) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._wall()))
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        moved = []
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                with contextlib.suppress(OSError):
                    source.rename(f"{aside}{suffix}")
                    moved.append(source.name)
        if not moved or self.path.exists():
            raise StoreError(f"{self.path} cannot be read ({error}) nor moved aside") from None
        log.error(
            "state file unreadable: set aside, starting with a fresh one; the state is fetched again",
            extra={"path": str(self.path), "set_aside_as": str(aside), "error": str(error)},
        )
        self._set_aside_at = self._wall()
        self._hold()  # the lock went with the old file

    # --- use -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a failure is a :class:`StoreError` and makes the store down,
        a corrupt file is set aside (the next write starts a fresh one)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                self._failed(error)
                raise StoreError(f"{self.path}: {error}") from None
            self._ok = True

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                rows = self._db.execute(sql, args).fetchall()
            except sqlite3.Error as error:
                self._failed(error)
                raise StoreError(f"{self.path}: {error}") from None
            self._ok = True
            return rows

    def _failed(self, error: sqlite3.Error) -> None:
        self._ok = False
        if getattr(error, "sqlite_errorcode", None) in _CORRUPT:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            try:
                self._set_aside(error)
                self._db = self._connect()
            except (StoreError, sqlite3.Error, NotOurs) as again:
                log.error(
                    "state file cannot be replaced", extra={"path": str(self.path), "error": str(again)}
                )
        else:
            log.warning("state file failed", extra={"path": str(self.path), "error": str(error)})

    # --- StateStore ------------------------------------------------------------------------------

    @property
    def windows(self) -> FileWindows:
        return self._windows

    def load(self, since: int = 0) -> Changes:
        """Every record: the file is no one else's, so there are never changes to catch up on."""
        records: dict[str, Record | None] = {}
        unreadable = 0
        for key, value in self._read("SELECT key, value FROM records"):
            try:
                record = json.loads(value)
            except ValueError:
                unreadable += 1
                continue
            records[key] = record if isinstance(record, dict) else None
        if unreadable:
            log.warning("stored records are not JSON; skipped", extra={"records": unreadable})
        return Changes(0, records, complete=True)

    def save(self, upserts: Mapping[str, Record], deletes: Collection[str]) -> None:
        rows = [(key, json.dumps(record, separators=(",", ":"))) for key, record in upserts.items()]
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO records (key, value) VALUES (?, ?)", rows)
            db.executemany("DELETE FROM records WHERE key = ?", [(key,) for key in deletes])
        self._windows.compact()

    def role(self) -> Role:
        return "leader"  # one process per file: it always polls

    def up(self) -> bool:
        recently_set_aside = (
            self._set_aside_at is not None and self._wall() - self._set_aside_at < SET_ASIDE_REPORT_SECONDS
        )
        return self._ok and not recently_set_aside

    def close(self) -> None:
        with contextlib.suppress(StoreError):
            self._windows.compact()
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    # --- the budget's calls ------------------------------------------------------------------------

    def window_calls(self, name: str, since: float) -> list[float]:
        return [
            row[0]
            for row in self._read("SELECT at FROM budget_calls WHERE window = ? AND at > ?", (name, since))
        ]

    def write_window(self, name: str, calls: Collection[float], *, replace: bool) -> None:
        """Add ``calls`` to window ``name`` (a reservation), or make them all it holds."""
        horizon = self._wall() - COUNTED_WINDOW_SECONDS
        with self._transaction() as db:
            if replace:
                db.execute("DELETE FROM budget_calls WHERE window = ?", (name,))
            else:
                db.execute("DELETE FROM budget_calls WHERE window = ? AND at <= ?", (name, horizon))
            db.executemany(
                "INSERT INTO budget_calls (window, at) VALUES (?, ?)", [(name, at) for at in calls]
            )


class FileWindow:
    """One budget key's rolling minute, reserved in the file ahead of the calls."""

    def __init__(self, store: FileStore, name: str, wall: Callable[[], float]) -> None:
        self._store = store
        self._name = name
        self._wall = wall
        self._lock = threading.Lock()
        now = wall()
        try:
            loaded = sorted(store.window_calls(name, now - COUNTED_WINDOW_SECONDS))
        except StoreError:
            loaded = []
        self._sent: deque[float] = deque(loaded)  # calls of the last minute, this process's and before
        self._spare: deque[float] = deque()  # reserved slots not used yet: when each stops being usable
        self._dirty = False  # reservations in the file that the calls really sent should replace

    def _prune(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - COUNTED_WINDOW_SECONDS:
            self._sent.popleft()
        while self._spare and self._spare[0] <= now:
            self._spare.popleft()

    def take(self, limit: float) -> bool:
        with self._lock:
            now = self._wall()
            self._prune(now)
            if len(self._sent) + 1 > limit:
                return False
            if not self._spare:
                count = max(1, min(RESERVE_BLOCK, int(limit - len(self._sent))))
                until = now + RESERVE_SECONDS
                try:
                    self._store.write_window(self._name, [until] * count, replace=False)
                except StoreError:
                    # the file is down: the call still counts in memory; storage_up says the rest
                    count = 1
                self._spare.extend([until] * count)
                self._dirty = True
            self._spare.popleft()
            self._sent.append(now)
            return True

    def give_back(self) -> None:
        with self._lock:
            if self._sent:
                self._sent.pop()  # its reserved slot stays spent in the file: never too few

    def room(self, limit: float) -> float:
        with self._lock:
            self._prune(self._wall())
            return limit - len(self._sent)

    def compact(self) -> None:
        """Replace the reservations in the file by the calls sent and the slots still usable."""
        with self._lock:
            if not self._dirty:
                return
            self._prune(self._wall())
            self._store.write_window(self._name, [*self._sent, *self._spare], replace=True)
            self._dirty = False


class FileWindows:
    """The :class:`~cdm_exporter.polling.budget.WindowStore` of a :class:`FileStore`."""

    def __init__(self, store: FileStore, wall: Callable[[], float] = time.time) -> None:
        self._store = store
        self._wall = wall
        self._windows: dict[str, FileWindow] = {}
        self._lock = threading.Lock()

    def window(self, key: BudgetKey) -> RollingWindow:
        name = window_name(key)
        with self._lock:
            window = self._windows.get(name)
            if window is None:
                window = self._windows[name] = FileWindow(self._store, name, self._wall)
            return window

    def compact(self) -> None:
        with self._lock:
            windows = list(self._windows.values())
        for window in windows:
            window.compact()
