"""Admission control and the session loop shared by both doors (gRPC ``Direct`` and the WebSocket gateway).

A door only adapts its transport: it hands :func:`run_session` an async iterator of client
messages and an async ``send``; everything else (validation, credits, cues, closing, freeing
resources) happens here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future

import grpc

from engine_core import ShotStreamEngine

from .protocol import ProtocolError, error_message, pb
from .session import Session, engine_failure
from .settings import ServerSettings
from .telemetry import gpu_info, gpu_memory_free
from .worker import GpuWorker

log = logging.getLogger(__name__)
Send = Callable[[pb.ServerMessage], Awaitable[None]]
_TAKE_FINISH_S = 60.0  # how long a closing session waits for its take's encoder to finish the file


class SessionRegistry:
    """Open sessions, the limits on them, and the GPU worker that runs them."""

    def __init__(self, engine: ShotStreamEngine, settings: ServerSettings, worker: GpuWorker,
                 on_chunk: Callable[[float, int], None] | None = None):
        self.engine, self.settings, self.worker = engine, settings, worker
        self.sessions: dict[str, Session] = {}
        self._per_client: Counter[str] = Counter()
        self._on_chunk = on_chunk
        self.shutting_down = False

    def open(self, msg: pb.OpenSession) -> Session:
        """Admit and create a session, or raise ProtocolError (RESOURCE_EXHAUSTED when full)."""
        exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
        if self.shutting_down:
            raise ProtocolError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down", fatal=True)
        if len(self.sessions) >= self.settings.max_sessions:
            raise ProtocolError(exhausted, f"the server is full: {len(self.sessions)} of {self.settings.max_sessions} "
                                           "sessions are open; close one or try again later", fatal=True)
        client = msg.client_name or "anonymous"
        if self._per_client[client] >= self.settings.max_sessions_per_client:
            raise ProtocolError(exhausted, f"client {client!r} already has {self._per_client[client]} open sessions "
                                           f"(limit {self.settings.max_sessions_per_client})", fatal=True)
        free = gpu_memory_free(self.engine.device)
        need = self.story_bytes() + self.settings.gpu_memory_reserve_bytes
        if free is not None and free < need:
            raise ProtocolError(exhausted, f"not enough free GPU memory for another session: {free / 2**30:.1f} GiB "
                                           f"free, {need / 2**30:.1f} GiB needed", fatal=True)
        try:
            session = Session(uuid.uuid4().hex[:12], msg, self.engine, self.settings, asyncio.get_running_loop(),
                              self._on_chunk)
        except ProtocolError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. no GPU memory for the caches, no room for the ring file
            log.exception("could not open a session for %s", client)
            raise engine_failure("could not open the session", exc) from exc
        session.server_stats = self._server_stats
        self.sessions[session.id] = session
        self._per_client[session.client_name] += 1
        self.worker.add(session)
        log.info("session %s opened by %s (%s)", session.id, session.client_name,
                 pb.Transport.Name(session.transport))
        return session

    def close(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        self._per_client[session.client_name] -= 1
        self.worker.remove(session)
        log.info("session %s closed", session.id)

    def shutdown(self) -> None:
        """Refuse new sessions and tell every open one it is ending (its loop then frees it)."""
        self.shutting_down = True
        for session in list(self.sessions.values()):
            session.closing = True
            session.outbox.put_nowait(pb.ServerMessage(closed=pb.SessionClosed(reason="server shutdown")))

    def _server_stats(self) -> dict[str, int]:
        """Server-wide fields of a session's Stats message (any thread)."""
        gpu = gpu_info(self.engine.device)
        return {"sessions": len(self.sessions), "gpu_memory_used_bytes": gpu["memory_used_bytes"] if gpu else 0}

    def story_bytes(self) -> int:
        """GPU memory one story needs for its caches (the dominant per-session cost)."""
        cfg = self.engine.config
        tokens = cfg.tokens_per_frame * (cfg.stream.context_frames + cfg.max_latent_frames)
        return 2 * cfg.dit.num_layers * tokens * cfg.dit.dim * self.engine.dtype.itemsize


async def run_session(registry: SessionRegistry, incoming: AsyncIterator[pb.ClientMessage], send: Send) -> None:
    """Drive one session from its first (``open``) message to its end; always frees it."""
    try:
        first = await anext(incoming)
    except StopAsyncIteration:
        return
    if first.WhichOneof("kind") != "open":
        await send(error_message(ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                                               "the first message of a session must be `open`", fatal=True)))
        return
    try:
        session = registry.open(first.open)
    except ProtocolError as exc:
        await send(error_message(exc))
        return
    reader = asyncio.create_task(_read(registry, session, incoming))
    getter: asyncio.Future | None = None
    try:
        await send(session.opened_message())
        while True:
            getter = asyncio.ensure_future(session.outbox.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                reason = reader.result()
                await _end_take(session, send)  # sends what is queued, then the takes' take_saved
                await send(pb.ServerMessage(closed=pb.SessionClosed(reason=reason)))
                return
            msg = getter.result()
            if msg.WhichOneof("kind") == "closed":  # server shutdown: the take is saved and reported first
                await _end_take(session, send)
            await send(msg)
            kind = msg.WhichOneof("kind")
            if kind == "closed" or (kind == "error" and msg.error.fatal):
                return
    finally:
        if getter is not None:  # e.g. the call was cancelled (client gone) while waiting for a message
            getter.cancel()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await _end_take(session, None)  # the client is gone or the session failed: still finish the file
        registry.close(session)


async def _read(registry: SessionRegistry, session: Session, incoming: AsyncIterator[pb.ClientMessage]) -> str:
    """Feed client messages to the session; returns why the client side ended."""
    async for msg in incoming:
        if msg.WhichOneof("kind") == "close":
            return "client"
        try:
            if session.handle(msg):
                registry.worker.notify()
        except ProtocolError as exc:
            session.outbox.put_nowait(error_message(exc))
            if exc.fatal:
                return "error"
    return "client disconnected"


async def _end_take(session: Session, send: Send | None) -> None:
    """Finish the session's takes and, when ``send`` is given, report every ``take_saved`` before the end."""
    stopped, recording = session.end_takes()
    for done in stopped:  # their take_saved is emitted to the outbox when the file is complete
        await _take_finished(session, done)
    if send is not None:
        await _drain(session, send)
    if recording is not None:
        msg = await _take_finished(session, recording)
        if send is not None and msg is not None:
            await send(msg)


async def _take_finished(session: Session, done: Future) -> pb.ServerMessage | None:
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(done)), _TAKE_FINISH_S)
    except asyncio.TimeoutError:
        log.error("session %s: a take is still encoding after %.0f s; it finishes in the background", session.id,
                  _TAKE_FINISH_S)
        return None


async def _drain(session: Session, send: Send) -> None:
    while not session.outbox.empty():
        await send(session.outbox.get_nowait())
