"""A client for the services that send events to a trend server: it never blocks the app.

    from trend.client import TrendClient

    client = TrendClient("http://127.0.0.1:8000", api_key="...")
    client.track("search", "우산", user_id="u-7")   # queued; sent in the background
    client.close()                                  # at shutdown: sends what is queued

Events are batched by size and time on a background thread, each with an ``event_id``, so a batch
sent again after an error the server may or may not have seen is stored once. ``AsyncTrendClient``
is the same for asyncio apps, with ``await flush()`` and ``await aclose()``.
"""

from trend.client.aio import AsyncTrendClient
from trend.client.delivery import ClientStats
from trend.client.sync import TrendClient

__all__ = ["AsyncTrendClient", "ClientStats", "TrendClient"]
