"""``showsubscriptions``, ``relayplan`` and ``runrelay``'s failures, through
``call_command`` on the test project (the plan on the memory transport, chosen
with ``RELAY_TRANSPORT`` as a deployment would choose any setting)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.usefixtures("django_project")


@pytest.fixture
def reinstall() -> Iterator[None]:
    """``runrelay`` replaces relay's process-wide app and drops it at the end, as
    ``relay-cli run`` does; put the project's back afterwards."""
    yield
    from relay.contrib.django.apps import install

    install()


def call(name: str, *args: str) -> tuple[str, str]:
    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_showsubscriptions_lists_the_subs_and_tasks_of_installed_apps() -> None:
    out, err = call("showsubscriptions")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["NAME", "TOPIC", "FILTERS", "HANDLER", "MODE"]
    rows = {row[3]: row for row in lines[1:]}
    shop = "tests.contrib.django.project.shop"
    assert rows[f"{shop}.subs.store_order"][:3] == ["djt-shop-orders", "djt-shop-orders", "-"]
    assert rows[f"{shop}.tasks.count_orders"][0] == "djt-shop-count-orders"
    # relay's own app is not searched as an app: its tasks module is the
    # django.tasks backend, asked for its subscriptions instead.
    backend = [h for h in rows if h.startswith("relay.contrib.django.tasks.")]
    assert len(backend) == len(rows) - 2
    assert err == ""


def test_relayplan_shows_what_runrelay_would_create_and_check_exits_3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.core.management.base import CommandError

    monkeypatch.setenv("RELAY_TRANSPORT", "memory")
    out, _ = call("relayplan")
    assert "+ topic djt-shop-orders" in out
    assert "+ subscription djt-shop-count-orders\n    topic: 'djt-shop-count-orders'" in out
    assert "0 unchanged." in out.splitlines()[-1]

    with pytest.raises(CommandError) as raised:
        call("relayplan", "--check", "--changes-only")
    assert raised.value.returncode == 3
    assert "Pub/Sub differs from the code" in str(raised.value)


@pytest.mark.usefixtures("reinstall")
def test_runrelay_with_a_bad_relay_variable_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    monkeypatch.setenv("RELAY_ACK_DEADLIN", "30")
    err = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("runrelay", stderr=err)
    assert raised.value.returncode == 2
    line = err.getvalue()
    assert line.startswith("manage.py runrelay: error: relay settings: unknown environment "
                           "variable 'RELAY_ACK_DEADLIN'")
    assert "Fix it in settings.RELAY" in line


@pytest.mark.usefixtures("reinstall")
def test_runrelay_verify_on_empty_pubsub_exits_1_listing_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    monkeypatch.setenv("RELAY_TRANSPORT", "memory")
    err = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("runrelay", "--provisioning", "verify", "--log-level", "ERROR", stderr=err)
    assert raised.value.returncode == 1
    assert "a runtime failure" in str(raised.value)
    assert err.getvalue().startswith("manage.py runrelay: error: ")
    assert "djt-shop-orders" in err.getvalue()
