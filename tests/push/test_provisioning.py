"""Provisioning push subscriptions: declaration checks, specs, plans, the pull/push
switch, verify mode (memory transport), and the push configuration on a real
emulator through both the ``pubsub`` and the ``grpc`` transports."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import pubsub_v1

from relay import ConfigurationError, ProvisioningError, Worker, sub
from relay import provisioning as prov
from relay.cli import EXIT_DIFFERS
from relay.subscription import Subscription
from relay.tasks import task
from relay.transports.base import ProvisionAction, SubscriptionSpec, Transport
from relay.transports.memory import MemoryTransport

from ..cli.conftest import Project
from ..cli.conftest import project as project  # the fixture
from ..unit.helpers import settings

ENDPOINT = "https://shop-xyz.a.run.app/pubsub"
PUSHER = "pusher@my-project.iam.gserviceaccount.com"


def handler(data: Any, **attrs: Any) -> None: ...


def declare(**options: Any) -> Subscription:
    return sub(topic="orders", **options)(handler)


# ------------------------------------------------------------- declaration
@pytest.mark.parametrize("endpoint", [
    ENDPOINT,
    "https://example.com:8443/push?token=1",
    "http://127.0.0.1:8080/push",
    "http://localhost/push",
    "http://[::1]:9000/push",
    "HTTPS://Example.COM/push",
])
def test_an_https_or_loopback_endpoint_is_accepted(endpoint: str) -> None:
    declared = declare(push_endpoint=endpoint)
    assert declared.push_endpoint == endpoint
    assert (declared.push_service_account, declared.push_audience) == ("", "")


@pytest.mark.parametrize(("endpoint", "says"), [
    ("http://example.com/push", "is http:// on host 'example.com'"),
    ("http://10.0.0.5/push", "is http:// on host '10.0.0.5'"),
    ("ftp://example.com/push", "is not an https:// URL"),
    ("example.com/push", "is not a URL"),
    ("https://", "is not a URL"),
    ("https://exa mple.com/x", "is not a URL"),
    ("https://example.com:port/x", "is not a valid URL"),
    (" https://example.com/x", "whitespace"),
])
def test_an_endpoint_pubsub_would_refuse_fails_at_declaration(endpoint: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        declare(push_endpoint=endpoint)
    text = str(info.value)
    assert repr(endpoint) in text
    assert says in text
    assert "handler" in text  # names the declaration
    if "whitespace" not in says:
        assert "https://" in text and "localhost, 127.0.0.1 or [::1]" in text


def test_the_service_account_must_look_like_an_email() -> None:
    with pytest.raises(ConfigurationError, match=r"push_service_account='pusher' is not a "
                       r"service account's email; write it like 'pusher@my-project\.iam"):
        declare(push_endpoint=ENDPOINT, push_service_account="pusher")
    with pytest.raises(ConfigurationError, match="is not a service account's email"):
        declare(push_endpoint=ENDPOINT, push_service_account="a@b@c.com")


def test_service_account_and_audience_need_an_endpoint_and_audience_a_service_account() -> None:
    with pytest.raises(ConfigurationError, match=r"push_service_account is set but "
                       r"push_endpoint is not.*add push_endpoint='https://\.\.\.'"):
        declare(push_service_account=PUSHER)
    with pytest.raises(ConfigurationError, match="push_audience is set but push_endpoint is not"):
        declare(push_audience="x")
    with pytest.raises(ConfigurationError, match=r"push_audience='aud' without "
                       r"push_service_account.*drop push_audience"):
        declare(push_endpoint=ENDPOINT, push_audience="aud")


def test_push_and_exactly_once_delivery_do_not_go_together() -> None:
    with pytest.raises(ConfigurationError, match="exactly-once delivery on pull subscriptions"):
        declare(push_endpoint=ENDPOINT, enable_exactly_once_delivery=True)


def test_a_push_option_of_the_wrong_type_is_named() -> None:
    with pytest.raises(ConfigurationError, match="push_endpoint must be a string, got 42"):
        declare(push_endpoint=42)


def test_task_takes_the_push_options_through_the_same_checks() -> None:
    @task("render", push_endpoint=ENDPOINT, push_service_account=PUSHER)
    def render(n: int) -> int:
        return n

    assert (render.push_endpoint, render.push_service_account) == (ENDPOINT, PUSHER)
    spec = prov.spec_for(render.resolve(settings()), settings())
    assert (spec.push_endpoint, spec.push_audience) == (ENDPOINT, ENDPOINT)
    with pytest.raises(ConfigurationError, match=r"is http:// on host 'example\.com'"):
        task("render", push_endpoint="http://example.com/x")(render.fn)
    moved = render.with_options(push_endpoint="https://other.example/x")
    assert moved.push_endpoint == "https://other.example/x"
    assert (moved.push_service_account, moved.ignore_result) == (PUSHER, False)


def test_unknown_option_errors_list_the_push_options() -> None:
    with pytest.raises(ConfigurationError, match="push_endpoint, push_service_account, "
                       "push_audience"):
        sub(topic="orders", push_url=ENDPOINT)


def test_with_options_keeps_the_push_config_and_checks_the_change() -> None:
    declared = declare(push_endpoint=ENDPOINT, push_service_account=PUSHER)
    assert declared.with_options(ack_deadline=30).push_service_account == PUSHER
    with pytest.raises(ConfigurationError, match="push_service_account is set but"):
        declared.with_options(push_endpoint=None)
    pulled = declared.with_options(push_endpoint=None, push_service_account=None)
    assert (pulled.push_endpoint, pulled.push_service_account) == ("", "")


# -------------------------------------------------------------------- specs
def spec(subscription: Subscription) -> SubscriptionSpec:
    return prov.spec_for(subscription.resolve(settings()), settings())


def test_spec_for_carries_the_push_config_and_the_default_audience() -> None:
    pull = spec(declare())
    assert (pull.push_endpoint, pull.push_service_account, pull.push_audience) == ("", "", "")
    assert not pull.is_push
    unauthenticated = spec(declare(push_endpoint=ENDPOINT))
    assert unauthenticated.is_push and unauthenticated.push_audience == ""
    defaulted = spec(declare(push_endpoint=ENDPOINT, push_service_account=PUSHER))
    assert (defaulted.push_service_account, defaulted.push_audience) == (PUSHER, ENDPOINT)
    explicit = spec(declare(push_endpoint=ENDPOINT, push_service_account=PUSHER,
                            push_audience="shop-push"))
    assert explicit.push_audience == "shop-push"


# -------------------------------------------------------------------- plans
def plan_lines(transport: Transport, *subs: Subscription) -> list[str]:
    resolved = [s.resolve(settings()) for s in subs]
    return prov.plan(transport, prov.desired(resolved, settings())).render().splitlines()


def provisioned(*subs: Subscription) -> MemoryTransport:
    transport = MemoryTransport()
    Worker(list(subs), settings=settings(), transport=transport).setup()
    return transport


def test_plan_shows_a_push_subscription_to_create() -> None:
    lines = plan_lines(MemoryTransport(), declare(push_endpoint=ENDPOINT,
                                                  push_service_account=PUSHER))
    assert lines == [
        "+ topic orders",
        "+ subscription orders",
        "    topic: 'orders'",
        "    ack_deadline: 60",
        "    retry_policy: 10s..600s",
        f"    push: endpoint {ENDPOINT!r}, service account {PUSHER!r}, audience {ENDPOINT!r}",
        "Plan: 2 to create, 0 to update, 0 conflict(s), 0 unchanged.",
    ]


def test_plan_shows_the_switch_from_pull_to_push_before_it_happens() -> None:
    transport = provisioned(declare())
    wanted = declare(push_endpoint=ENDPOINT, push_service_account=PUSHER, ack_deadline=30)
    lines = plan_lines(transport, wanted)
    assert lines[1:] == [
        "~ subscription orders",
        f"    switch pull -> push (endpoint {ENDPOINT!r}, service account {PUSHER!r}, "
        f"audience {ENDPOINT!r})",
        "    ack_deadline: 60 -> 30",
        "Plan: 0 to create, 1 to update, 0 conflict(s), 1 unchanged.",
    ]
    assert not transport.get_subscription("orders").is_push  # plan changed nothing


def test_plan_shows_the_switch_from_push_to_pull() -> None:
    transport = provisioned(declare(push_endpoint=ENDPOINT))
    assert plan_lines(transport, declare())[1:] == [
        "~ subscription orders",
        f"    switch push -> pull (stop pushing to {ENDPOINT!r}; messages wait for a pull "
        "worker)",
        "Plan: 0 to create, 1 to update, 0 conflict(s), 1 unchanged.",
    ]


def test_plan_shows_a_changed_endpoint_and_the_audience_that_follows_it() -> None:
    transport = provisioned(declare(push_endpoint=ENDPOINT, push_service_account=PUSHER))
    moved = "https://shop-abc.a.run.app/pubsub"
    lines = plan_lines(transport, declare(push_endpoint=moved, push_service_account=PUSHER))
    assert lines[1:] == [
        "~ subscription orders",
        f"    push_endpoint: {ENDPOINT!r} -> {moved!r}",
        f"    push_audience: {ENDPOINT!r} -> {moved!r}",
        "Plan: 0 to create, 1 to update, 0 conflict(s), 1 unchanged.",
    ]
    pinned = declare(push_endpoint=moved, push_service_account=PUSHER, push_audience=ENDPOINT)
    assert plan_lines(transport, pinned)[2:-1] == [f"    push_endpoint: {ENDPOINT!r} -> {moved!r}"]


def test_an_audience_left_to_pubsubs_default_is_not_a_difference() -> None:
    transport = MemoryTransport()
    transport.ensure_topic("orders")
    # As gcloud creates it, without --push-auth-token-audience: Pub/Sub reports no audience.
    transport.create_subscription(SubscriptionSpec(
        "orders", "orders", retry_policy=settings().default_retry_policy,
        push_endpoint=ENDPOINT, push_service_account=PUSHER,
    ))
    declared = declare(push_endpoint=ENDPOINT, push_service_account=PUSHER)
    assert plan_lines(transport, declared)[-1].endswith("0 to update, 0 conflict(s), 2 unchanged.")


# ---------------------------------------------------------------- applying
def test_provisioning_applies_each_change_and_a_second_plan_is_in_sync(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = provisioned(declare())
    steps = [
        declare(push_endpoint=ENDPOINT, push_service_account=PUSHER),
        declare(push_endpoint="https://shop-abc.a.run.app/pubsub", push_service_account=PUSHER),
        declare(push_endpoint="https://shop-abc.a.run.app/pubsub", push_service_account=PUSHER,
                push_audience="shop"),
        declare(),
    ]
    for wanted in steps:
        with caplog.at_level(logging.WARNING, logger="relay.provisioning"):
            caplog.clear()
            (result,) = Worker([wanted], settings=settings(), transport=transport).setup()
        assert result.action is ProvisionAction.UPDATED
        expected = spec(wanted)
        current = transport.get_subscription("orders")
        assert (current.push_endpoint, current.push_service_account, current.push_audience) == (
            expected.push_endpoint, expected.push_service_account, expected.push_audience)
        resolved = [wanted.resolve(settings())]
        assert prov.plan(transport, prov.desired(resolved, settings())).in_sync
        switched = [r.getMessage() for r in caplog.records if "switch" in r.getMessage()]
        if wanted is steps[0]:
            assert switched == [f"subscription orders: switch pull -> push (endpoint "
                                f"{ENDPOINT!r}, service account {PUSHER!r}, audience "
                                f"{ENDPOINT!r})"]
        elif wanted is steps[-1]:
            assert switched == ["subscription orders: switch push -> pull (stop pushing to "
                                "'https://shop-abc.a.run.app/pubsub'; messages wait for a pull "
                                "worker)"]
        else:
            assert switched == []
    assert "push_audience" in result.changed and "push_endpoint" in result.changed


def test_verify_mode_reports_push_drift_and_changes_nothing() -> None:
    transport = provisioned(declare())
    wanted = declare(push_endpoint=ENDPOINT, push_service_account=PUSHER)
    worker = Worker([wanted], settings=settings(provisioning="verify"), transport=transport)
    with pytest.raises(ProvisioningError, match=r"subscription orders differs: switch pull -> "
                       r"push \(endpoint 'https://shop-xyz\.a\.run\.app/pubsub'"):
        worker.setup()
    assert not transport.get_subscription("orders").is_push

    Worker([wanted], settings=settings(), transport=transport).setup()
    assert Worker([wanted], settings=settings(provisioning="verify"),
                  transport=transport).setup()[0].action is ProvisionAction.UNCHANGED
    moved = declare(push_endpoint=ENDPOINT, push_service_account="other@p.iam.gserviceaccount.com")
    with pytest.raises(ProvisioningError, match=r"push_service_account: "
                       r"'pusher@my-project\.iam\.gserviceaccount\.com' -> "
                       r"'other@p\.iam\.gserviceaccount\.com'"):
        Worker([moved], settings=settings(provisioning="verify"), transport=transport).setup()


# ------------------------------------------------------------ on the emulator
@pytest.fixture(params=["pubsub", "grpc"])
def emulator_transport(request: pytest.FixtureRequest) -> Any:
    make: Callable[..., tuple[Any, Any]] = request.getfixturevalue(
        f"make_{request.param}_transport"
    )
    built, _ = make(default_retry_policy=None)
    return built


def _read_push_config(name: str) -> Any:
    """The push config as Google's own client reads it (not through relay)."""
    client = pubsub_v1.SubscriberClient()
    try:
        return client.get_subscription(
            subscription=f"projects/relay-tests/subscriptions/{name}"
        ).push_config
    finally:
        client.close()


def test_push_config_round_trips_through_the_emulator(
    emulator_transport: Any, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("push-orders")
    # Nothing is published: the emulator never tries to deliver to these endpoints.
    first, moved = "http://127.0.0.1:9/push", "http://localhost:9/pubsub"
    transport = emulator_transport
    sets = transport.settings

    def setup(wanted: Subscription) -> prov.ProvisionResult:
        (result,) = Worker([wanted], settings=sets, transport=transport).setup()
        resolved = [wanted.resolve(sets)]
        assert prov.plan(transport, prov.desired(resolved, sets)).in_sync
        return result

    pushed = sub(topic=topic, push_endpoint=first, push_service_account=PUSHER)(handler)
    assert setup(pushed).action is ProvisionAction.CREATED
    config = _read_push_config(topic)
    assert config.push_endpoint == first
    assert config.oidc_token.service_account_email == PUSHER
    assert config.oidc_token.audience == first
    current = transport.get_subscription(topic)
    assert (current.push_endpoint, current.push_service_account, current.push_audience) == (
        first, PUSHER, first)

    retargeted = pushed.with_options(push_endpoint=moved, push_audience="shop")
    result = setup(retargeted)
    assert result.action is ProvisionAction.UPDATED
    assert set(result.changed) == {"push_endpoint", "push_audience"}
    config = _read_push_config(topic)
    assert (config.push_endpoint, config.oidc_token.audience) == (moved, "shop")

    pulled = sub(topic=topic)(handler)
    plan = prov.plan(transport, prov.desired([pulled.resolve(sets)], sets))
    assert plan.steps[-1].details[0].startswith(f"switch push -> pull (stop pushing to {moved!r}")
    assert setup(pulled).action is ProvisionAction.UPDATED
    assert _read_push_config(topic).push_endpoint == ""
    assert not transport.get_subscription(topic).is_push

    unauthenticated = sub(topic=topic, push_endpoint=first)(handler)
    assert setup(unauthenticated).action is ProvisionAction.UPDATED
    config = _read_push_config(topic)
    assert config.push_endpoint == first
    assert not config.oidc_token.service_account_email
    assert transport.get_subscription(topic).push_service_account == ""


def test_relay_cli_plan_shows_the_switch_to_push_on_the_emulator(
    project: Project, pubsub_emulator: Any, unique_name: Callable[[str], str],
    make_pubsub_transport: Callable[..., tuple[Any, Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.address)  # project cleared it
    topic = unique_name("cli-push")
    transport, _ = make_pubsub_transport()
    pulled = sub(topic=topic)(handler)
    Worker([pulled], settings=transport.settings, transport=transport).setup()
    project.write("subs.py", f"""
        from relay import sub

        @sub(topic="{topic}", push_endpoint="http://127.0.0.1:9/push",
             push_service_account="{PUSHER}")
        def handle(data, **attrs):
            pass
        """)
    env = {"RELAY_TRANSPORT": "pubsub", "RELAY_GC_PROJECT_ID": "relay-tests",
           "PUBSUB_EMULATOR_HOST": pubsub_emulator.address}
    done = project.cli("plan", "--check", "--changes-only", env=env)
    assert done.returncode == EXIT_DIFFERS, done.stderr
    assert done.stdout.splitlines() == [
        f"~ subscription {topic}",
        f"    switch pull -> push (endpoint 'http://127.0.0.1:9/push', service account "
        f"{PUSHER!r}, audience 'http://127.0.0.1:9/push')",
        "Plan: 0 to create, 1 to update, 0 conflict(s), 1 unchanged.",
    ]
    assert not transport.get_subscription(topic).is_push  # plan changed nothing
