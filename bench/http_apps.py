"""The app ``bench.http_ingest`` serves: trend's own API, plus bare endpoints on the same server.

* ``POST /bare/events`` takes the body as FastAPI does for a ``list[dict[str, Any]]`` parameter
  (JSON decoding and pydantic's check of the shape) and discards it: what any FastAPI endpoint pays;
* ``POST /bare/store`` parses the body the same way and stores it by the bare bulk path into the
  same table and indexes (``executemany`` on SQLite, COPY on PostgreSQL): no validation, no
  normalization, no markers, one transaction. hey sends one body again and again, so its event_ids
  get the request's number appended: each is still written into the unique index, never refused;
* ``GET /bare/top`` returns a constant JSON body of the size of a ``top`` answer.

    uvicorn bench.http_apps:app --factory   (settings from TREND_* variables, as ``trend serve``)
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from fastapi import FastAPI, Response
from starlette.concurrency import run_in_threadpool

from trend.api.app import create_app
from trend.config import load_settings
from trend.service import Trend
from trend.storage.write.events import COLUMNS


def _store(trend: Trend, rows: list[tuple[Any, ...]]) -> None:
    with trend.db.write() as tx:
        tx.dialect.bulk_insert(tx.conn, "fact_events", COLUMNS, rows)


def app() -> FastAPI:
    served = create_app(load_settings())
    trend: Trend = served.state.trend
    constant = os.environ.get("BENCH_TOP_BODY", "{}").encode()
    requests = itertools.count()

    @served.post("/bare/events", status_code=202)
    async def bare_events(events: list[dict[str, Any]]) -> dict[str, Any]:
        return {"accepted": 0, "duplicates": 0, "received": len(events)}

    @served.post("/bare/store", status_code=202)
    async def bare_store(events: list[dict[str, Any]]) -> dict[str, Any]:
        now, n = int(time.time() * 1000), next(requests)
        rows = [(f"{e['event_id']}.{n}" if e.get("event_id") else None, int(e["ts"] * 1000), e["event"],
                 e.get("segment", ""), e["key"], e.get("user_id"), float(e.get("value", 1)), now,
                 int(e["ts"] * 1000) // 60_000 * 60_000)
                for e in events]
        await run_in_threadpool(_store, trend, rows)
        return {"accepted": len(rows), "duplicates": 0}

    @served.get("/bare/top")
    async def bare_top() -> Response:
        return Response(constant, media_type="application/json")

    return served
