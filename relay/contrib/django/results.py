"""Task outcomes in the Django database:
``RESULTS = "relay.contrib.django.results.DatabaseResults"``.

One store for relay's own ``@task`` and for Django's task framework run by
``relay.contrib.django.tasks.PubSubBackend``: any web process can read an
outcome by id, whichever worker wrote it. It needs ``relay.contrib.django`` in
``INSTALLED_APPS`` and its migration applied (``manage.py migrate``).

Why the database and not Django's cache framework: the default cache,
``LocMemCache``, is per process (a worker's write is invisible to the web
processes); any cache may evict an entry before the caller reads it; and a
database is what every Django project already has and every web process can
read. The price is a row per task: purge finished rows you no longer need.

Writes are safe against each other: records may arrive out of order (a
redelivered message's ``started`` after the first delivery's ``succeeded``),
and relay's ``TaskRecord.supersedes`` decides which one stays. Each write reads
the row, asks ``supersedes``, and updates it only if the row's ``version`` is
still the one it read (one conditional ``UPDATE``); on a conflict it reads
again and decides again. So a late ``started`` never overwrites a finished
task, on any database and isolation level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from relay.codec import Codec
from relay.errors import RelayError
from relay.results import ResultBackend, TaskRecord

if TYPE_CHECKING:
    from relay.contrib.django.models import StoredResult
    from relay.settings import Settings

#: Conflicting writes one ``write`` tolerates before it gives up.
MAX_CONFLICTS = 20


class StoreConflict(RelayError):
    """A record could not be written: the row kept changing under the write."""


def write(
    record: TaskRecord, update: Callable[[StoredResult], None] | None = None
) -> StoredResult | None:
    """Store ``record`` unless the stored one supersedes it; return the row written
    (None when the stored record won). ``update`` changes more columns of the row
    before it is written (Django's worker ids, arguments, traceback)."""
    from django.db import IntegrityError, transaction

    from relay.contrib.django.models import StoredResult

    for _ in range(MAX_CONFLICTS):
        row: StoredResult | None = StoredResult.objects.filter(pk=record.id).first()
        if row is not None and not record.supersedes(row.to_record()):
            return None
        fresh = row is None
        if row is None:
            row = StoredResult(id=record.id)
        seen = row.version
        row.apply(record)
        if update is not None:
            update(row)
        row.version = seen + 1
        if fresh:
            try:
                with transaction.atomic(using=StoredResult.objects.db):
                    row.save(force_insert=True)
            except IntegrityError:
                continue  # written meanwhile: read it and decide again
            return row
        changed = StoredResult.objects.filter(pk=record.id, version=seen).update(
            **row.column_values()
        )
        if changed:
            return row
    raise StoreConflict(
        f"the {record.status.value} record of task {record.task} ({record.id}) could not be "
        f"stored: the row changed {MAX_CONFLICTS} times while it was being written"
    )


class DatabaseResults(ResultBackend):
    """relay's ``ResultBackend`` on the Django database (``StoredResult`` rows).

    ``store`` keeps a record unless the stored one ``supersedes`` it (see the
    module docstring); ``get`` reads it. ``watch`` returns None: the worker
    needs no reply address, any process reads the row. ``wait`` polls ``get``.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        return None  # the Django database is configured by Django

    def store(self, record: TaskRecord, payload: bytes, reply_to: str | None) -> None:
        # The payload, not the record: what a caller elsewhere reads is the JSON
        # (a datetime result is its ISO string), and the row holds only JSON.
        write(TaskRecord.from_data(Codec.decode(payload)))

    def get(self, task_id: str) -> TaskRecord | None:
        from relay.contrib.django.models import StoredResult

        row: StoredResult | None = StoredResult.objects.filter(pk=task_id).first()
        return None if row is None else row.to_record()
