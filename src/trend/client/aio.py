"""``AsyncTrendClient``: ``TrendClient`` for asyncio apps.

``track()`` only puts an event on a queue, so it is a plain method that never awaits and never blocks
the event loop. The sending stays on ``TrendClient``'s thread: one delivery engine for both clients,
whose network waits never touch the loop. ``flush()`` and ``aclose()`` wait in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from trend.client.delivery import ClientStats
from trend.client.sync import TrendClient


class AsyncTrendClient:
    """``async with AsyncTrendClient(url) as client: client.track("search", "우산")``; the options are
    ``TrendClient``'s."""

    def __init__(self, base_url: str, **options: Any) -> None:
        self._client = TrendClient(base_url, **options)

    def track(self, event: str, key: str, **fields: Any) -> str | None:
        """Queue one event without waiting (see ``TrendClient.track``)."""
        return self._client.track(event, key, **fields)

    async def flush(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self._client.flush, timeout)

    async def aclose(self, timeout: float = 30.0) -> bool:
        return await asyncio.to_thread(self._client.close, timeout)

    @property
    def stats(self) -> ClientStats:
        return self._client.stats

    async def __aenter__(self) -> AsyncTrendClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
