"""relay: Google Cloud Pub/Sub as pleasant as a task queue.

The public API is exactly ``__all__`` (a test holds it to that).
"""

from relay._version import __version__
from relay.app import (
    App,
    apublish,
    apublish_many,
    configure,
    get_app,
    get_publisher,
    publish,
    publish_many,
    reset,
    set_app,
    set_publisher,
)
from relay.async_result import AsyncResult
from relay.batch import BatchPublishError, Item, Published, PublishResults
from relay.budget import PublisherFull
from relay.errors import (
    AckError,
    ConfigurationError,
    DecodeError,
    EncodeError,
    FilterError,
    ProvisioningError,
    PublishError,
    RelayError,
    SkipMessage,
    TransportError,
    UnrecoverableError,
)
from relay.message import Action, Message, Outcome, OutgoingMessage, Status
from relay.middleware import BaseMiddleware, MiddlewareChain
from relay.publisher import RESERVED_NAMES, Publisher
from relay.results import TaskFailed, TaskStatus
from relay.settings import Settings
from relay.subscription import DeadLetterPolicy, RetryPolicy, Subscription, sub
from relay.tasks import Task, task
from relay.worker import Worker

__all__ = [
    "RESERVED_NAMES",
    "AckError",
    "Action",
    "App",
    "AsyncResult",
    "BaseMiddleware",
    "BatchPublishError",
    "ConfigurationError",
    "DeadLetterPolicy",
    "DecodeError",
    "EncodeError",
    "FilterError",
    "Item",
    "Message",
    "MiddlewareChain",
    "Outcome",
    "OutgoingMessage",
    "ProvisioningError",
    "PublishError",
    "PublishResults",
    "Published",
    "Publisher",
    "PublisherFull",
    "RelayError",
    "RetryPolicy",
    "Settings",
    "SkipMessage",
    "Status",
    "Subscription",
    "Task",
    "TaskFailed",
    "TaskStatus",
    "TransportError",
    "UnrecoverableError",
    "Worker",
    "__version__",
    "apublish",
    "apublish_many",
    "configure",
    "get_app",
    "get_publisher",
    "publish",
    "publish_many",
    "reset",
    "set_app",
    "set_publisher",
    "sub",
    "task",
]
