"""``DatabaseResults``: relay's own ``@task`` outcomes in the Django database, and
records that arrive out of order or at once (``TaskRecord.supersedes``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import TaskFailed, TaskStatus, UnrecoverableError, task
from relay.codec import Codec
from relay.results import TaskRecord
from relay.testing import memory_app

RESULTS = "relay.contrib.django.results.DatabaseResults"


@task
def multiply(x: int, y: int) -> int:
    return x * y


@task
def out_of_stock(sku: str) -> None:
    raise UnrecoverableError(f"{sku} is out of stock")  # fails the task: no redelivery


@pytest.fixture
def store(django_project: Path) -> Iterator[object]:
    from relay.contrib.django.models import StoredResult
    from relay.contrib.django.results import DatabaseResults

    yield DatabaseResults()
    StoredResult.objects.all().delete()


def put(store: object, record: TaskRecord) -> None:
    from relay.contrib.django.results import DatabaseResults

    assert isinstance(store, DatabaseResults)
    store.store(record, Codec().encode(record.to_data()), None)


def test_relay_tasks_keep_their_outcomes_in_the_database(store: object) -> None:
    from relay.contrib.django.models import StoredResult
    from relay.contrib.django.results import DatabaseResults

    with memory_app(RESULTS=RESULTS) as env:
        product = multiply.delay(6, 7)
        failing = out_of_stock.delay("sku-9")
        env.deliver([multiply, out_of_stock], raise_errors=False)
        assert product.result(timeout=5) == 42
        with pytest.raises(TaskFailed, match="UnrecoverableError: sku-9 is out of stock"):
            failing.result(timeout=5)

    record = DatabaseResults().get(product.id)  # another backend instance: only the table
    assert record is not None and record.status is TaskStatus.SUCCEEDED and record.result == 42
    row = StoredResult.objects.get(pk=product.id)
    assert row.task == multiply.task_name and row.backend == ""
    assert row.started_at is not None and row.finished_at is not None
    assert row.started_at <= row.finished_at


def test_a_late_record_does_not_overwrite_a_finished_one(store: object) -> None:
    from relay.contrib.django.results import DatabaseResults

    assert isinstance(store, DatabaseResults)
    done = TaskRecord("t1", "shop.subs.pack", TaskStatus.SUCCEEDED, result="packed", at=10.0)
    put(store, done)
    put(store, TaskRecord("t1", "shop.subs.pack", TaskStatus.STARTED, at=20.0))  # late
    assert store.get("t1") == done

    put(store, TaskRecord("t2", "shop.subs.pack", TaskStatus.STARTED, at=6.0, attempt=2))
    put(store, TaskRecord("t2", "shop.subs.pack", TaskStatus.STARTED, at=5.0, attempt=1))
    kept = store.get("t2")
    assert kept is not None and kept.attempt == 2  # the later of two unfinished records

    put(store, TaskRecord("t2", "shop.subs.pack", TaskStatus.FAILED, error_type="OSError",
                          error_message="disk full", at=1.0))  # finished beats unfinished
    failed = store.get("t2")
    assert failed is not None and failed.status is TaskStatus.FAILED
    assert failed.error_message == "disk full"
    assert store.get("unknown") is None


@pytest.mark.parametrize("stored_before", [True, False], ids=["row-exists", "no-row-yet"])
def test_a_write_racing_a_finished_record_does_not_overwrite_it(
    store: object, stored_before: bool
) -> None:
    from relay.contrib.django.results import write

    finished = TaskRecord("race", "shop.subs.pack", TaskStatus.SUCCEEDED, result="won", at=1.0)
    if stored_before:
        put(store, TaskRecord("race", "shop.subs.pack", TaskStatus.STARTED, at=0.5))
    raced: list[bool] = []

    def meanwhile(row: object) -> None:
        # Runs after write() read the row and chose to write: another worker
        # finishes the task in between, as a concurrent delivery would.
        if not raced:
            raced.append(True)
            put(store, finished)

    late = TaskRecord("race", "shop.subs.pack", TaskStatus.STARTED, at=100.0)
    assert write(late, meanwhile) is None  # it read again and saw the finished record
    assert raced == [True]
    assert store.get("race") == finished  # type: ignore[attr-defined]
