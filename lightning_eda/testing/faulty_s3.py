"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the local S3 server, for reliability tests.

Point ``AWS_ENDPOINT_URL_S3`` at :attr:`FaultyS3.url` and every request the pipeline makes passes through here. The
proxy forwards each request to the upstream server and counts it; every ``every``-th request that falls in ``scope``
(and whose path contains ``match``) gets a fault instead, the modes taken in turn from ``modes``:

- ``slowdown``: 503 with S3's ``SlowDown`` XML body (throttling),
- ``error500``: 500 with S3's ``InternalError`` XML body,
- ``cut``: the real status and headers (full ``Content-Length``), half the body, then the connection is closed,
- ``delay``: nothing for ``delay`` seconds (longer than the client's read timeout), then the connection is closed,
- ``stall``: the real headers and half the body, then nothing for ``delay`` seconds, then the connection is closed.

Every request's method, path and headers are recorded, so tests can check what was fetched and that no credentials
were sent.
"""

from __future__ import annotations

import http.client
import itertools
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

MODES = ("slowdown", "error500", "cut", "delay", "stall")
SCOPES = ("all", "objects", "list")

_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>{message}</Message><RequestId>faulty-s3</RequestId></Error>"
)
_ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "error500": (500, "InternalError", "We encountered an internal error. Please try again."),
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it."""

    method: str
    path: str  # raw request target, still percent-encoded, with the query
    headers: tuple[tuple[str, str], ...]
    fault: str | None

    @property
    def is_list(self) -> bool:
        return "list-type=" in urlsplit(self.path).query or _key_of(self.path) == ""

    @property
    def key(self) -> str:
        """The object key (decoded), or "" for bucket-level requests such as listings."""
        return _key_of(self.path)


def _key_of(target: str) -> str:
    path = urlsplit(target).path
    parts = path.lstrip("/").split("/", 1)  # path-style addressing: /<bucket>/<key>
    return unquote(parts[1]) if len(parts) == 2 else ""


class FaultyS3:
    """A threaded proxy in front of ``upstream`` that fails or cuts every Nth request.

    Parameters
    ----------
    upstream : str
        Base URL of the real (moto) server, e.g. ``http://127.0.0.1:5000``.
    every : int
        Fault every ``every``-th eligible request (0 disables faults; 1 faults all of them).
    modes : sequence of str
        Fault modes, used in turn (see :data:`MODES`).
    scope : {"all", "objects", "list"}
        Which requests are eligible: everything, object GETs, or bucket listings.
    match : str, optional
        Only requests whose decoded path contains this text are eligible.
    delay : float
        Seconds to hold the connection in the ``delay`` and ``stall`` modes.
    max_faults : int, optional
        Stop injecting after this many faults.
    """

    def __init__(self, upstream: str, **plan) -> None:
        self.upstream = urlsplit(upstream)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.seen: list[Seen] = []
        self.faults: Counter = Counter()
        self.hung_up_while_held = 0  # held connections the client closed before the hold ended (its read timeout)
        self.configure(**plan)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="faulty-s3", daemon=True
        )
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"

    # --- control ---------------------------------------------------------------------------------------------------

    def configure(
        self,
        *,
        every: int = 0,
        modes: Sequence[str] = ("slowdown",),
        scope: str = "all",
        match: str | None = None,
        delay: float = 2.0,
        max_faults: int | None = None,
    ) -> FaultyS3:
        """Change the fault plan (the eligible-request counter restarts)."""
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise ValueError(f"fault modes {list(modes)} must be some of {MODES}")
        if scope not in SCOPES:
            raise ValueError(f"scope {scope!r} must be one of {SCOPES}")
        with self._lock:
            self.every = int(every)
            self.modes = tuple(modes)
            self._mode_cycle = itertools.cycle(self.modes)
            self.scope = scope
            self.match = match
            self.delay = float(delay)
            self.max_faults = max_faults
            self._eligible = 0
            self._injected = 0
        return self

    def start(self) -> FaultyS3:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultyS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what happened ---------------------------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        return len(self.seen)

    def object_gets(self) -> list[str]:
        """Decoded keys of every object GET, in arrival order (repeats included)."""
        with self._lock:
            return [s.key for s in self.seen if s.method == "GET" and not s.is_list]

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()
            self.faults.clear()
            self.hung_up_while_held = 0

    # --- the plan --------------------------------------------------------------------------------------------------

    def _eligible_for(self, method: str, target: str) -> bool:
        is_list = "list-type=" in urlsplit(target).query or _key_of(target) == ""
        if self.scope == "objects" and (method != "GET" or is_list):
            return False
        if self.scope == "list" and not is_list:
            return False
        return self.match is None or self.match in unquote(target)

    def _decide(self, method: str, target: str, headers) -> str | None:
        with self._lock:
            fault = None
            if self.every > 0 and self._eligible_for(method, target):
                self._eligible += 1
                under_cap = self.max_faults is None or self._injected < self.max_faults
                if under_cap and self._eligible % self.every == 0:
                    fault = next(self._mode_cycle)
                    self._injected += 1
                    self.faults[fault] += 1
            self.seen.append(Seen(method, target, tuple(headers.items()), fault))
            return fault

    # --- HTTP ------------------------------------------------------------------------------------------------------

    def _forward(self, method: str, target: str, headers, body: bytes):
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
            forwarded["Host"] = self.upstream.netloc
            conn.request(method, target, body=body or None, headers=forwarded)
            response = conn.getresponse()
            payload = response.read()
            return response.status, response.reason, response.getheaders(), payload
        finally:
            conn.close()

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - quiet: tests read the record instead
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._decide(self.command, self.path, self.headers)
                try:
                    if fault in _ERRORS:
                        self._send_error_xml(*_ERRORS[fault])
                        return
                    if fault == "delay":
                        self._hold()
                        self._drop()
                        return
                    status, reason, headers, payload = proxy._forward(self.command, self.path, self.headers, body)
                    if fault in ("cut", "stall"):
                        self._send_head(status, reason, headers, len(payload))
                        self.wfile.write(payload[: len(payload) // 2])
                        self.wfile.flush()
                        if fault == "stall":
                            self._hold()
                        self._drop()
                        return
                    self._send_head(status, reason, headers, len(payload))
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except (TimeoutError, BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _send_head(self, status, reason, headers, length) -> None:
                self.send_response(status, reason)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() not in ("date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def _send_error_xml(self, status: int, code: str, message: str) -> None:
                payload = _ERROR_XML.format(code=code, message=message).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _hold(self) -> None:
                """Send nothing for ``delay`` seconds, noting whether the client hangs up first."""
                deadline = time.monotonic() + proxy.delay
                while not proxy._stopping.is_set() and time.monotonic() < deadline:
                    readable, _, _ = select.select([self.connection], [], [], 0.05)
                    if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                        with proxy._lock:
                            proxy.hung_up_while_held += 1
                        return

            def _drop(self) -> None:
                """Close the client's connection abruptly, as a dropped or timed-out connection looks."""
                self.close_connection = True
                try:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        return Handler
