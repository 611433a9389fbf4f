"""Keeping known state in a store, and sharing it between replicas: what polling needs of a store.

Polling defines the protocol (:class:`StateStore`); ``cdm_exporter.storage`` implements it with a
local SQLite file or with Redis, so polling imports neither. A store holds:

* **records** of known state (:mod:`cdm_exporter.polling.records`), one per target, cluster and
  job, keyed by :func:`record_key`; a new kind of state (project discovery's results, say) is one
  more kind of key, produced and taken back by its own :class:`RecordSource`, handed to the
  exporter with ``Exporter(record_sources={kind: source})``;
* the **rolling windows** of the API budget (:attr:`StateStore.windows`), so that a restarted
  process, or another replica, counts the calls already sent;
* **roles** (:meth:`StateStore.role`): a ``leader`` polls the API and writes what it knows, a
  ``follower`` polls nothing and serves what the leader wrote, and a replica ``alone`` (cut off
  from a shared store) polls on its share of the budget and neither reads nor writes. A file
  store always leads; with Redis, the replica holding the lease leads.

:class:`StateSync` is the one background thread between the exporter and its store. At start it
reads everything stored, before the first scrape. Then, every ``interval``: the leader writes the
records that changed since its last write (immutable job states make that an identity check), so
the store sees at most one write per interval and a scrape never waits for one; a follower reads
what the leader wrote since its last read and serves it. After a change of role a follower reads
everything and a new leader writes everything, so no copy drifts.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Literal, NamedTuple, Protocol

from cdm_exporter.polling.budget import WindowStore
from cdm_exporter.polling.records import Record

log = logging.getLogger(__name__)

#: what a process does with the API and the store (see the module docstring)
Role = Literal["leader", "follower", "alone"]

#: a record's key: its kind ("target", "cluster", "job", ...) and what names it
RecordKey = tuple[str, ...]


def record_key(key: RecordKey) -> str:
    """The store's name for ``key`` (JSON: names may hold any character)."""
    return json.dumps(list(key), ensure_ascii=False, separators=(",", ":"))


def parse_record_key(text: str) -> RecordKey | None:
    try:
        parts = json.loads(text)
    except ValueError:
        return None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        return None
    return tuple(parts)


class StoreError(Exception):
    """The store could not be read or written (its message names no secret)."""


class Changes(NamedTuple):
    """What a store holds, or what changed in it since a generation: ``None`` for a deleted key."""

    generation: int
    records: dict[str, Record | None]
    complete: bool  # every record of the store, not only changes


class StateStore(Protocol):
    """Where known state and the budget's windows outlive a process (and are shared)."""

    @property
    def windows(self) -> WindowStore | None:
        """The budget's rolling windows, or None to keep them in memory."""
        ...

    def load(self, since: int = 0) -> Changes:
        """Every record (``since`` 0), or those changed after generation ``since``."""
        ...

    def save(self, upserts: Mapping[str, Record], deletes: Collection[str]) -> None:
        """Write records and remove others, as one change."""
        ...

    def role(self) -> Role:
        """What this process does now; cheap, never blocks."""
        ...

    def up(self) -> bool:
        """Whether the store works (``cdm_exporter_storage_up``); cheap, never blocks."""
        ...

    def close(self) -> None: ...


#: a record's key, the object that tells whether it changed (compared by identity, then ==),
#: and how to make the record
RecordItem = tuple[RecordKey, object, Callable[[], Record]]


class RecordSource(Protocol):
    """State that goes to a store and comes back from it (the exporter: its targets' pollers)."""

    def records(self) -> Iterable[RecordItem]: ...

    def restore(self, records: Mapping[RecordKey, Record | None], *, complete: bool) -> None:
        """Take stored records over; ``complete``: they are all there is (forget the rest)."""
        ...


class StateSync:
    """The background thread between a :class:`RecordSource` and its :class:`StateStore`."""

    def __init__(
        self,
        store: StateStore,
        source: RecordSource,
        *,
        interval: float = 5.0,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._source = source
        self._interval = interval
        self._on_tick = on_tick
        self._written: dict[RecordKey, object] = {}  # what the store holds, as last written or read
        self._generation = 0
        self._role: Role | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one sync at a time (the thread, a final flush)
        self._thread: threading.Thread | None = None

    def restore(self) -> None:
        """Read everything stored and hand it to the source (at start, before serving); a store
        that cannot be read leaves the exporter to start from nothing, as without one."""
        with self._lock:
            try:
                self._read(complete=True)
            except StoreError:
                pass  # logged by _read; storage_up says it
            except Exception:  # a bug in reading back must not keep the exporter from starting
                log.exception("stored state could not be taken over; starting without it")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="state-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; a leader writes what changed one last time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 10.0)
        if self._store.role() == "leader":
            self.sync()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for work in (self.sync, self._on_tick):
                if work is None:
                    continue
                try:
                    work()
                except Exception:  # the thread must live on (a record that cannot be made, say)
                    log.exception("state sync: periodic work failed")

    def sync(self) -> None:
        """One step: a leader writes its changes, a follower reads the leader's; after a change
        of role, everything."""
        with self._lock:
            role = self._store.role()
            changed_role = role != self._role
            self._role = role
            try:
                if role == "leader":
                    self._write(everything=changed_role)
                elif role == "follower":
                    self._read(complete=changed_role)
            except StoreError as error:
                # the store reports it through up(); the next step retries
                log.debug("state sync failed", extra={"error": str(error)})
                self._role = None  # the next step starts over: a full write or read

    def _read(self, *, complete: bool) -> None:
        try:
            changes = self._store.load(0 if complete else self._generation)
        except StoreError as error:
            log.warning("cannot read the stored state", extra={"error": str(error)})
            raise
        records: dict[RecordKey, Record | None] = {}
        for text, record in changes.records.items():
            key = parse_record_key(text)
            if key is not None:
                records[key] = record
        if changes.complete:
            self._written = {key: None for key, record in records.items() if record is not None}
        else:
            for key, record in records.items():
                if record is None:
                    self._written.pop(key, None)
                else:
                    self._written[key] = None
        self._generation = changes.generation
        self._source.restore(records, complete=changes.complete)

    def _write(self, *, everything: bool) -> None:
        upserts: dict[RecordKey, Record] = {}
        tokens: dict[RecordKey, object] = {}
        for key, token, make in self._source.records():
            tokens[key] = token
            before = self._written.get(key)
            if everything or key not in self._written or (before is not token and before != token):
                upserts[key] = make()
        deletes = [key for key in self._written if key not in tokens]
        if not upserts and not deletes:
            return
        self._store.save({record_key(k): r for k, r in upserts.items()}, [record_key(k) for k in deletes])
        self._written = tokens
