"""A scriptable stand-in for the engine gateway, for what the real service will not do on demand: drop a session,
refuse a handshake, never answer `open`, announce a ring file that does not exist, send an oversized message.

Each connection runs ``script(gateway, conn)`` (a coroutine) on the gateway's own event loop in a background thread;
``conn`` records every text message the client sends (parsed JSON, in ``conn.received``) until the connection ends,
even after the script returns. Server messages are built with the service's own encoders (``service.gateway``), so
their wire form is the real one. A test talks to a script through ``gateway.signal(name)`` / ``await
gateway.wait(name)`` and ``gateway.notes`` (a queue the test reads), and to the C# process under test through its
stdin/stdout."""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import queue
import threading
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection, serve

from service.gateway import encode_server_message, to_json
from service.protocol import pb

TIMEOUT = 30


class Conn:
    def __init__(self, ws: ServerConnection, index: int) -> None:
        self.ws = ws
        self.index = index  # 1-based, in connection order
        self.received: list[dict] = []
        self._inbox: asyncio.Queue = asyncio.Queue()
        self.closed = asyncio.Event()

    async def _pump(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.ws:
                parsed = json.loads(message) if isinstance(message, str) else {"binary": len(message)}
                self.received.append(parsed)
                await self._inbox.put(parsed)
        self.closed.set()

    async def recv(self) -> dict:
        """The next client message (after those already returned)."""
        return await asyncio.wait_for(self._inbox.get(), TIMEOUT)

    async def recv_kind(self, kind: str) -> dict:
        while True:
            message = await self.recv()
            if kind in message:
                return message[kind]

    async def send(self, msg: pb.ServerMessage) -> None:
        await self.ws.send(encode_server_message(msg) if msg.WhichOneof("kind") == "chunk" else to_json(msg))

    async def opened(self, transport: int = pb.TRANSPORT_INLINE, ring: pb.RingLayout | None = None, *, width: int = 4,
                     height: int = 4, frames: int = 2, credits: int = 1) -> None:
        await self.send(pb.ServerMessage(opened=pb.SessionOpened(
            session_id=f"fake-{self.index}", protocol_version=1, width=width, height=height, fps=16,
            frames_first_chunk=frames, frames_per_chunk=frames, max_chunks_per_shot=7, frame_format=pb.FRAME_FORMAT_RGBA8,
            transport=transport, max_chunks_in_flight=credits, ring=ring)))

    async def chunk(self, seq: int, *, frames: int = 2, width: int = 4, height: int = 4, event_id: str = "e") -> None:
        pixels = bytes((seq * 31 + i) % 256 for i in range(frames * width * height * 4))
        await self.send(pb.ServerMessage(chunk=pb.FrameChunk(
            chunk_seq=seq, event_id=event_id, num_frames=frames, width=width, height=height,
            frame_format=pb.FRAME_FORMAT_RGBA8, pixels=pixels)))

    def acks(self) -> list[str]:
        return [m["ack"]["chunkSeq"] for m in self.received if "ack" in m]


class FakeGateway:
    def __init__(self, script: Callable[[FakeGateway, Conn], Awaitable[None]],
                 refuse: tuple[int, str] | None = None) -> None:
        """``refuse``: (status, body) answered to every HTTP request, as the gateway refuses a wrong token."""
        self.script = script
        self.refuse = refuse
        self.connections: list[Conn] = []
        self.requests: list[dict] = []  # every HTTP request: path and whether it asked for the WebSocket upgrade
        self.errors: list[BaseException] = []
        self.notes: queue.Queue = queue.Queue()  # from scripts to the test thread
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._signals: dict[str, asyncio.Event] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/direct"

    def _event(self, name: str) -> asyncio.Event:
        return self._signals.setdefault(name, asyncio.Event())

    def signal(self, name: str) -> None:
        """From the test thread: wakes the script waiting on ``name``."""
        self._loop.call_soon_threadsafe(lambda: self._event(name).set())

    async def wait(self, name: str) -> None:
        await asyncio.wait_for(self._event(name).wait(), TIMEOUT)

    def _process_request(self, ws: ServerConnection, request):
        self.requests.append({"path": request.path, "upgrade": request.headers.get("Upgrade", "").lower() == "websocket"})
        if self.refuse is not None:
            return ws.respond(http.HTTPStatus(self.refuse[0]), self.refuse[1])
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Conn(ws, len(self.connections) + 1)
        self.connections.append(conn)
        pump = asyncio.ensure_future(conn._pump())
        try:
            await self.script(self, conn)
            await conn.closed.wait()  # keep recording what the client sends until it goes
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)
        finally:
            pump.cancel()

    def _run(self) -> None:
        async def main() -> None:
            async with serve(self._handle, "127.0.0.1", 0, process_request=self._process_request) as server:
                self.port = server.sockets[0].getsockname()[1]
                self._stop = asyncio.Event()
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    def __enter__(self) -> FakeGateway:
        self._thread.start()
        assert self._ready.wait(10), "the fake gateway did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(lambda: self._stop.set())
        self._thread.join(10)
