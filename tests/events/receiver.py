"""A real webhook receiver for the tests: an HTTP server on a port of its own that checks
each delivery's signature (as an operator's receiver would) and records it. It can be
stopped and started again on the same port (a receiver that is down for a while)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lijian.http.auth import signing_string

SECRET = "hook-secret-1234"
WAIT_S = 60.0  # deliveries are retried with back-off: give them time, but not forever


class Receiver:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/lijian-events?from=test"
        self.got: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                h = self.headers
                msg = signing_string(
                    "POST", self.path, h["X-Lijian-Timestamp"], h["X-Lijian-Nonce"],
                    hashlib.sha256(body).hexdigest(),
                )  # fmt: skip
                want = hmac.new(SECRET.encode(), msg, hashlib.sha256).hexdigest()
                ok = h["X-Lijian-Key"] == "lijian" and hmac.compare_digest(
                    want, h["X-Lijian-Signature"]
                )
                with owner._lock:
                    if ok:
                        owner.got.append(json.loads(body))
                    else:
                        owner.bad_signatures += 1
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[str]:
        with self._lock:
            return [str(e["id"]) for e in self.got]

    def wait_for(self, ids: list[str]) -> list[dict[str, Any]]:
        """Wait (bounded) until every id in ``ids`` arrived; returns what arrived."""
        deadline = time.monotonic() + WAIT_S
        while not set(ids) <= set(self.ids()):
            assert time.monotonic() < deadline, f"got {self.ids()}, want {ids}"
            time.sleep(0.05)
        with self._lock:
            return list(self.got)


def webhooks_toml(url: str, events: list[str] | None = None) -> str:
    lines = ["[[webhooks]]", f'url = "{url}"', f'secret = "{SECRET}"', "backoff_max_s = 0.5"]
    if events is not None:
        lines.append("events = [" + ", ".join(f'"{e}"' for e in events) + "]")
    return "\n".join(lines) + "\n"
