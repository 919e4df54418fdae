"""Read a JSON request body safely: a size limit enforced while streaming, strict JSON."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from trend.api.errors import ApiError
from trend.errors import PayloadTooLargeError
from trend.validation import loads_strict

# An oversized body is still read, up to this much and this long, and thrown away before the 413:
# clients that send the whole body before reading (urllib, requests) otherwise see a reset connection.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes: never held whole in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        if int(declared) <= DRAIN_BYTES:
            await _drain(request.stream(), 0)
        raise PayloadTooLargeError("the request body", limit)
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            await _drain(stream, size)
            raise PayloadTooLargeError("the request body", limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(stream: AsyncIterator[bytes], size: int) -> None:
    """Read and discard the rest of a body, within the byte and time caps; then the answer can go out."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for chunk in stream:
                size += len(chunk)
                if size > DRAIN_BYTES:
                    return
    except (TimeoutError, ClientDisconnect):
        return


def unpacked(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body as sent (``Content-Encoding: gzip``, which trend.client uses, or none), unpacked
    within the same ``limit`` as a plain body: a small body that unpacks to gigabytes (a bomb) is a
    413 after ``limit`` bytes, never held whole. Another encoding is a 415."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return raw
    if encoding != "gzip":
        raise ApiError(415, "unsupported_media_type", f"Content-Encoding {encoding!r}: send gzip or none")
    unpacker = zlib.decompressobj(wbits=31)  # gzip's header and trailer
    try:
        body = unpacker.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise ApiError(422, "invalid_body", f"the body is not valid gzip: {exc}") from None
    if len(body) > limit:
        raise PayloadTooLargeError("the unpacked request body", limit)
    if not unpacker.eof:
        raise ApiError(422, "invalid_body", "the body is not valid gzip: it ends early")
    return body


def check_media(content_type: str | None) -> None:
    """JSON only, and said so: a page of another site can POST a body without a Content-Type (a Blob)
    and without asking the browser's permission first, but never one typed application/json."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send the events with Content-Type: application/json")


def parse_json(raw: bytes) -> Any:
    """Strict JSON: no NaN or Infinity, no duplicate keys; UTF-8 only (the media type is checked first,
    by :func:`check_media`)."""
    try:
        return loads_strict(raw.decode("utf-8"))
    except RecursionError:
        raise ApiError(422, "invalid_json", "the JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {exc}") from None


def event_list(payload: Any, max_events: int) -> list[Any]:
    """One event, an array, or ``{"events": [...]}`` → a list of events."""
    if isinstance(payload, dict) and set(payload) == {"events"}:
        payload = payload["events"]
        if not isinstance(payload, list):
            raise ApiError(422, "invalid_body", "\"events\" must be an array", field="events")
    elif isinstance(payload, dict):
        payload = [payload]
    elif not isinstance(payload, list):
        raise ApiError(422, "invalid_body", "send one event object, an array, or {\"events\": [...]}")
    if len(payload) > max_events:
        raise PayloadTooLargeError("the number of events in one batch", max_events)
    events: list[Any] = payload
    return events
