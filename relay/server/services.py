"""The gRPC services: Publisher, Subscriber and IAMPolicy, on google's protobuf types.

google-cloud-pubsub ships the message classes but no servicers, so each method
is registered by its full name with the request class's parser. Handlers
return protobuf messages or, for Pull and StreamingPull, bytes already
written by ``relay.server.wire``. Any other method of these services (and of
the schema service) answers UNIMPLEMENTED naming the method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import any_pb2, empty_pb2
from google.pubsub_v1 import types as gtypes
from google.rpc import error_details_pb2, status_pb2

from relay.server import names, streams
from relay.server.names import ServiceError
from relay.server.push import PushDelivery
from relay.server.state import Broker

_EMPTY = empty_pb2.Empty()
_PREFIXES = ("/google.pubsub.v1.", "/google.iam.v1.IAMPolicy/")
_UPDATABLE_TOPIC = {"labels", "message_storage_policy", "message_retention_duration",
                    "kms_key_name"}
_UPDATABLE_SUBSCRIPTION = {
    "ack_deadline_seconds", "labels", "retry_policy", "dead_letter_policy",
    "enable_exactly_once_delivery", "expiration_policy", "message_retention_duration",
    "retain_acked_messages", "push_config",
}
_INVALID_ACK_IDS = (
    "Some acknowledgement ids in the request were invalid. This could be because the "
    "acknowledgement ids have expired or the acknowledgement ids were malformed."
)


def _pb(cls: Any) -> Any:
    return cls.pb()


class _Status:
    """A ``grpc.Status`` carrying a ``google.rpc.Status`` in its trailers."""

    def __init__(self, error: ServiceError) -> None:
        status = status_pb2.Status(code=error.code.value[0], message=error.message)
        status.details.extend(error.details)
        self.code = error.code
        self.details = error.message
        self.trailing_metadata = (("grpc-status-details-bin", status.SerializeToString()),)


def _abort(context: Any, error: ServiceError) -> None:
    if error.details:
        context.abort_with_status(_Status(error))
    context.abort(error.code, error.message)


def _unary(method: Callable[[Any], Any], request_class: Any) -> Any:
    def handle(request: Any, context: Any) -> Any:
        try:
            response = method(request)
        except ServiceError as exc:
            _abort(context, exc)
        return response if isinstance(response, bytes) else response.SerializeToString()

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=request_class.FromString
    )


def _page(items: list[str], page_size: int, page_token: str) -> tuple[list[str], str]:
    start = int(page_token) if page_token.isdigit() else 0
    if page_token and not page_token.isdigit():
        raise names.invalid(f"Invalid page_token: {page_token!r}.")
    size = page_size if page_size > 0 else 100
    chunk = items[start:start + size]
    return chunk, str(start + size) if start + size < len(items) else ""


def _apply_mask(stored: Any, update: Any, mask: Any, allowed: set[str], kind: str) -> Any:
    if not mask.paths:
        raise names.invalid(f"The update_mask in the Update{kind}Request must be set.")
    bad = [p for p in mask.paths if p.split(".")[0] not in allowed]
    if bad:
        raise names.invalid(
            f"Invalid update_mask provided in the Update{kind}Request: the following paths "
            f"cannot be updated: {', '.join(bad)}."
        )
    result = type(stored)()
    result.CopyFrom(stored)
    mask.MergeMessage(update, result, replace_message_field=True, replace_repeated_field=True)
    return result


class Services:
    """The method handlers, over one ``Broker``."""

    def __init__(self, broker: Broker, *, allow_remote: bool = False) -> None:
        self.broker = broker
        self.settle = streams.Settle(broker)
        self.push = PushDelivery(broker, self.settle, allow_remote)
        self.policies: dict[str, Any] = {}
        self.handlers: dict[str, Any] = self._handlers()

    # ----------------------------------------------------------- registration
    def _handlers(self) -> dict[str, Any]:
        t = gtypes
        publisher = {
            "CreateTopic": _unary(self.create_topic, _pb(t.Topic)),
            "GetTopic": _unary(self.get_topic, _pb(t.GetTopicRequest)),
            "UpdateTopic": _unary(self.update_topic, _pb(t.UpdateTopicRequest)),
            "ListTopics": _unary(self.list_topics, _pb(t.ListTopicsRequest)),
            "ListTopicSubscriptions": _unary(
                self.list_topic_subscriptions, _pb(t.ListTopicSubscriptionsRequest)
            ),
            "DeleteTopic": _unary(self.delete_topic, _pb(t.DeleteTopicRequest)),
            "Publish": _unary(self.publish, _pb(t.PublishRequest)),
        }
        subscriber = {
            "CreateSubscription": _unary(self.create_subscription, _pb(t.Subscription)),
            "GetSubscription": _unary(self.get_subscription, _pb(t.GetSubscriptionRequest)),
            "UpdateSubscription": _unary(
                self.update_subscription, _pb(t.UpdateSubscriptionRequest)
            ),
            "ListSubscriptions": _unary(self.list_subscriptions, _pb(t.ListSubscriptionsRequest)),
            "DeleteSubscription": _unary(
                self.delete_subscription, _pb(t.DeleteSubscriptionRequest)
            ),
            "Pull": grpc.unary_unary_rpc_method_handler(
                self._pull, request_deserializer=_pb(t.PullRequest).FromString
            ),
            "Acknowledge": _unary(self.acknowledge, _pb(t.AcknowledgeRequest)),
            "ModifyAckDeadline": _unary(self.modify_ack_deadline, _pb(t.ModifyAckDeadlineRequest)),
            "ModifyPushConfig": _unary(self.modify_push_config, _pb(t.ModifyPushConfigRequest)),
            "StreamingPull": grpc.stream_stream_rpc_method_handler(
                streams.streaming_pull(self.broker, self.settle),
                request_deserializer=_pb(t.StreamingPullRequest).FromString,
            ),
        }
        iam = {
            "GetIamPolicy": _unary(self.get_iam_policy, iam_policy_pb2.GetIamPolicyRequest),
            "SetIamPolicy": _unary(self.set_iam_policy, iam_policy_pb2.SetIamPolicyRequest),
            "TestIamPermissions": _unary(
                self.test_iam_permissions, iam_policy_pb2.TestIamPermissionsRequest
            ),
        }
        table = {}
        for service, methods in (
            ("google.pubsub.v1.Publisher", publisher),
            ("google.pubsub.v1.Subscriber", subscriber),
            ("google.iam.v1.IAMPolicy", iam),
        ):
            for name, handler in methods.items():
                table[f"/{service}/{name}"] = handler
        return table

    def service(self, details: Any) -> Any:
        """``grpc.GenericRpcHandler``'s one method: the handler for a call."""
        method = details.method
        handler = self.handlers.get(method)
        if handler is None and method.startswith(_PREFIXES):
            return _unimplemented(method.lstrip("/").replace("/", "."))
        return handler

    # ----------------------------------------------------------- publisher
    def create_topic(self, topic: Any) -> Any:
        if topic.HasField("schema_settings") and topic.schema_settings.schema:
            raise names.unimplemented("Schemas (Topic.schema_settings)")
        return self.broker.create_topic(topic)

    def get_topic(self, request: Any) -> Any:
        return self.broker.topic(request.topic)

    def update_topic(self, request: Any) -> Any:
        stored = self.broker.topic(request.topic.name)
        updated = _apply_mask(stored, request.topic, request.update_mask, _UPDATABLE_TOPIC, "Topic")
        stored.CopyFrom(updated)
        return stored

    def list_topics(self, request: Any) -> Any:
        project = names.project_of(request.project)
        prefix = f"projects/{project}/topics/"
        found = sorted(n for n in list(self.broker.topics) if n.startswith(prefix))
        page, token = _page(found, request.page_size, request.page_token)
        response = _pb(gtypes.ListTopicsResponse)(next_page_token=token)
        response.topics.extend(self.broker.topics[n] for n in page if n in self.broker.topics)
        return response

    def list_topic_subscriptions(self, request: Any) -> Any:
        found = self.broker.topic_subscriptions(request.topic)
        page, token = _page(found, request.page_size, request.page_token)
        return _pb(gtypes.ListTopicSubscriptionsResponse)(subscriptions=page, next_page_token=token)

    def delete_topic(self, request: Any) -> Any:
        self.broker.delete_topic(request.topic)
        return _EMPTY

    def publish(self, request: Any) -> Any:
        if request.ByteSize() > names.MAX_REQUEST_BYTES:
            raise names.invalid(
                f"The request is too large: {request.ByteSize()} bytes (the limit is "
                f"{names.MAX_REQUEST_BYTES} bytes)."
            )
        if not request.messages:
            raise names.invalid("The request contains no messages.")
        if len(request.messages) > names.MAX_PUBLISH_MESSAGES:
            raise names.invalid(
                f"Too many messages in the request: {len(request.messages)} (the limit is "
                f"{names.MAX_PUBLISH_MESSAGES} per Publish request)."
            )
        for message in request.messages:
            if not message.data and not message.attributes:
                raise names.invalid(
                    "Some messages are empty: a message needs data or at least one attribute."
                )
            names.check_attributes(message.attributes)
            if len(message.ordering_key.encode()) > names.MAX_ORDERING_KEY_BYTES:
                raise names.invalid(
                    f"An ordering_key is too long (the limit is {names.MAX_ORDERING_KEY_BYTES} "
                    "bytes)."
                )
        ids = self.broker.publish(request.topic, request.messages)
        return _pb(gtypes.PublishResponse)(message_ids=ids)

    # ----------------------------------------------------------- subscriber
    def create_subscription(self, sub: Any) -> Any:
        self.push.check(sub.push_config)
        created = self.broker.create_subscription(sub)
        self.push.sync(sub.name)
        return created

    def get_subscription(self, request: Any) -> Any:
        return self.broker.subscription(request.subscription)

    def update_subscription(self, request: Any) -> Any:
        stored = self.broker.subscription(request.subscription.name)
        if "filter" in request.update_mask.paths or "enable_message_ordering" in (
            request.update_mask.paths
        ):
            raise names.invalid(
                "Invalid update_mask provided in the UpdateSubscriptionRequest: filter and "
                "enable_message_ordering cannot be changed after creation."
            )
        updated = _apply_mask(
            stored, request.subscription, request.update_mask, _UPDATABLE_SUBSCRIPTION,
            "Subscription",
        )
        if not updated.ack_deadline_seconds:
            updated.ack_deadline_seconds = names.DEFAULT_ACK_DEADLINE
        return self._replace(updated)

    def modify_push_config(self, request: Any) -> Any:
        """An empty push config makes the subscription pull; a set one, push."""
        stored = self.broker.subscription(request.subscription)
        updated = type(stored)()
        updated.CopyFrom(stored)
        updated.push_config.CopyFrom(request.push_config)
        self._replace(updated)
        return _EMPTY

    def _replace(self, updated: Any) -> Any:
        self.push.check(updated.push_config)
        replaced = self.broker.replace_subscription(updated)
        self.push.sync(updated.name)
        return replaced

    def list_subscriptions(self, request: Any) -> Any:
        project = names.project_of(request.project)
        prefix = f"projects/{project}/subscriptions/"
        subs = dict(self.broker.subscriptions)
        found = sorted(n for n in subs if n.startswith(prefix))
        page, token = _page(found, request.page_size, request.page_token)
        response = _pb(gtypes.ListSubscriptionsResponse)(next_page_token=token)
        response.subscriptions.extend(subs[n] for n in page)
        return response

    def delete_subscription(self, request: Any) -> Any:
        self.broker.delete_subscription(request.subscription)
        self.push.sync(request.subscription)
        return _EMPTY

    def _pull(self, request: Any, context: Any) -> bytes:
        try:
            return streams.pull(self.broker, request, context)
        except ServiceError as exc:
            _abort(context, exc)
            return b""

    def acknowledge(self, request: Any) -> Any:
        queue = self.broker.queue(request.subscription)
        unknown = self.settle.ack(queue, list(request.ack_ids))
        self._exactly_once_failures(queue.config.exactly_once, unknown)
        return _EMPTY

    def modify_ack_deadline(self, request: Any) -> Any:
        queue = self.broker.queue(request.subscription)
        unknown = self.settle.modify(queue, list(request.ack_ids), request.ack_deadline_seconds)
        self._exactly_once_failures(queue.config.exactly_once, unknown)
        return _EMPTY

    @staticmethod
    def _exactly_once_failures(exactly_once: bool, unknown: list[str]) -> None:
        """With exactly-once delivery, an ack id that names no live lease fails, in
        an ErrorInfo as Pub/Sub reports it; without, it is ignored."""
        if not (exactly_once and unknown):
            return
        info = error_details_pb2.ErrorInfo(
            reason="EXACTLY_ONCE_ACKID_FAILURE", domain="pubsub.googleapis.com",
            metadata={ack_id: "PERMANENT_FAILURE_INVALID_ACK_ID" for ack_id in unknown},
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, _INVALID_ACK_IDS, (detail,))

    # ----------------------------------------------------------- IAM
    def _resource(self, resource: str) -> None:
        if "/subscriptions/" in resource:
            self.broker.subscription(resource)
        else:
            self.broker.topic(resource)

    def get_iam_policy(self, request: Any) -> Any:
        self._resource(request.resource)
        return self.policies.get(request.resource) or policy_pb2.Policy(etag=b"\x00")

    def set_iam_policy(self, request: Any) -> Any:
        self._resource(request.resource)
        self.policies[request.resource] = request.policy
        return request.policy

    def test_iam_permissions(self, request: Any) -> Any:
        self._resource(request.resource)
        return iam_policy_pb2.TestIamPermissionsResponse(permissions=request.permissions)


def _unimplemented(method: str) -> Any:
    error = names.unimplemented(method)

    def handle(request: bytes, context: Any) -> bytes:
        context.abort(error.code, error.message)
        return b""

    return grpc.unary_unary_rpc_method_handler(handle)
