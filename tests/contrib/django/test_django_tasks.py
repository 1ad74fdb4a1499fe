"""Django's task framework on relay (``PubSubBackend``): enqueue, a worker runs the
task, ``get_result`` reads it from the database; failures, Django's own checks,
the wire version, redeliveries, and a worker in another process on the emulator."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import relay
from relay import Action, ConfigurationError, Settings, UnrecoverableError
from relay.contrib.django import tasks as backend_module
from relay.contrib.django.tasks import (
    InvalidTask,
    InvalidTaskBackend,
    PubSubBackend,
    TaskResultDoesNotExist,
    backend_subscriptions,
)
from relay.errors import TransportError
from relay.testing import MemoryEnvironment, memory_app

MANAGE = Path(__file__).parent / "project" / "manage.py"
BACKEND = "relay.contrib.django.tasks.PubSubBackend"


@pytest.fixture
def billing(django_project: Path) -> Iterator[ModuleType]:
    """The billing app's Django tasks; the result rows are deleted afterwards."""
    from relay.contrib.django.models import StoredResult
    from tests.contrib.django.project.billing import tasks

    yield tasks
    StoredResult.objects.all().delete()


@pytest.fixture
def env(billing: ModuleType) -> Iterator[MemoryEnvironment]:
    with memory_app() as environment:
        yield environment


def status(result: Any) -> str:
    return str(result.status.value)


def test_an_enqueued_task_runs_on_a_worker_and_get_result_reads_its_outcome(
    billing: ModuleType, env: MemoryEnvironment, wait_for: Callable[..., Any]
) -> None:
    with env.worker(backend_subscriptions()):
        total = billing.invoice_total.enqueue([1, 2, 3], tax=4)
        report = billing.monthly_report.enqueue("2026-11")  # async def, queue "reports"
        assert status(total) == "READY" and total.enqueued_at is not None

        def finished() -> bool:
            total.refresh()
            report.refresh()
            return bool(total.is_finished and report.is_finished)

        wait_for(finished, timeout=10, what="both tasks to finish")

    sent = {r.topic: r for r in env.published}
    assert set(sent) == {"django-tasks-default", "django-tasks-reports"}
    call = sent["django-tasks-default"]
    assert call.attributes["django_task"] == "1"
    assert call.attributes["django_task_id"] == total.id
    assert call.attributes["django_task_path"] == billing.invoice_total.module_path
    fetched = billing.invoice_total.get_result(total.id)  # a fresh read, as another process
    assert status(fetched) == "SUCCESSFUL"
    assert fetched.return_value == {"total": 10}
    assert fetched.args == [[1, 2, 3]] and fetched.kwargs == {"tax": 4}
    assert fetched.enqueued_at <= fetched.started_at <= fetched.finished_at
    assert fetched.worker_ids == [f"{socket.gethostname()}:{os.getpid()}"]
    assert fetched.errors == []
    assert status(report) == "SUCCESSFUL" and report.return_value == "report for 2026-11"
    assert report.task.queue_name == "reports"


def test_a_failing_task_is_failed_with_its_exception_class_and_traceback_then_acked(
    billing: ModuleType, env: MemoryEnvironment
) -> None:
    result = billing.charge.enqueue("4242")
    [outcome] = env.deliver(backend_subscriptions())
    assert outcome.action is Action.ACK  # recorded, then acked: not redelivered

    failed = billing.charge.get_result(result.id)
    assert status(failed) == "FAILED" and failed.is_finished
    [error] = failed.errors
    assert error.exception_class is billing.CardDeclined
    assert error.exception_class_path == f"{billing.__name__}.CardDeclined"
    assert "Traceback (most recent call last)" in error.traceback
    assert "CardDeclined: card 4242 declined" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        failed.return_value  # noqa: B018


def test_djangos_checks_refuse_bad_calls_before_anything_is_written_or_sent(
    billing: ModuleType, env: MemoryEnvironment
) -> None:
    from django.utils import timezone

    from relay.contrib.django.models import StoredResult

    with pytest.raises(TypeError, match="Unsupported type"):
        billing.invoice_total.enqueue([object()])
    with pytest.raises(InvalidTask, match="Queue 'nightly' is not valid"):
        billing.invoice_total.using(queue_name="nightly")
    with pytest.raises(InvalidTask, match="priority"):
        billing.invoice_total.using(priority=10)
    with pytest.raises(InvalidTask, match="run_after"):
        billing.invoice_total.using(run_after=timezone.now())  # supports_defer is False
    assert env.published == []
    assert not StoredResult.objects.exists()


def test_a_message_in_another_wire_version_or_without_one_is_refused_not_run(
    billing: ModuleType, env: MemoryEnvironment
) -> None:
    from relay.contrib.django.models import StoredResult

    call = {"args": [[1]], "kwargs": {}}
    path = billing.invoice_total.module_path
    relay.publish("django-tasks-default", call, django_task="2", django_task_id="a" * 32,
                  django_task_path=path)
    relay.publish("django-tasks-default", call)  # e.g. sent with gcloud, by hand
    outcomes = env.deliver(backend_subscriptions(), raise_errors=False)

    assert [o.action for o in outcomes] == [Action.ACK, Action.ACK]  # no dead-letter topic
    assert all(isinstance(o.exception, UnrecoverableError) for o in outcomes)
    assert "wire format version '2' and this worker reads version 1" in str(outcomes[0].exception)
    assert "has no 'django_task' attribute" in str(outcomes[1].exception)
    assert not StoredResult.objects.exists()  # nothing ran, nothing recorded


def test_a_redelivery_of_a_finished_task_is_acked_without_running_it_again(
    billing: ModuleType, env: MemoryEnvironment
) -> None:
    result = billing.attempt_number.enqueue()  # takes_context: returns context.attempt
    env.deliver(backend_subscriptions())
    [sent] = env.published
    env.transport.publish(sent.topic, sent.data, sent.attributes)  # Pub/Sub delivers twice
    [again] = env.deliver(backend_subscriptions())

    assert again.action is Action.ACK
    done = billing.attempt_number.get_result(result.id)
    assert status(done) == "SUCCESSFUL" and done.return_value == 1
    assert len(done.worker_ids) == 1  # it ran once


def test_a_publish_that_fails_after_enqueue_makes_the_result_failed(
    billing: ModuleType, env: MemoryEnvironment
) -> None:
    env.transport.fail_publishes = TransportError("Pub/Sub is unreachable")
    result = billing.invoice_total.enqueue([1])
    result.refresh()
    assert status(result) == "FAILED"
    assert result.errors[0].exception_class is TransportError
    assert "Pub/Sub is unreachable" in result.errors[0].traceback


def test_aenqueue_and_aget_result(billing: ModuleType, env: MemoryEnvironment) -> None:
    result = asyncio.run(billing.invoice_total.aenqueue([7]))
    env.deliver(backend_subscriptions())
    fetched = asyncio.run(billing.invoice_total.aget_result(result.id))
    assert fetched.return_value == {"total": 7}


def test_get_result_of_an_id_it_does_not_hold(billing: ModuleType, env: MemoryEnvironment) -> None:
    from relay.contrib.django.results import DatabaseResults
    from relay.results import TaskRecord, TaskStatus

    with pytest.raises(TaskResultDoesNotExist):
        billing.invoice_total.get_result("no-such-id")
    # A relay @task's record in the same table is not a Django task result.
    DatabaseResults().store(*_record(TaskRecord("r" * 32, "shop.subs.add", TaskStatus.STARTED)))
    with pytest.raises(TaskResultDoesNotExist):
        billing.invoice_total.get_result("r" * 32)


def _record(record: Any) -> tuple[Any, bytes, None]:
    from relay.codec import Codec

    return record, Codec().encode(record.to_data()), None


def test_a_worker_records_a_task_it_cannot_import_as_failed(
    billing: ModuleType, env: MemoryEnvironment
) -> None:
    path = f"{billing.__name__}.not_a_task"
    relay.publish("django-tasks-default", {"args": []}, django_task="1",
                  django_task_id="b" * 32, django_task_path=path)
    [outcome] = env.deliver(backend_subscriptions())

    from relay.contrib.django.results import DatabaseResults

    record = DatabaseResults().get("b" * 32)
    assert outcome.action is Action.ACK
    assert record is not None and record.status == "failed"
    assert record.error_type == f"{InvalidTask.__module__}.{InvalidTask.__qualname__}"
    assert record.error_message == f"{path} is a str, not a task: decorate the function with " \
        f"@task from {backend_module._PACKAGE}"


def test_backend_options_are_checked_and_name_topics_per_queue(django_project: Path) -> None:
    from django.test import override_settings

    def build(**params: Any) -> PubSubBackend:
        return PubSubBackend("extra", {"BACKEND": BACKEND, **params})

    with pytest.raises(InvalidTaskBackend, match="QUEUES is empty"):
        build(QUEUES=[])
    with pytest.raises(InvalidTaskBackend, match="unknown OPTIONS COLOUR"):
        build(QUEUES=["a1"], OPTIONS={"COLOUR": "red"})
    with pytest.raises(InvalidTaskBackend, match=r"same topic; put \{queue\} in it"):
        build(QUEUES=["a1", "b1"], OPTIONS={"TOPIC": "all-tasks"})
    with pytest.raises(InvalidTaskBackend, match="queue 'bad queue' cannot be a topic"):
        build(QUEUES=["bad queue"])
    with pytest.raises(InvalidTaskBackend, match="ack_deadline"):
        build(QUEUES=["a1"], OPTIONS={"SUBSCRIPTION": {"ack_deadline": 5}})

    named = build(QUEUES=["mail", "pdf"], OPTIONS={
        "TOPIC": "tasks-{alias}-{queue}", "SUBSCRIPTION": {"dead_letter_topic": "tasks-dead"},
    })
    subs = [s.resolve(Settings(topic_prefix="staging-")) for s in named.subscriptions()]
    assert [s.full_topic for s in subs] == ["staging-tasks-extra-mail", "staging-tasks-extra-pdf"]
    assert all(s.dead_letter is not None for s in subs)
    assert [s.topic for s in backend_subscriptions()] == [
        "django-tasks-default", "django-tasks-reports",
    ]
    twins = {alias: {"BACKEND": BACKEND, "QUEUES": ["default"]} for alias in ("default", "eu")}
    with override_settings(TASKS=twins), pytest.raises(
        ConfigurationError, match=r"TASKS\['default'\] and TASKS\['eu'\] both use topic"
    ):
        backend_subscriptions()


def test_the_checked_in_migration_matches_the_model(django_project: Path) -> None:
    from django.core.management import call_command

    call_command("makemigrations", "relay", check=True, dry_run=True, verbosity=0)


# ------------------------------------------------------------ cross-process
@pytest.mark.emulator
@pytest.mark.timeout(120)
def test_a_task_enqueued_here_runs_in_a_runrelay_process_and_its_result_is_read_here(
    billing: ModuleType, pubsub_emulator: Any, unique_name: Callable[[str], str],
    wait_for: Callable[..., Any], tmp_path: Path,
) -> None:
    from django.conf import settings

    prefix = unique_name("djt") + "-"
    log_path = tmp_path / "runrelay.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, str(MANAGE), "runrelay"], stdout=subprocess.PIPE, stderr=log,
            text=True, env={**os.environ, "TEST_PROJECT_TOPIC_PREFIX": prefix},
        )
    # This process publishes to the emulator with the worker's prefix; the
    # project's process-wide app is put back afterwards.
    app = relay.App(Settings.from_object(settings, environ={}, TOPIC_PREFIX=prefix))
    previous = relay.set_app(app)
    try:
        assert worker.stdout is not None
        for line in worker.stdout:  # the ready line comes once its subscriptions exist
            if line.startswith("manage.py runrelay: worker running"):
                break
        else:
            pytest.fail(f"runrelay exited: {log_path.read_text()}")
        total = billing.invoice_total.enqueue([5, 6], tax=1)
        charge = billing.charge.enqueue("4000")

        def finished() -> bool:
            total.refresh()
            charge.refresh()
            return bool(total.is_finished and charge.is_finished)

        wait_for(finished, timeout=60, what="the runrelay process to run both tasks")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        if worker.stdout is not None:
            worker.stdout.close()
        relay.set_app(previous)
        app.close()
    assert status(total) == "SUCCESSFUL" and total.return_value == {"total": 12}
    assert total.worker_ids == [f"{socket.gethostname()}:{worker.pid}"]  # the other process
    assert status(charge) == "FAILED"
    assert charge.errors[0].exception_class is billing.CardDeclined
    assert worker.returncode == 0, log_path.read_text()
