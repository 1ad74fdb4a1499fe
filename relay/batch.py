"""Publishing many messages in one call: the items going out, the results coming back.

``relay.publish_many(topic, items)`` (and ``await relay.apublish_many(...)``)
takes plain data or ``Item``\\ s and returns ``PublishResults``: one
``Published`` per item, in order, each with its message id or its error. A
batch with any failure raises ``BatchPublishError`` (a ``PublishError``) that
carries every result, so a caller learns which items went and which did not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from relay.errors import PublishError, RelayError

#: How many failures a ``BatchPublishError``'s message lists before "and N more".
SHOWN_FAILURES = 3


class Item:
    """One message of a batch: ``data`` with its attributes and ordering key.

    ``Item(data, ordering_key="", attrs=None, **attributes)`` mirrors
    ``relay.publish``'s arguments (and gcloud-aio-pubsub's ``PubsubMessage``):
    ``attrs={...}`` carries attribute names that are reserved or not Python
    identifiers; ``**attributes`` win over it for the same name.
    """

    __slots__ = ("attrs", "data", "ordering_key")

    def __init__(
        self,
        data: Any,
        *,
        ordering_key: str = "",
        attrs: Mapping[str, str] | None = None,
        **attributes: str,
    ) -> None:
        self.data = data
        self.ordering_key = ordering_key
        merged = dict(attrs) if attrs else {}
        merged.update(attributes)
        self.attrs: dict[str, str] = merged

    def __repr__(self) -> str:
        key = f", ordering_key={self.ordering_key!r}" if self.ordering_key else ""
        return f"Item({self.data!r}{key}, attrs={self.attrs!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return (self.data, self.ordering_key, self.attrs) == (
            other.data, other.ordering_key, other.attrs
        )

    __hash__ = None  # type: ignore[assignment]  # holds a dict: not hashable


@dataclass(frozen=True, slots=True)
class Published:
    """The outcome of one item: its message id, or the error that stopped it."""

    index: int
    message_id: str | None
    error: BaseException | None

    @property
    def ok(self) -> bool:
        return self.error is None


class PublishResults(Sequence[Published]):
    """One ``Published`` per item, in the order the items were given."""

    __slots__ = ("_results",)

    def __init__(self, results: Sequence[Published]) -> None:
        self._results = tuple(results)

    @overload
    def __getitem__(self, index: int) -> Published: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Published]: ...
    def __getitem__(self, index: int | slice) -> Published | Sequence[Published]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[Published]:
        return iter(self._results)

    @property
    def ok(self) -> bool:
        """True when every item was published."""
        return all(result.ok for result in self._results)

    @property
    def failed(self) -> list[Published]:
        return [result for result in self._results if not result.ok]

    @property
    def message_ids(self) -> list[str | None]:
        """Each item's message id, None where it failed."""
        return [result.message_id for result in self._results]

    def raise_for_errors(self, topic: str = "") -> None:
        """Raise ``BatchPublishError`` if any item failed."""
        if not self.ok:
            raise BatchPublishError(topic, self)

    def __repr__(self) -> str:
        failed = len(self.failed)
        return f"<PublishResults {len(self) - failed} published, {failed} failed>"


class BatchPublishError(PublishError):
    """Some items of a batch were not published; ``results`` has every item's outcome.

    ``cause`` (and ``__cause__``) is the first failure's error.
    """

    def __init__(self, topic: str, results: PublishResults) -> None:
        failed = results.failed
        shown = "; ".join(
            f"[{r.index}] {type(r.error).__name__}: {r.error}" for r in failed[:SHOWN_FAILURES]
        )
        more = f"; and {len(failed) - SHOWN_FAILURES} more" if len(failed) > SHOWN_FAILURES else ""
        first = failed[0].error if failed else None
        assert first is not None, "BatchPublishError needs a failure"
        RelayError.__init__(
            self,
            f"publishing to topic {topic!r} failed for {len(failed)} of {len(results)} "
            f"message(s): {shown}{more}",
        )
        self.topic = topic
        self.cause = first
        self.results = results
        self.__cause__ = first
