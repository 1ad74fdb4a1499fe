"""The database store of task outcomes: one row per task id (table ``relay_task_results``).

It holds the outcomes of relay's own ``@task`` (written through
``relay.contrib.django.results.DatabaseResults``) and of Django's task
framework run by ``relay.contrib.django.tasks.PubSubBackend`` (``backend`` is
then the ``TASKS`` alias). Rows are never deleted by relay: purge finished ones
when you no longer need them, e.g.
``StoredResult.objects.filter(finished_at__lt=cutoff).delete()``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import models

from relay.results import TaskRecord, TaskStatus


class StoredResult(models.Model):  # type: ignore[misc]
    """One task's latest known state, as relay's ``TaskRecord`` plus what Django's
    ``TaskResult`` adds (arguments, timestamps, traceback, worker ids)."""

    id = models.CharField(max_length=64, primary_key=True)
    #: relay's task name, or the module path of a Django task.
    task = models.CharField(max_length=255)
    #: The ``TASKS`` alias of a Django task; empty for relay's ``@task``.
    backend = models.CharField(max_length=100, blank=True, default="")
    queue_name = models.CharField(max_length=100, blank=True, default="")
    #: relay's ``TaskStatus``: pending, started, succeeded, failed.
    status = models.CharField(
        max_length=10, choices=[(s.value, s.value) for s in TaskStatus],
        default=TaskStatus.PENDING.value,
    )
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    result = models.JSONField(null=True)
    #: The exception class of a failure (Django's ``exception_class_path``).
    error_type = models.CharField(max_length=255, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    #: When the worker wrote this state (epoch seconds, its clock): ``supersedes`` orders by it.
    at = models.FloatField(default=0.0)
    attempt = models.PositiveIntegerField(null=True)
    worker_ids = models.JSONField(default=list)
    enqueued_at = models.DateTimeField(null=True)
    started_at = models.DateTimeField(null=True)
    last_attempted_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True, db_index=True)
    #: Bumped by every write: a write applies only to the version it read.
    version = models.PositiveIntegerField(default=0)

    class Meta:
        app_label = "relay"
        db_table = "relay_task_results"
        verbose_name = "task result"

    def __str__(self) -> str:
        return f"{self.task} ({self.id}): {self.status}"

    def to_record(self) -> TaskRecord:
        return TaskRecord(
            id=self.id, task=self.task, status=TaskStatus(self.status), result=self.result,
            error_type=self.error_type or None, error_message=self.error_message or None,
            at=self.at, attempt=self.attempt,
        )

    def apply(self, record: TaskRecord) -> None:
        """Take ``record``'s state; the timestamps follow its status (at ``record.at``)."""
        self.status = record.status.value
        if record.task:
            self.task = record.task
        self.result = record.result
        self.error_type = record.error_type or ""
        self.error_message = record.error_message or ""
        self.at = record.at
        self.attempt = record.attempt
        when = dt.datetime.fromtimestamp(record.at, dt.timezone.utc)
        if record.status is TaskStatus.STARTED:
            self.started_at = self.started_at or when
            self.last_attempted_at = when
        elif record.status.ready:
            self.finished_at = when

    def column_values(self) -> dict[str, Any]:
        """Every column but the key, for an ``UPDATE``."""
        return {
            f.attname: getattr(self, f.attname)
            for f in self._meta.concrete_fields if not f.primary_key
        }
