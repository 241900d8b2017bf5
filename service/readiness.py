"""HTTP readiness and liveness for Kubernetes probes and proxies (HAProxy's ``option httpchk``).

    GET /ready  -> 200 "ready"                 the server takes new sessions
                   503 "not ready: full"        every session slot is taken (max_sessions)
                   503 "not ready: draining"    SIGTERM: open sessions finish, no new ones
                   503 "not ready: stopping"    the server is shutting down
    GET /live   -> 200 "live"                  the process serves (its event loop answers)

It binds the server's ``--host`` on ``ready_port`` (probes come from the kubelet and the proxy, not
from this machine), needs no token and says nothing but the status above: no session counts, no
model, no version. One asyncio server, no thread per request: a connection sends one request (read
within ``READ_TIMEOUT_S``, headers at most ``MAX_HEADER_BYTES``), gets one ``Connection: close``
response, and at most ``MAX_CONNECTIONS`` are served at a time (more are closed at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 2.0
MAX_HEADER_BYTES = 8192
MAX_CONNECTIONS = 64
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class ReadinessServer:
    """Serves /ready and /live; ``not_ready()`` returns why the server takes no session now, or None."""

    def __init__(self, not_ready: Callable[[], str | None]):
        self._not_ready = not_ready
        self._server: asyncio.base_events.Server | None = None
        self._open = 0
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        try:
            self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEADER_BYTES)
        except OSError as exc:
            raise OSError(f"could not bind the readiness endpoint to {host}:{port}: {exc.strerror or exc}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    def answer(self, method: str, path: str) -> tuple[int, str]:
        """The status and body for a request (the whole logic, without sockets)."""
        path = path.split("?", 1)[0]
        if path not in ("/ready", "/live"):
            return 404, "not found: GET /ready or /live"
        if method not in ("GET", "HEAD"):
            return 405, "GET or HEAD only"
        if path == "/live":
            return 200, "live"
        reason = self._not_ready()
        return (200, "ready") if reason is None else (503, f"not ready: {reason}")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        try:
            if self._open > MAX_CONNECTIONS:
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                status, body = 400, "bad request"
                method = "GET"
            else:
                method = parts[0]
                status, body = self.answer(method, parts[1])
            payload = (body + "\n").encode()
            writer.write(f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         f"Content-Length: {len(payload)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
                         .encode() + (b"" if method == "HEAD" else payload))
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
                await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), READ_TIMEOUT_S)
