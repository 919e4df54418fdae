"""SQLite's write-ahead log is copied into the database file on a thread of its own.

By default, the commit that takes the log past 1,000 pages checkpoints before it returns: it copies
the log into the database file and fsyncs it. An ingest of the app then paid for the pages that a
rollup had written, in its own process or another. Here no connection checkpoints at commit
(``wal_autocheckpoint=0``, storage/dialects.py). After writes, this thread checkpoints instead,
with ``PASSIVE``, which never waits for readers or writers, and makes none of them wait.
"""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine

from trend.logging import get_logger

log = get_logger("storage")

# Commits within this long share one checkpoint; at SQLite's bulk ingest speed about 6 MB of log.
GATHER_S = 0.2
# A thread that saw no write this long ends, and the next write starts another.
IDLE_S = 5.0
# A smaller log is left alone, as SQLite's own threshold of 1,000 pages would: a checkpoint fsyncs.
MIN_LOG_BYTES = 4 << 20


class Checkpointer:
    """Checkpoints a database shortly after each burst of commits; :meth:`wrote` after each one."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._log = f"{engine.url.database}-wal"
        self._wrote = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def wrote(self) -> None:
        with self._lock:
            self._wrote.set()
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._run, name="trend-checkpoints", daemon=True)
                self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            thread = self._thread
            self._wrote.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            self._wrote.wait(IDLE_S)
            with self._lock:
                # Asked under the lock: a write that came just after the wait timed out is not missed.
                if self._closed.is_set() or not self._wrote.is_set():
                    self._thread = None
                    return
            if self._closed.wait(GATHER_S):
                continue  # closing: the last connection to close checkpoints by itself
            self._wrote.clear()
            self.checkpoint()

    def checkpoint(self) -> None:
        try:
            # The file keeps its size when SQLite starts the log over: this is its high-water mark.
            if os.path.getsize(self._log) < MIN_LOG_BYTES:
                return
        except OSError:
            return  # no log: the last connection closed, and checkpointed it
        try:
            with self._engine.connect() as conn:
                driver = conn.connection.dbapi_connection
                assert driver is not None
                # On the driver: SQLAlchemy would open a transaction first, and none may be open here.
                driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:  # the next burst of writes tries again; the log only grows meanwhile
            log.warning("checkpoint of the SQLite write-ahead log failed: %s", exc)
