"""Sending one delivery: the server-side request forgery guard, the signature, and the POST.

The guard resolves the host and refuses loopback, link-local, private, multicast, reserved and
unspecified addresses unless TREND_ALERT_WEBHOOK_ALLOW names them. The POST then goes to the address
that was checked, with the host name in the Host header and in TLS (SNI and the certificate check):
a second lookup could answer differently (DNS rebinding). Redirects are not followed, and the
receiver's answer is never kept beyond its status code.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedAddressError(ValueError):
    """The webhook's host resolves to an address that is not allowed."""


def allowed_networks(entries: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()]


def check_address(url: str, allow: Sequence[Network]) -> list[str]:
    """The addresses to send to, in the resolver's order; RefusedAddressError when any address the
    URL's host resolves to is internal and not allowed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RefusedAddressError(f"{host} does not resolve: {exc.strerror}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        internal = (address.is_loopback or address.is_link_local or address.is_private or address.is_multicast
                    or address.is_reserved or address.is_unspecified)
        if internal and not any(address in network for network in allow):
            raise RefusedAddressError(f"{host} resolves to {address}, an internal address; "
                                 "allow it with TREND_ALERT_WEBHOOK_ALLOW")
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """(the URL with ``address`` for its host, the Host header, the request's TLS extensions)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    shown_host = parts.netloc.rpartition("@")[2]  # never the userinfo
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), {"Host": shown_host}, extensions


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Sent:
    ok: bool
    status: int | None  # the receiver's HTTP status, when it answered
    error: str | None
    permanent: bool = False  # not worth retrying: the address is refused


def send(url: str, secret: str, body: str, delivery_id: str, allow: Sequence[Network], timeout_s: float) -> Sent:
    try:
        addresses = check_address(url, allow)
    except RefusedAddressError as exc:
        return Sent(False, None, str(exc), permanent=True)
    payload = body.encode()
    headers = {"Content-Type": "application/json", "User-Agent": "trend-alerts",
               "X-Trend-Delivery": delivery_id, "X-Trend-Signature": signature(secret, payload)}
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
            response = _post_to_first_that_connects(client, url, addresses, payload, headers)
    except httpx.TimeoutException:
        return Sent(False, None, f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return Sent(False, None, f"{type(exc).__name__}: the request failed")
    if 200 <= response.status_code < 300:
        return Sent(True, response.status_code, None)
    return Sent(False, response.status_code, f"the receiver answered {response.status_code}")


def _post_to_first_that_connects(client: httpx.Client, url: str, addresses: list[str], payload: bytes,
                                 headers: dict[str, str]) -> httpx.Response:
    """Each checked address in turn, as a client tries a host's addresses; only a refused
    connection moves on to the next."""
    for index, address in enumerate(addresses):
        target, host, extensions = pinned(url, address)
        request = client.build_request("POST", target, content=payload, headers={**headers, **host},
                                       extensions=extensions)
        try:
            return client.send(request)
        except httpx.ConnectError:
            if index == len(addresses) - 1:
                raise
    raise httpx.ConnectError("no address to connect to")
