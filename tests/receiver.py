"""A real webhook receiver for tests: a local HTTP server that checks every signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """A webhook receiver on loopback: answers with the next of ``answers`` (200 once they run out),
    or sleeps ``delay`` seconds first; keeps what it got."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.delay = 0.0
        self._closing = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                if len(body) < length:
                    return  # the sender gave up mid-body (its deadline): a receiver takes no part-delivery
                owner.received.append({"headers": dict(self.headers), "body": body, "at": time.time()})
                owner._closing.wait(owner.delay)  # a slow receiver, cut short when the test ends
                self.send_response(owner.answers.pop(0) if owner.answers else 200)
                self.end_headers()
                self.wfile.write(b"receiver internals that must never be echoed")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        # A short poll: shutdown() waits for it, and every test that had a receiver paid half a second.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def bodies(self, secret: str) -> list[dict[str, Any]]:
        """Every body received, each after checking its signature with ``secret``."""
        found = []
        for request in self.received:
            expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
            assert request["headers"]["X-Trend-Signature"] == expected
            body = json.loads(request["body"])
            assert request["headers"]["X-Trend-Delivery"] == body["id"]
            found.append(body)
        return found

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()  # waits for the handlers still answering
