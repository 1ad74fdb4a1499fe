import relay


def test_all_is_exactly_the_public_api() -> None:
    assert sorted(relay.__all__) == sorted(
        [
            "RESERVED_NAMES", "AckError", "Action", "App", "BaseMiddleware",
            "ConfigurationError", "DeadLetterPolicy", "DecodeError", "ProvisioningError",
            "Message", "MiddlewareChain", "Outcome", "OutgoingMessage",
            "PublishError", "Publisher", "RelayError", "RetryPolicy", "Settings", "Status",
            "Subscription", "TransportError", "Worker", "__version__", "configure", "get_app",
            "get_publisher", "publish", "reset", "set_app", "set_publisher", "sub",
        ]
    )
    for name in relay.__all__:
        assert hasattr(relay, name), name


def test_configuration_error_is_a_value_error() -> None:
    assert issubclass(relay.ConfigurationError, ValueError)
    assert issubclass(relay.ConfigurationError, relay.RelayError)
