"""Task outcomes in SQLite: a store the web processes and the worker all reach.

relay's Pub/Sub replies (``RESULTS="pubsub"``) deliver an outcome only to the
process that sent the task, while it holds the handle. A web app polls from a
later request, perhaps served by another process, so it needs a store any
process can read by id: here a SQLite file; in production, your database.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

from relay.codec import Codec
from relay.results import ResultBackend, TaskRecord


class SQLiteResults(ResultBackend):
    """One row per task id, holding its latest record as JSON."""

    def __init__(self, path: str) -> None:
        self.path = path
        with closing(self._connect()) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS task_results (id TEXT PRIMARY KEY, record TEXT)"
            )

    def _connect(self) -> sqlite3.Connection:
        # One connection per call: safe on any handler thread, nothing to close.
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def store(self, record: TaskRecord, payload: bytes, reply_to: str | None) -> None:
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")  # read and write as one, across processes
            try:
                current = self._read(db, record.id)
                if record.supersedes(current):  # records may arrive out of order
                    db.execute(
                        "INSERT OR REPLACE INTO task_results (id, record) VALUES (?, ?)",
                        (record.id, payload.decode()),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def get(self, task_id: str) -> TaskRecord | None:
        with closing(self._connect()) as db:
            return self._read(db, task_id)

    @staticmethod
    def _read(db: sqlite3.Connection, task_id: str) -> TaskRecord | None:
        row = db.execute("SELECT record FROM task_results WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else TaskRecord.from_data(Codec.decode(row[0].encode()))
