"""Sending one delivery: the server-side request forgery guard, the signature, and the POST.

The guard resolves the host and refuses every address that is not globally routable (Python's
``is_global``), site-local IPv6, and any IPv6 address that carries an IPv4 one that is not (IPv4-mapped,
IPv4-compatible, 6to4, Teredo, NAT64), unless TREND_ALERT_WEBHOOK_ALLOW names it: an address or a
network, with a port or without. The setting that counts is the delivering process's, read when it
sends. The POST then goes to the address that was checked, with the host name in the Host header and
in TLS (SNI and the certificate check): a second lookup could answer differently (DNS rebinding).
Redirects are not followed, and the receiver's answer is never kept beyond its status code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from trend.config import parse_allowed
from trend.logging import get_logger

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")
log = get_logger("alerts")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: the last 32 bits are IPv4
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use translation
_COMPATIBLE = ipaddress.ip_network("::/96")  # IPv4-compatible (deprecated, still routed by some stacks)


@dataclass(frozen=True)
class Allowed:
    """One TREND_ALERT_WEBHOOK_ALLOW entry: a network, and a port or any."""

    network: Network
    port: int | None

    def admits(self, address: Address, port: int) -> bool:
        return address in self.network and self.port in (None, port)


class RefusedAddressError(ValueError):
    """The webhook's host resolves to an address that is not allowed."""


def allowed_networks(entries: Sequence[str]) -> list[Allowed]:
    return [Allowed(*parse_allowed(entry)) for entry in entries if entry.strip()]


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, which a host or a gateway may send to."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64 or address in _COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return found


def is_internal(address: Address) -> bool:
    """Not globally routable, or carrying an address that is not."""
    if not address.is_global or address.is_multicast:
        return True
    if isinstance(address, ipaddress.IPv6Address) and (address.is_site_local or address in _NAT64_LOCAL):
        return True
    return any(is_internal(inner) for inner in embedded_ipv4(address))


def check_address(url: str, allow: Sequence[Allowed]) -> list[str]:
    """The addresses to send to, in the resolver's order; RefusedAddressError when any address the
    URL's host resolves to is internal and not allowed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RefusedAddressError(f"{host} does not resolve: {exc.strerror}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if is_internal(address) and not any(entry.admits(address, port) for entry in allow):
            # The address goes to the log only: the message reaches API readers, who must not learn
            # what the internal DNS answers.
            log.warning("Alert webhook host %s resolves to %s (port %d), which is not public and not in "
                        "TREND_ALERT_WEBHOOK_ALLOW", host, address, port)
            raise RefusedAddressError(f"{host} resolves to an address that is not public; the delivering "
                                      f"process's TREND_ALERT_WEBHOOK_ALLOW must name it (and port {port})")
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """(the URL with ``address`` for its host, the Host header, the request's TLS extensions)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    user_info, at, _ = parts.netloc.rpartition("@")
    if at:  # https://user:password@host/: sent as Basic authorization, as the URL asks
        netloc = f"{user_info}@{netloc}"
    shown_host = parts.netloc.rpartition("@")[2]  # never the userinfo
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), {"Host": shown_host}, extensions


def signature(secret: str, body: bytes) -> str:
    """``X-Trend-Signature``: the HMAC-SHA256 of the body, keyed with the secret's own bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


MIN_KEY_BYTES = 16


class UnusableSecretError(ValueError):
    """A secret the Standard Webhooks libraries cannot turn into a key of at least 16 bytes."""


def signing_key(secret: str) -> bytes:
    """The HMAC key of ``webhook-signature``: the secret after ``whsec_``, base64-decoded as the
    convention's libraries decode it (characters outside the base64 alphabet are dropped, padding is
    added), so they verify it from the same secret string. UnusableSecretError when that fails or
    leaves fewer than :data:`MIN_KEY_BYTES` bytes: ``----------------`` decodes to nothing, and
    anyone could sign with an empty key."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    except ValueError as exc:  # binascii.Error, or a character outside ASCII
        why = "it holds characters outside ASCII" if "ASCII" in str(exc) else str(exc).rstrip(".")
        raise UnusableSecretError(
            f"not base64 ({why}): a secret is whsec_ (optional) and the base64 of at least 16 bytes, "
            "e.g. whsec_ and 24 characters of A-Z, a-z, 0-9, + and /; omit it to have one made") from None
    if len(key) < MIN_KEY_BYTES:
        raise UnusableSecretError(
            f"decodes to {len(key)} bytes as base64; a secret is whsec_ (optional) and the base64 of at least "
            f"{MIN_KEY_BYTES} bytes (at least 22 characters of A-Z, a-z, 0-9, + and /); omit it to have one made")
    return key


def standard_signature(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` of the Standard Webhooks convention: ``v1,`` and the base64 HMAC-SHA256
    of ``id.timestamp.body``, keyed with :func:`signing_key`."""
    key = signing_key(secret)
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, delivery_id: str, body: bytes, now_s: int) -> dict[str, str]:
    """The Standard Webhooks headers, the timestamp signed so a receiver can refuse a replay, and the
    earlier ``X-Trend-*`` ones, kept for a release."""
    return {"webhook-id": delivery_id, "webhook-timestamp": str(now_s),
            "webhook-signature": standard_signature(secret, delivery_id, now_s, body),
            "X-Trend-Delivery": delivery_id, "X-Trend-Signature": signature(secret, body)}


@dataclass(frozen=True)
class Sent:
    ok: bool
    status: int | None  # the receiver's HTTP status, when it answered
    error: str | None
    final: bool = False  # no later attempt can do better: the delivery fails at once


async def send(url: str, secret: str, body: str, delivery_id: str, allow: Sequence[Allowed],
               timeout_s: float) -> Sent:
    """One attempt, within ``timeout_s`` in all: resolving and checking the host, connecting, sending
    and the receiver's whole answer. A receiver that drips its answer a byte at a time is cut off at
    the deadline like one that never answers (httpx's own timeouts apply per read)."""
    try:
        signing_key(secret)
    except UnusableSecretError as exc:  # a rule stored before secrets were checked: it can never sign
        return Sent(False, None, f"the rule's secret cannot sign: {exc}", final=True)
    import httpx  # here, not at the top: a process that never delivers never loads it (50-100 ms)

    try:
        async with asyncio.timeout(timeout_s):
            addresses = await asyncio.to_thread(check_address, url, allow)
            payload = body.encode()
            headers = {"Content-Type": "application/json", "User-Agent": "trend-alerts",
                       **signed_headers(secret, delivery_id, payload, int(time.time()))}
            async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
                response = await _post_to_first_that_connects(client, url, addresses, payload, headers)
    except RefusedAddressError as exc:
        # Retried like any failure: the setting may be fixed, or the name resolve elsewhere, meanwhile.
        return Sent(False, None, str(exc))
    except (TimeoutError, httpx.TimeoutException):
        return Sent(False, None, f"no whole answer within {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return Sent(False, None, f"{type(exc).__name__}: the request failed")
    if 200 <= response.status_code < 300:
        return Sent(True, response.status_code, None)
    return Sent(False, response.status_code, f"the receiver answered {response.status_code}")


def send_now(url: str, secret: str, body: str, delivery_id: str, allow: Sequence[Allowed],
             timeout_s: float) -> Sent:
    """:func:`send` from synchronous code."""
    return run_sync(send(url, secret, body, delivery_id, allow, timeout_s))


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code: here, or on a thread of its own when this
    thread already runs an event loop (an app's, or a test's browser driver)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


async def _post_to_first_that_connects(client: httpx.AsyncClient, url: str, addresses: list[str], payload: bytes,
                                       headers: dict[str, str]) -> httpx.Response:
    """Each checked address in turn, as a client tries a host's addresses; only a refused
    connection moves on to the next."""
    import httpx

    for index, address in enumerate(addresses):
        target, host, extensions = pinned(url, address)
        request = client.build_request("POST", target, content=payload, headers={**headers, **host},
                                       extensions=extensions)
        try:
            return await client.send(request)
        except httpx.ConnectError:
            if index == len(addresses) - 1:
                raise
    raise httpx.ConnectError("no address to connect to")
