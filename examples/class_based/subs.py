"""Class-based subscriptions, Relé's form: subclass ``Subscription``.

``relay-cli run`` instantiates every ``Subscription`` subclass defined in a
subs module that can be built with no arguments, so a Relé project's classes
carry over unchanged. A base class whose constructor needs arguments (like
``ImageJob`` below) is left alone, which makes it a place for shared code.
"""

from __future__ import annotations

import logging
from typing import Any

from relay import Subscription

logger = logging.getLogger("class_based")


class ImageJob(Subscription):
    """Shared behaviour for image subscriptions; not a subscription itself."""

    size = (128, 128)

    def thumbnail_path(self, name: str) -> str:
        width, height = self.size
        return f"thumbnails/{width}x{height}/{name}"


class PhotoUploaded(ImageJob):
    """Exactly the shape Relé's documentation shows."""

    topic = "photo-uploaded"

    def __init__(self) -> None:
        self._func = self.callback_func
        super().__init__(self._func, self.topic, suffix="thumbnails")

    def callback_func(self, data: dict[str, Any], **kwargs: str) -> str:
        path = self.thumbnail_path(data["name"])
        logger.info("photo %s: thumbnail written to %s", data["name"], path)
        return path  # a handler's return value reaches middleware as outcome.result


class AvatarUploaded(ImageJob):
    """Keyword arguments work too, and class attributes can tune a subclass."""

    size = (64, 64)

    def __init__(self) -> None:
        super().__init__(self.resize, topic="avatar-uploaded", suffix="thumbnails")

    def resize(self, data: dict[str, Any], **kwargs: str) -> str:
        return self.thumbnail_path(data["user"] + ".png")
