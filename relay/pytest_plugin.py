"""pytest plugin (auto-registered): the ``relay_memory`` fixture.

``relay_memory`` yields a ``relay.testing.MemoryEnvironment``: relay.publish
records to memory and ``relay_memory.deliver([...])`` runs your handlers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relay.testing import MemoryEnvironment, memory_app


@pytest.fixture
def relay_memory() -> Iterator[MemoryEnvironment]:
    with memory_app() as env:
        yield env
