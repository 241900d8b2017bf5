"""Admission control and the session loop shared by both doors (gRPC ``Direct`` and the WebSocket gateway).

A door only adapts its transport: it hands :func:`run_session` an async iterator of client
messages, an async ``send`` and the peer's address; everything else (validation, credits, cues,
timeouts, closing, freeing resources) happens here, once.

Slots cannot be hogged: a stream must send ``open`` within ``open_timeout_s``, a session with no
client message for ``idle_timeout_s`` is closed (fatal DEADLINE_EXCEEDED), and sessions per peer are
counted by the peer's IP address (not the name the client chose); a peer's entry is dropped with its
last session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from engine_core import ShotStreamEngine

from .logs import clip
from .protocol import ProtocolError, error_message, pb
from .checks import engine_failure
from .session import Session
from .settings import ServerSettings
from .telemetry import gpu_info, gpu_memory_free
from .worker import GpuWorker

log = logging.getLogger(__name__)
Send = Callable[[pb.ServerMessage], Awaitable[None]]
FINAL_SEND_S = 2.0  # how long the last message (a fatal error) may wait for a client that is not reading


class SessionRegistry:
    """Open sessions, the limits on them, and the GPU worker that runs them."""

    def __init__(self, engine: ShotStreamEngine, settings: ServerSettings, worker: GpuWorker,
                 on_chunk: Callable[[float, int], None] | None = None):
        self.engine, self.settings, self.worker = engine, settings, worker
        self.sessions: dict[str, Session] = {}
        self._per_peer: dict[str, int] = {}  # open sessions by peer IP; an entry goes with its last session
        self._peer_of: dict[str, str] = {}  # session id -> peer
        self._on_chunk = on_chunk
        self.shutting_down = False
        self.draining = False  # SIGTERM: open sessions go on, new ones are refused (UNAVAILABLE)
        self.on_change: Callable[[], None] | None = None  # a session opened or closed, or admission changed

    def not_ready(self) -> str | None:
        """Why a new session would be refused now for the server's own state ("stopping", "draining", "full"),
        or None while a slot is free. The readiness endpoint and the gRPC health status report this."""
        if self.shutting_down:
            return "stopping"
        if self.draining:
            return "draining"
        if len(self.sessions) >= self.settings.max_sessions:
            return "full"
        return None

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def open(self, msg: pb.OpenSession, peer: str) -> Session:
        """Admit and create a session for ``peer`` (its address), or raise ProtocolError (RESOURCE_EXHAUSTED
        when full)."""
        exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
        if self.shutting_down:
            raise ProtocolError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down", fatal=True)
        if self.draining:
            raise ProtocolError(grpc.StatusCode.UNAVAILABLE, "the server is draining (it stops once its open sessions "
                                                             "end): open the session on another server", fatal=True)
        if len(self.sessions) >= self.settings.max_sessions:
            raise ProtocolError(exhausted, f"the server is full: {len(self.sessions)} of {self.settings.max_sessions} "
                                           "sessions are open; close one or try again later", fatal=True)
        client = clip(msg.client_name or "anonymous", self.settings.max_log_chars)
        host = peer_host(peer)
        if self._per_peer.get(host, 0) >= self.settings.max_sessions_per_peer:
            raise ProtocolError(exhausted, f"{host} already has {self._per_peer[host]} open sessions (limit "
                                           f"{self.settings.max_sessions_per_peer}, max_sessions_per_peer)", fatal=True)
        realtime = self.settings.realtime_admission
        if realtime or (realtime is None and self.engine.device.type == "cuda"):
            reason = self.worker.capacity.refuse_reason(len(self.sessions), self.engine.config.stream.fps)
            if reason is not None:
                raise ProtocolError(exhausted, reason, fatal=True)
        free = gpu_memory_free(self.engine.device)
        need = self.story_bytes() + self.settings.gpu_memory_reserve_bytes
        if free is not None and free < need:
            raise ProtocolError(exhausted, f"not enough free GPU memory for another session: {free / 2**30:.1f} GiB "
                                           f"free, {need / 2**30:.1f} GiB needed", fatal=True)
        fork_of = self._fork_source(msg)
        try:
            session = Session(uuid.uuid4().hex[:12], msg, self.engine, self.settings, asyncio.get_running_loop(),
                              self._on_chunk, post=self.worker.post, renderer=self.worker, fork_of=fork_of)
        except ProtocolError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. no GPU memory for the caches, no room for the ring file
            log.exception("could not open a session for %s", client)
            raise engine_failure("could not open the session", exc) from exc
        session.server_stats = self._server_stats
        self.sessions[session.id] = session
        self._per_peer[host] = self._per_peer.get(host, 0) + 1
        self._peer_of[session.id] = host
        self.worker.add(session)
        self._changed()
        log.info("session %s opened by %s from %s (%s)", session.id, client, host,
                 pb.Transport.Name(session.transport))
        return session

    def _fork_source(self, msg: pb.OpenSession) -> Session | None:
        """The open session ``msg.fork`` names (its id is the capability to fork it)."""
        if not msg.HasField("fork"):
            return None
        if msg.HasField("snapshot"):
            raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT, "OpenSession sets both snapshot and fork: "
                                                                  "continue one story", fatal=True)
        source = self.sessions.get(msg.fork.session_id)
        if source is None:
            raise ProtocolError(grpc.StatusCode.NOT_FOUND, f"no open session {clip(msg.fork.session_id, 64)!r} on "
                                                           "this server to fork: a fork opens on the server that runs "
                                                           "the original (or send its snapshot instead)", fatal=True)
        return source

    def close(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        host = self._peer_of.pop(session.id)
        self._per_peer[host] -= 1
        if not self._per_peer[host]:
            del self._per_peer[host]
        self.worker.remove(session)
        self._changed()
        log.info("session %s closed", session.id)

    def drain(self) -> None:
        """Refuse new sessions (UNAVAILABLE "draining"); open ones go on."""
        self.draining = True
        self._changed()

    def shutdown(self, reason: str = "server shutdown") -> None:
        """Refuse new sessions and tell every open one it is ending with ``closed{reason}`` (its loop then frees
        it): "server shutdown" (Ctrl-C), or "server draining" (a drain's grace ran out: a client may continue
        its story elsewhere from a snapshot)."""
        self.shutting_down = True
        for session in list(self.sessions.values()):
            session.closing = True
            session.outbox.put_nowait(pb.ServerMessage(closed=pb.SessionClosed(reason=reason)))
        self._changed()

    def _server_stats(self) -> dict[str, int]:
        """Server-wide fields of a session's Stats message (any thread)."""
        gpu = gpu_info(self.engine.device)
        return {"sessions": len(self.sessions), "gpu_memory_used_bytes": gpu["memory_used_bytes"] if gpu else 0}

    def story_bytes(self) -> int:
        """GPU memory one story needs for its caches (the dominant per-session cost)."""
        cfg = self.engine.config
        tokens = cfg.tokens_per_frame * (cfg.stream.context_frames + cfg.max_latent_frames)
        return 2 * cfg.dit.num_layers * tokens * cfg.dit.dim * self.engine.dtype.itemsize


def peer_host(peer: str) -> str:
    """The host part of a gRPC peer (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``, ``unix:/path``) or a plain address."""
    kind, sep, rest = peer.partition(":")
    if not sep or kind not in ("ipv4", "ipv6", "unix", "unix-abstract"):
        return peer
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") if rest.startswith("[") else rest
    return rest.rpartition(":")[0] if kind == "ipv4" else kind


async def run_session(registry: SessionRegistry, incoming: AsyncIterator[pb.ClientMessage], send: Send,
                      peer: str) -> ProtocolError | None:
    """Drive one session from its first (``open``) message to its end; always frees it. Returns the fatal
    error the session ended with when it could not be sent (the client stopped reading): the door ends
    the connection with it."""
    try:
        first = await asyncio.wait_for(anext(incoming), registry.settings.open_timeout_s)
    except StopAsyncIteration:
        return
    except asyncio.TimeoutError:
        await _send_final(send, error_message(ProtocolError(
            grpc.StatusCode.DEADLINE_EXCEEDED, f"no `open` within {registry.settings.open_timeout_s:g} s "
            "(open_timeout_s): send `open` as the first message", fatal=True)))
        return
    if first.WhichOneof("kind") != "open":
        await send(error_message(ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                                               "the first message of a session must be `open`", fatal=True)))
        return
    try:
        session = registry.open(first.open, peer)
    except ProtocolError as exc:
        await send(error_message(exc))
        return
    activity = [time.monotonic()]  # when the client last sent a message
    reader = asyncio.create_task(_read(registry, session, incoming, activity))
    ending = asyncio.create_task(_watch(session, activity, registry.settings.idle_timeout_s))
    pending: set[asyncio.Future] = set()
    try:
        await send(session.opened_message())
        while True:
            getter = asyncio.ensure_future(session.outbox.get())
            pending = {getter}
            done, _ = await asyncio.wait({getter, reader, ending}, return_when=asyncio.FIRST_COMPLETED)
            if ending in done:
                await _send_final(send, error_message(ending.result()))
                return
            if getter not in done:
                getter.cancel()
                reason = reader.result()
                if session.outbox.overflowed.is_set():
                    await _send_final(send, error_message(session.outbox.overflow_error()))
                    return
                msg = pb.ServerMessage(closed=pb.SessionClosed(reason=reason))
            else:
                msg = getter.result()
            kind = msg.WhichOneof("kind")
            if kind == "closed":  # client close or server shutdown: queued messages, then the takes' take_saved
                sending = asyncio.ensure_future(_closing(session, send, msg))
            else:
                if kind == "chunk":
                    session.delivered(msg.chunk.chunk_seq)  # handed to the transport: the client may ack it now
                sending = asyncio.ensure_future(send(msg))
            pending = {sending}
            done, _ = await asyncio.wait({sending, ending}, return_when=asyncio.FIRST_COMPLETED)
            if sending not in done:  # the client stopped reading and was idle or flooded us meanwhile
                # Leave the blocked write alone (cancelling it breaks the call): the door ends the call with
                # this error's status, which fails the pending write.
                pending = set()
                sending.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
                return ending.result()
            sending.result()
            if kind == "closed" or (kind == "error" and msg.error.fatal):
                return
    finally:
        for task in (*pending, reader, ending):  # e.g. the call was cancelled (client gone) while waiting
            task.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await session.takes.finish(None, None)  # the client is gone or the session failed: still finish the file
        finally:  # also when the call is cancelled during these waits (the file then finishes in the background)
            registry.close(session)


async def _read(registry: SessionRegistry, session: Session, incoming: AsyncIterator[pb.ClientMessage],
                activity: list[float]) -> str:
    """Feed client messages to the session; returns why the client side ended."""
    async for msg in incoming:
        activity[0] = time.monotonic()
        if msg.WhichOneof("kind") == "close":
            return "client"
        try:
            if session.handle(msg):
                registry.worker.notify()
        except ProtocolError as exc:
            session.outbox.put_nowait(error_message(exc))
            if exc.fatal:
                return "error"
        if session.outbox.overflowed.is_set():
            return "error"  # stop reading: the session loop ends the session
    return "client disconnected"


async def _watch(session: Session, activity: list[float], idle_s: float) -> ProtocolError:
    """Returns the fatal error that ends the session: the outbox overflowed, or the client went idle."""
    overflow = asyncio.ensure_future(session.outbox.overflowed.wait())
    try:
        while True:
            left = activity[0] + idle_s - time.monotonic()
            if left <= 0:
                return ProtocolError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                     f"no message from the client for {idle_s:g} s (idle_timeout_s): the session is "
                                     "closed to free its slot", fatal=True)
            await asyncio.wait({overflow}, timeout=left)
            if overflow.done():
                return session.outbox.overflow_error()
    finally:
        overflow.cancel()


async def _closing(session: Session, send: Send, closed: pb.ServerMessage) -> None:
    await session.takes.finish(lambda: _drain(session, send), send)
    await send(closed)


async def _send_final(send: Send, msg: pb.ServerMessage) -> None:
    """Send the message that ends a session, giving up after FINAL_SEND_S on a client that does not read."""
    with contextlib.suppress(asyncio.TimeoutError, Exception):
        await asyncio.wait_for(send(msg), FINAL_SEND_S)


async def _drain(session: Session, send: Send) -> None:
    while not session.outbox.empty():
        msg = session.outbox.get_nowait()
        if msg.WhichOneof("kind") == "chunk":
            session.delivered(msg.chunk.chunk_seq)
        await send(msg)
