import relay


def test_all_is_exactly_the_public_api() -> None:
    assert sorted(relay.__all__) == sorted(
        [
            "RESERVED_NAMES", "AckError", "Action", "App", "BaseMiddleware",
            "ConfigurationError", "DeadLetterPolicy", "DecodeError", "EncodeError",
            "FilterError", "ProvisioningError", "SkipMessage", "UnrecoverableError",
            "Message", "MiddlewareChain", "Outcome", "OutgoingMessage",
            "PublishError", "Publisher", "RelayError", "RetryPolicy", "Settings", "Status",
            "Subscription", "TransportError", "Worker", "__version__", "configure", "get_app",
            "get_publisher", "publish", "reset", "set_app", "set_publisher", "sub",
            "task", "Task", "AsyncResult", "TaskFailed", "TaskStatus",
            "apublish", "publish_many", "apublish_many", "Item", "Published",
            "PublishResults", "BatchPublishError", "PublisherFull",
        ]
    )
    for name in relay.__all__:
        assert hasattr(relay, name), name


def test_what_users_catch_is_importable_from_relay() -> None:
    from relay.budget import PublisherFull
    from relay.errors import UnrecoverableError

    assert relay.PublisherFull is PublisherFull
    assert relay.UnrecoverableError is UnrecoverableError
    assert issubclass(relay.PublisherFull, BufferError)


def test_configuration_error_is_a_value_error() -> None:
    assert issubclass(relay.ConfigurationError, ValueError)
    assert issubclass(relay.ConfigurationError, relay.RelayError)


def test_only_the_transport_packages_import_google() -> None:
    import re
    from pathlib import Path

    package = Path(relay.__file__).parent
    importers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if re.search(r"^\s*(from|import) google\b", path.read_text(), re.M)
    )
    # Cloud Storage (bucket notifications) has its own one package, which never
    # touches Pub/Sub's client: that stays behind the transport.
    storage = [p for p in importers if p.startswith("contrib/storage/")]
    pubsub = re.compile(r"^\s*(from|import) google\b[^\n]*pubsub", re.M)
    assert not [p for p in storage if pubsub.search((package / p).read_text())], storage
    importers = [p for p in importers if p not in storage]
    # relay's Pub/Sub server speaks the service's protocol with google's protobuf
    # types (google.pubsub_v1, google.iam, google.rpc, google.protobuf), never its
    # client (google.cloud.pubsub_v1 and the rest of google.cloud).
    server = [p for p in importers if p.startswith("server/")]
    allowed = re.compile(r"google\.(pubsub_v1|iam|rpc|protobuf)\b")
    imports = re.compile(r"^\s*(?:from|import) google\b[^\n]*", re.M)
    for p in server:
        for line in imports.findall((package / p).read_text()):
            assert allowed.search(line) and "google.cloud" not in line, (p, line)
    importers = [p for p in importers if p not in server]
    # Push delivery verifies Pub/Sub's OIDC tokens with google-auth, nothing else.
    push = [p for p in importers if p.startswith("push/")]
    for p in push:
        for line in imports.findall((package / p).read_text()):
            assert "google.auth" in line and "google.cloud" not in line, (p, line)
    importers = [p for p in importers if p not in push]
    # The transports on google's client (pubsub/) and on its generated gRPC layer
    # (grpc/) are the only other places that import google.
    assert importers and all(
        p.startswith(("transports/pubsub/", "transports/grpc/")) for p in importers
    ), importers
