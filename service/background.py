"""A :class:`~service.server.ShotStreamServer` on its own event-loop thread, for blocking callers.

``shotstream demo``, ``shotstream bench`` and the tests run the real service in-process this way and
talk to it through the SDK like any other client::

    with BackgroundServer(engine, ServerSettings(grpc_port=0, gateway_port=0)) as server:
        with ShotStreamClient(server.address) as client:
            ...
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .gateway import PATH as GATEWAY_PATH
from .settings import ServerSettings, url_host


class BackgroundServer:
    """Starts on ``start()`` / ``with``; ``stop()`` is the server's graceful stop, waited for."""

    def __init__(self, engine: Any, settings: ServerSettings | None = None, *, grace: float = 5.0):
        self.engine = engine
        self.settings = settings or ServerSettings(grpc_port=0, gateway_port=0)
        self.grace = grace
        self.server = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def grpc_port(self) -> int:
        return self.server.grpc_port

    @property
    def gateway_port(self) -> int | None:
        return self.server.gateway_port

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC door, for :class:`service.sdk.ShotStreamClient`."""
        return f"{url_host(self.settings.host)}:{self.grpc_port}"

    @property
    def gateway_url(self) -> str | None:
        if self.gateway_port is None:
            return None
        scheme = "wss" if self.settings.tls_cert else "ws"
        return f"{scheme}://{url_host(self.settings.host)}:{self.gateway_port}{GATEWAY_PATH}"

    def start(self, timeout: float = 60.0) -> BackgroundServer:
        from .server import ShotStreamServer

        self.server = ShotStreamServer(self.engine, self.settings)
        self._thread = threading.Thread(target=self._run, name="shotstream-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            self.stop()  # it may still come up: make it stop then instead of running on unowned
            raise TimeoutError(f"the in-process server did not start within {timeout:.0f} s")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise self._error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop already ended
                pass
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        await self.server.stop(self.grace)

    def __enter__(self) -> BackgroundServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
