"""Python client for a ShotStream Bridge server: :class:`ShotStreamClient` (blocking) and
:class:`AsyncShotStreamClient` (asyncio). Both hide the wire (gRPC ``shotstream.v1``) and the frame
transport (inline bytes or the same-host shared-memory ring)::

    from service.sdk import ShotStreamClient, Chunk, ShotFinished

    with ShotStreamClient("127.0.0.1:50051") as client:
        with client.open_session("A rainy neon city at night.", seed=7) as session:
            session.cue("The detective steps out of a taxi.", num_chunks=2)
            for event in session:
                if isinstance(event, Chunk):
                    show(event.frames)          # numpy uint8 [n, H, W, C], yours to keep
                elif isinstance(event, ShotFinished):
                    break

The async client is the same with ``await`` / ``async for`` / ``async with``.

Frames and acknowledgements: the server generates at most ``chunks_in_flight`` chunks ahead of
what this client has taken. A chunk is acknowledged automatically the moment the iterator hands it
to you, because by then its pixels have been copied out (from the shared-memory ring, whose slot
the server may then reuse) or received inline: ``Chunk.frames`` is owned by the caller and stays
valid forever. (Inline frames are a read-only view of the received message bytes; copy before
writing into them.) A consumer that stops iterating therefore pauses its own session, and the
server never buffers more than ``chunks_in_flight`` chunks for it.

Errors: anything that ends the session or the call (a refused open, a fatal session error, a gRPC
status such as UNAVAILABLE or UNAUTHENTICATED) raises :class:`ShotStreamError`, with the gRPC
status code and the server's message. Non-fatal problems (e.g. a rejected cue) arrive as
:class:`ServerError` events and the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import grpc
import numpy as np

from .protocol import PROTOCOL_VERSION, channels, pb, pb_grpc

__all__ = [
    "ShotStreamClient", "AsyncShotStreamClient", "Session", "AsyncSession", "ShotStreamError",
    "Chunk", "ChunkTiming", "ShotStarted", "ShotFinished", "Stats", "ServerError", "CueAccepted", "Progress",
    "SessionInfo", "ServerInfo", "Event", "DEFAULT_ADDRESS", "MAX_MESSAGE_BYTES",
]

DEFAULT_ADDRESS = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # one RGBA chunk at 480x832 is 19 MB
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]

_TRANSPORTS = {"shared_memory": pb.TRANSPORT_SHARED_MEMORY, "shm": pb.TRANSPORT_SHARED_MEMORY,
               "inline": pb.TRANSPORT_INLINE}
_FORMATS = {"rgb8": pb.FRAME_FORMAT_RGB8, "rgb": pb.FRAME_FORMAT_RGB8,
            "rgba8": pb.FRAME_FORMAT_RGBA8, "rgba": pb.FRAME_FORMAT_RGBA8}
_MODES = {"wait": pb.CUE_MODE_WAIT, "cut": pb.CUE_MODE_CUT}
_TRANSPORT_NAMES = {pb.TRANSPORT_SHARED_MEMORY: "shared_memory", pb.TRANSPORT_INLINE: "inline"}
_FORMAT_NAMES = {pb.FRAME_FORMAT_RGB8: "rgb8", pb.FRAME_FORMAT_RGBA8: "rgba8"}


# -- errors -------------------------------------------------------------------------------------


class ShotStreamError(Exception):
    """The session or call ended: ``code`` is a :class:`grpc.StatusCode`, ``message`` says why."""

    def __init__(self, code: grpc.StatusCode, message: str, event_id: str = ""):
        super().__init__(f"{code.name}: {message}")
        self.code, self.message, self.event_id = code, message, event_id


def _status(code: int) -> grpc.StatusCode:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status
    return grpc.StatusCode.UNKNOWN


def _from_rpc_error(exc: grpc.RpcError) -> ShotStreamError:
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    return ShotStreamError(code or grpc.StatusCode.UNKNOWN, details or "the call failed with no message")


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkTiming:
    """Server-side timings of one chunk (ms), as in ``shotstream.v1.ChunkTiming``."""

    commit_ms: float
    denoise_ms: float
    decode_ms: float
    queue_ms: float
    since_shot_start_ms: float


@dataclass(frozen=True, eq=False)
class Chunk:
    """Decoded frames of one chunk. ``frames``: numpy uint8 ``[n, H, W, C]`` (C = 3 or 4), owned by you."""

    frames: np.ndarray
    chunk_seq: int
    event_id: str
    shot_index: int
    chunk_index: int
    first_frame: int  # index of frames[0] within the shot
    story_frame: int  # index of frames[0] within the session
    last_in_shot: bool
    frame_format: str  # "rgb8" | "rgba8"
    transport: str  # "inline" | "shared_memory"
    timing: ChunkTiming | None
    received_at: float  # time.perf_counter() when the message arrived
    copy_ms: float  # client side: getting the pixels out of the ring / message into ``frames``

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


@dataclass(frozen=True)
class ShotStarted:
    event_id: str
    tags: tuple[str, ...]
    shot_index: int
    num_chunks: int
    num_frames: int  # frames if not cut
    prompt_tokens: int
    truncated_tokens: int  # tokens dropped by the 512-token limit
    setup_ms: float  # text encode + history re-encode + context fill
    received_at: float


@dataclass(frozen=True)
class ShotFinished:
    event_id: str
    shot_index: int
    chunks: int
    frames: int
    cut: bool
    received_at: float


@dataclass(frozen=True)
class CueAccepted:
    event_id: str
    queue_position: int  # 0 = starts next


@dataclass(frozen=True)
class Stats:
    chunks_sent: int
    frames_sent: int
    chunk_ms_mean: float
    fps: float
    queued_cues: int
    chunks_in_flight: int
    paused: bool
    sessions: int
    gpu_memory_used_bytes: int


@dataclass(frozen=True)
class ServerError:
    """A non-fatal error (e.g. a rejected cue); the session goes on."""

    code: grpc.StatusCode
    message: str
    event_id: str


@dataclass(frozen=True)
class Progress:
    """RenderStory progress."""

    shots_done: int
    shots_total: int
    frames_done: int
    frames_total: int


Event = Union[Chunk, ShotStarted, ShotFinished, CueAccepted, Stats, ServerError, Progress]


@dataclass(frozen=True)
class SessionInfo:
    """What the server granted in ``SessionOpened``."""

    session_id: str
    width: int
    height: int
    fps: int
    frames_first_chunk: int
    frames_per_chunk: int
    max_chunks_per_shot: int
    frame_format: str
    transport: str
    chunks_in_flight: int
    model: str
    random_weights: bool
    ring_path: str | None


@dataclass(frozen=True)
class ServerInfo:
    protocol_version: int
    server_version: str
    model: str
    weights: str
    random_weights: bool
    device: str
    gpu: dict[str, Any] | None
    width: int
    height: int
    fps: int
    max_sessions: int
    max_sessions_per_client: int
    open_sessions: int
    max_prompt_chars: int
    max_chunks_per_shot: int
    max_chunks_in_flight: int


def _server_info(msg: pb.ServerInfo) -> ServerInfo:
    gpu = None
    if msg.HasField("gpu"):
        gpu = {"name": msg.gpu.name, "memory_total_bytes": msg.gpu.memory_total_bytes,
               "memory_used_bytes": msg.gpu.memory_used_bytes, "utilization_percent": msg.gpu.utilization_percent}
    return ServerInfo(
        protocol_version=msg.protocol_version, server_version=msg.server_version, model=msg.model,
        weights=msg.weights, random_weights=msg.random_weights, device=msg.device, gpu=gpu, width=msg.width,
        height=msg.height, fps=msg.fps, max_sessions=msg.max_sessions,
        max_sessions_per_client=msg.max_sessions_per_client, open_sessions=msg.open_sessions,
        max_prompt_chars=msg.max_prompt_chars, max_chunks_per_shot=msg.max_chunks_per_shot,
        max_chunks_in_flight=msg.max_chunks_in_flight)


def _timing(msg: pb.FrameChunk) -> ChunkTiming | None:
    if not msg.HasField("timing"):
        return None
    t = msg.timing
    return ChunkTiming(t.commit_ms, t.denoise_ms, t.decode_ms, t.queue_ms, t.since_shot_start_ms)


def _shot_started(m: pb.ShotStarted, now: float) -> ShotStarted:
    return ShotStarted(m.event_id, tuple(m.tags), m.shot_index, m.num_chunks, m.num_frames, m.prompt_tokens,
                       m.truncated_tokens, m.setup_ms, now)


def _shot_finished(m: pb.ShotFinished, now: float) -> ShotFinished:
    return ShotFinished(m.event_id, m.shot_index, m.chunks, m.frames, m.cut, now)


def _stats(m: pb.Stats) -> Stats:
    return Stats(m.chunks_sent, m.frames_sent, m.chunk_ms_mean, m.fps, m.queued_cues, m.chunks_in_flight, m.paused,
                 m.sessions, m.gpu_memory_used_bytes)


def _inline_chunk(m: pb.FrameChunk, now: float, transport: str = "inline") -> Chunk:
    t0 = time.perf_counter()
    fmt = m.frame_format or pb.FRAME_FORMAT_RGB8
    shape = (m.num_frames, m.height, m.width, channels(fmt))
    pixels = m.pixels
    if len(pixels) != int(np.prod(shape)):
        raise ShotStreamError(grpc.StatusCode.DATA_LOSS, f"chunk {m.chunk_seq} carries {len(pixels)} bytes; "
                                                         f"{list(shape)} needs {int(np.prod(shape))}")
    frames = np.frombuffer(pixels, np.uint8).reshape(shape)
    return _chunk(m, frames, transport, now, t0)


def _chunk(m: pb.FrameChunk, frames: np.ndarray, transport: str, now: float, t0: float) -> Chunk:
    return Chunk(frames=frames, chunk_seq=m.chunk_seq, event_id=m.event_id, shot_index=m.shot_index,
                 chunk_index=m.chunk_index, first_frame=m.first_frame, story_frame=m.story_frame,
                 last_in_shot=m.last_in_shot, frame_format=_FORMAT_NAMES.get(m.frame_format or 1, "rgb8"),
                 transport=transport, timing=_timing(m), received_at=now, copy_ms=1e3 * (time.perf_counter() - t0))


def _choice(value: str | int, table: dict[str, int], what: str) -> int:
    if isinstance(value, int):
        return value
    try:
        return table[value.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"{what} must be one of {sorted(table)}, got {value!r}") from None


def _open_message(global_caption: str, seed: int, transport: str, frame_format: str, chunks_in_flight: int,
                  client_name: str) -> pb.ClientMessage:
    return pb.ClientMessage(open=pb.OpenSession(
        protocol_version=PROTOCOL_VERSION, client_name=client_name, global_caption=global_caption, seed=int(seed),
        frame_format=_choice(frame_format, _FORMATS, "frame_format"),
        transport=_choice(transport, _TRANSPORTS, "transport"), max_chunks_in_flight=int(chunks_in_flight)))


def _cue_message(prompt: str, num_chunks: int, mode: str, event_id: str | None, tags: Iterable[str]
                 ) -> tuple[str, pb.ClientMessage]:
    event_id = event_id if event_id is not None else uuid.uuid4().hex[:12]
    if isinstance(tags, str):
        tags = (tags,)
    return event_id, pb.ClientMessage(cue=pb.Cue(event_id=event_id, prompt=prompt, tags=list(tags),
                                                 num_chunks=int(num_chunks), mode=_choice(mode, _MODES, "mode")))


def _story_request(global_caption: str, shots: Iterable[Any], seed: int, frame_format: str) -> pb.RenderStoryRequest:
    """Shots: strings, ``(prompt, num_chunks)`` pairs, dicts with 'prompt' and 'chunks'/'num_chunks', or
    objects with ``.prompt`` and ``.chunks`` (``service.story_file.ShotSpec``). 0 / None chunks = full shot."""
    out = []
    for shot in shots:
        if isinstance(shot, str):
            prompt, n = shot, 0
        elif isinstance(shot, (tuple, list)):
            prompt, n = shot[0], shot[1] if len(shot) > 1 else 0
        elif isinstance(shot, dict):
            prompt, n = shot["prompt"], shot.get("num_chunks", shot.get("chunks"))
        else:
            prompt, n = shot.prompt, getattr(shot, "num_chunks", getattr(shot, "chunks", None))
        out.append(pb.StoryShot(prompt=prompt, num_chunks=int(n or 0)))
    return pb.RenderStoryRequest(protocol_version=PROTOCOL_VERSION, global_caption=global_caption, seed=int(seed),
                                 shots=out, frame_format=_choice(frame_format, _FORMATS, "frame_format"))


def _story_event(ev: pb.RenderStoryEvent) -> Event | None:
    now = time.perf_counter()
    kind = ev.WhichOneof("kind")
    if kind == "chunk":
        return _inline_chunk(ev.chunk, now)
    if kind == "shot_started":
        return _shot_started(ev.shot_started, now)
    if kind == "shot_finished":
        return _shot_finished(ev.shot_finished, now)
    if kind == "progress":
        p = ev.progress
        return Progress(p.shots_done, p.shots_total, p.frames_done, p.frames_total)
    return None


class _Decoder:
    """Turns ServerMessages into events; owns the ring reader. Shared by both session kinds."""

    def __init__(self, opened: pb.SessionOpened, address: str):
        self.info = SessionInfo(
            session_id=opened.session_id, width=opened.width, height=opened.height, fps=opened.fps,
            frames_first_chunk=opened.frames_first_chunk, frames_per_chunk=opened.frames_per_chunk,
            max_chunks_per_shot=opened.max_chunks_per_shot,
            frame_format=_FORMAT_NAMES.get(opened.frame_format, "rgb8"),
            transport=_TRANSPORT_NAMES.get(opened.transport, "inline"), chunks_in_flight=opened.max_chunks_in_flight,
            model=opened.model, random_weights=opened.random_weights,
            ring_path=opened.ring.path if opened.HasField("ring") else None)
        self.reader = None
        if opened.transport == pb.TRANSPORT_SHARED_MEMORY:
            path = opened.ring.path
            if not path or not os.path.exists(path):
                raise ShotStreamError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"the server put this session's shared-memory ring at {path!r}, which does not exist on this "
                    f"machine: shared memory only works when client and server run on the same host (server: "
                    f"{address}). Open the session with transport='inline' instead.")
            from .ring import RingReader

            try:
                self.reader = RingReader(opened.ring)
            except PermissionError as exc:
                raise ShotStreamError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"cannot map the shared-memory ring {path}: {exc}. The ring file is private to the server's "
                    "user (mode 0600): run the client as the same user, or use transport='inline'.") from None
            except (OSError, ValueError) as exc:
                raise ShotStreamError(grpc.StatusCode.FAILED_PRECONDITION,
                                      f"cannot map the shared-memory ring {path}: {exc}; "
                                      "use transport='inline'") from None

    def decode(self, msg: pb.ServerMessage) -> tuple[str, Any]:
        """('event', ev) | ('chunk', Chunk) | ('closed', reason); raises ShotStreamError when fatal."""
        now = time.perf_counter()
        kind = msg.WhichOneof("kind")
        if kind == "chunk":
            m = msg.chunk
            if m.WhichOneof("payload") == "ring_slot":
                return "chunk", self._ring_chunk(m, now)
            return "chunk", _inline_chunk(m, now, self.info.transport)
        if kind == "shot_started":
            return "event", _shot_started(msg.shot_started, now)
        if kind == "shot_finished":
            return "event", _shot_finished(msg.shot_finished, now)
        if kind == "cue_accepted":
            return "event", CueAccepted(msg.cue_accepted.event_id, msg.cue_accepted.queue_position)
        if kind == "stats":
            return "event", _stats(msg.stats)
        if kind == "error":
            e = msg.error
            if e.fatal:
                raise ShotStreamError(_status(e.code), e.message, e.event_id)
            return "event", ServerError(_status(e.code), e.message, e.event_id)
        if kind == "closed":
            return "closed", msg.closed.reason
        return "event", None  # a message kind added after this client was written: ignore it

    def _ring_chunk(self, m: pb.FrameChunk, now: float) -> Chunk:
        t0 = time.perf_counter()
        if self.reader is None:
            raise ShotStreamError(grpc.StatusCode.INTERNAL, "a ring-slot chunk arrived on an inline session")
        fmt = m.frame_format or pb.FRAME_FORMAT_RGB8
        shape = (m.num_frames, m.height, m.width, channels(fmt))
        from .ring import StaleSlotError

        try:
            frames = self.reader.read(m.ring_slot)  # a fresh copy, checked against concurrent reuse
        except (StaleSlotError, ValueError) as exc:
            raise ShotStreamError(grpc.StatusCode.DATA_LOSS, f"chunk {m.chunk_seq}: {exc}") from None
        if frames.size != int(np.prod(shape)):
            raise ShotStreamError(grpc.StatusCode.DATA_LOSS, f"chunk {m.chunk_seq}: the ring slot holds "
                                                             f"{frames.size} bytes; {list(shape)} needs "
                                                             f"{int(np.prod(shape))}")
        return _chunk(m, frames.reshape(shape), "shared_memory", now, t0)

    def close(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.close()


def _ack(seq: int) -> pb.ClientMessage:
    return pb.ClientMessage(ack=pb.Ack(chunk_seq=seq))


def _credentials(root_certificates: bytes | str | Path | None, tls: bool | None) -> grpc.ChannelCredentials | None:
    if tls is False and root_certificates is None:
        return None
    if root_certificates is None and not tls:
        return None
    if isinstance(root_certificates, (str, Path)):
        root_certificates = Path(root_certificates).read_bytes()
    return grpc.ssl_channel_credentials(root_certificates=root_certificates)


# -- blocking client ----------------------------------------------------------------------------


class ShotStreamClient:
    """Blocking client. ``token``: bearer token the server requires (sent as ``authorization: Bearer``).
    ``root_certificates``: PEM bytes (or a file path) for a TLS server; ``tls=True`` uses the system roots."""

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str | None = None,
                 root_certificates: bytes | str | Path | None = None, *, tls: bool | None = None):
        self.address = address
        creds = _credentials(root_certificates, tls)
        self._channel = (grpc.secure_channel(address, creds, options=_CHANNEL_OPTIONS) if creds is not None
                         else grpc.insecure_channel(address, options=_CHANNEL_OPTIONS))
        self._stub = pb_grpc.ShotStreamStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()

    def server_info(self, timeout: float | None = 10.0) -> ServerInfo:
        try:
            return _server_info(self._stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=timeout,
                                                         metadata=self._metadata))
        except grpc.RpcError as exc:
            raise _from_rpc_error(exc) from None

    def open_session(self, global_caption: str, seed: int = 0, transport: str = "shared_memory",
                     frame_format: str = "rgb8", chunks_in_flight: int = 2, client_name: str = "python-sdk"
                     ) -> Session:
        """Open an interactive session (gRPC ``Direct``). Raises ShotStreamError when refused."""
        session = Session(self, _open_message(global_caption, seed, transport, frame_format, chunks_in_flight,
                                              client_name))
        self._sessions.add(session)
        return session

    def render_story(self, global_caption: str, shots: Iterable[Any], seed: int = 0, frame_format: str = "rgb8",
                     timeout: float | None = None) -> Iterator[Event]:
        """A whole story, headless (gRPC ``RenderStory``): yields ShotStarted, Chunk (inline), ShotFinished and
        Progress events. Closing the iterator early cancels the render on the server."""
        request = _story_request(global_caption, shots, seed, frame_format)
        call = self._stub.RenderStory(request, timeout=timeout, metadata=self._metadata)
        try:
            for ev in call:
                out = _story_event(ev)
                if out is not None:
                    yield out
        except grpc.RpcError as exc:
            raise _from_rpc_error(exc) from None
        finally:
            call.cancel()

    def close(self) -> None:
        """Close the channel; sessions still open are cancelled (use ``Session.close`` for a clean end)."""
        for session in list(self._sessions):
            session._abort()
        self._channel.close()

    def __enter__(self) -> ShotStreamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_END = object()


def _request_iter(requests: queue.SimpleQueue) -> Iterator[pb.ClientMessage]:
    """Client messages for a sync ``Direct`` call (consumed by a gRPC thread) until ``_END``.
    Module-level, so the call does not keep its Session alive."""
    while True:
        msg = requests.get()
        if msg is _END:
            return
        yield msg


class Session:
    """One interactive story (blocking). Create with :meth:`ShotStreamClient.open_session`.

    ``cue``/``pause``/``resume``/``close`` may be called from any thread; iterate from one thread.
    Iteration yields events until the session closes; a fatal error raises ShotStreamError.
    """

    def __init__(self, client: ShotStreamClient, open_msg: pb.ClientMessage):
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._requests.put(open_msg)
        self._recv_lock = threading.Lock()
        self._done = threading.Event()
        self._close_sent = False
        self.close_reason: str | None = None
        self._decoder: _Decoder | None = None
        self._call = client._stub.Direct(_request_iter(self._requests), metadata=client._metadata)
        try:
            first = self._recv()
            if first is None:
                raise ShotStreamError(grpc.StatusCode.UNAVAILABLE, "the server ended the stream without opening "
                                                                   "the session")
            kind = first.WhichOneof("kind")
            if kind == "error":
                raise ShotStreamError(_status(first.error.code), first.error.message)
            if kind != "opened":
                raise ShotStreamError(grpc.StatusCode.INTERNAL, f"expected `opened`, the server sent `{kind}`")
            self._decoder = _Decoder(first.opened, client.address)
        except BaseException:
            self._abort()
            raise
        self.info: SessionInfo = self._decoder.info

    @property
    def session_id(self) -> str:
        return self.info.session_id

    def _send(self, msg: pb.ClientMessage) -> None:
        if self._done.is_set() or self._close_sent:
            raise ShotStreamError(grpc.StatusCode.FAILED_PRECONDITION, "the session is closed")
        self._requests.put(msg)

    def _recv(self) -> pb.ServerMessage | None:
        try:
            return next(self._call)
        except StopIteration:
            return None
        except grpc.RpcError as exc:
            raise _from_rpc_error(exc) from None

    # -- control ------------------------------------------------------------------------------

    def cue(self, prompt: str, num_chunks: int = 0, mode: str = "wait", event_id: str | None = None,
            tags: Iterable[str] = ()) -> str:
        """Queue a shot (``mode="wait"``) or cut to it (``"cut"``); ``num_chunks`` 0 = full shot.
        Returns the cue's event id (generated when not given), echoed on every event about the shot."""
        event_id, msg = _cue_message(prompt, num_chunks, mode, event_id, tags)
        self._send(msg)
        return event_id

    def pause(self) -> None:
        self._send(pb.ClientMessage(pause=pb.Pause()))

    def resume(self) -> None:
        self._send(pb.ClientMessage(resume=pb.Resume()))

    # -- events -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        while True:
            ev = self.next_event()
            if ev is None:
                return
            yield ev

    def next_event(self) -> Event | None:
        """The next event, blocking; None once the session has closed."""
        with self._recv_lock:
            while not self._done.is_set():
                msg = self._recv_or_finish()
                if msg is None:
                    return None
                try:
                    what, value = self._decoder.decode(msg)
                except ShotStreamError:
                    self._finish(None)
                    raise
                if what == "closed":
                    self._finish(value)
                    return None
                if what == "chunk":
                    if not self._close_sent:
                        self._requests.put(_ack(value.chunk_seq))
                    return value
                if value is not None:
                    return value
            return None

    def _recv_or_finish(self) -> pb.ServerMessage | None:
        try:
            msg = self._recv()
        except ShotStreamError as exc:
            self._finish(None)
            if self._close_sent and exc.code == grpc.StatusCode.CANCELLED:
                return None
            raise
        if msg is None:
            self._finish(self.close_reason or "stream ended")
        return msg

    def _finish(self, reason: str | None) -> None:
        if reason is not None and self.close_reason is None:
            self.close_reason = reason
        self._done.set()
        self._requests.put(_END)
        if self._decoder is not None:
            self._decoder.close()

    def _abort(self) -> None:
        """Cancel the call. The ring reader is closed by whoever is reading (or here, if nobody is)."""
        self._requests.put(_END)
        self._call.cancel()
        if self._recv_lock.acquire(blocking=False):
            try:
                self._done.set()
                if self._decoder is not None:
                    self._decoder.close()
            finally:
                self._recv_lock.release()

    def __del__(self) -> None:  # a session that was never closed: end its call and request thread
        if hasattr(self, "_call") and not self._done.is_set():
            self._requests.put(_END)
            self._call.cancel()

    # -- closing ------------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Ask the server to end the session, discard what is still on the way, free the ring reader."""
        if self._done.is_set():
            self._call.cancel()
            return
        if not self._close_sent:
            self._close_sent = True
            self._requests.put(pb.ClientMessage(close=pb.Close()))
        deadline = time.monotonic() + timeout
        if self._recv_lock.acquire(timeout=timeout):
            try:
                # Drain without copying pixels: nothing reads them any more.
                while not self._done.is_set() and time.monotonic() < deadline:
                    try:
                        msg = self._recv_or_finish()
                    except ShotStreamError:
                        break
                    if msg is None:
                        break
                    kind = msg.WhichOneof("kind")
                    if kind == "closed":
                        self._finish(msg.closed.reason)
                    elif kind == "error" and msg.error.fatal:
                        self._finish("error")
            finally:
                self._recv_lock.release()
        else:
            self._done.wait(max(0.0, deadline - time.monotonic()))
        if not self._done.is_set():
            self._abort()
        self._call.cancel()  # a no-op once the server has ended the call

    @property
    def closed(self) -> bool:
        return self._done.is_set()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- asyncio client -----------------------------------------------------------------------------


class AsyncShotStreamClient:
    """The asyncio twin of :class:`ShotStreamClient` (``grpc.aio``). Create it inside a running loop."""

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str | None = None,
                 root_certificates: bytes | str | Path | None = None, *, tls: bool | None = None):
        self.address = address
        creds = _credentials(root_certificates, tls)
        self._channel = (grpc.aio.secure_channel(address, creds, options=_CHANNEL_OPTIONS) if creds is not None
                         else grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS))
        self._stub = pb_grpc.ShotStreamStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    async def server_info(self, timeout: float | None = 10.0) -> ServerInfo:
        try:
            return _server_info(await self._stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=timeout,
                                                               metadata=self._metadata))
        except grpc.RpcError as exc:
            raise _from_rpc_error(exc) from None

    async def open_session(self, global_caption: str, seed: int = 0, transport: str = "shared_memory",
                           frame_format: str = "rgb8", chunks_in_flight: int = 2, client_name: str = "python-sdk"
                           ) -> AsyncSession:
        session = AsyncSession(self, _open_message(global_caption, seed, transport, frame_format, chunks_in_flight,
                                                   client_name))
        await session._open()
        return session

    async def render_story(self, global_caption: str, shots: Iterable[Any], seed: int = 0,
                           frame_format: str = "rgb8", timeout: float | None = None) -> AsyncIterator[Event]:
        request = _story_request(global_caption, shots, seed, frame_format)
        call = self._stub.RenderStory(request, timeout=timeout, metadata=self._metadata)
        try:
            async for ev in call:
                out = _story_event(ev)
                if out is not None:
                    yield out
        except grpc.RpcError as exc:
            raise _from_rpc_error(exc) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncShotStreamClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncSession:
    """One interactive story (asyncio). Create with ``await client.open_session(...)``; ``async for`` events."""

    def __init__(self, client: AsyncShotStreamClient, open_msg: pb.ClientMessage):
        self._client = client
        self._open_msg = open_msg
        self._call = client._stub.Direct(metadata=client._metadata)
        self._write_lock = asyncio.Lock()
        self._reading = False
        self._done = asyncio.Event()
        self._close_sent = False
        self._writing_done = False
        self.close_reason: str | None = None
        self._decoder: _Decoder | None = None
        self.info: SessionInfo | None = None

    async def _open(self) -> None:
        try:
            await self._write(self._open_msg)
            first = await self._recv()
            if first is None:
                raise ShotStreamError(grpc.StatusCode.UNAVAILABLE, "the server ended the stream without opening "
                                                                   "the session")
            kind = first.WhichOneof("kind")
            if kind == "error":
                raise ShotStreamError(_status(first.error.code), first.error.message)
            if kind != "opened":
                raise ShotStreamError(grpc.StatusCode.INTERNAL, f"expected `opened`, the server sent `{kind}`")
            self._decoder = _Decoder(first.opened, self._client.address)
            self.info = self._decoder.info
        except BaseException:
            self._abort()
            raise

    @property
    def session_id(self) -> str:
        return self.info.session_id

    async def _write(self, msg: pb.ClientMessage) -> None:
        async with self._write_lock:
            if self._writing_done:
                return
            try:
                await self._call.write(msg)
            except grpc.RpcError as exc:
                raise _from_rpc_error(exc) from None
            except asyncio.InvalidStateError:  # the call already ended
                raise ShotStreamError(grpc.StatusCode.FAILED_PRECONDITION, "the session is closed") from None

    async def _send(self, msg: pb.ClientMessage) -> None:
        if self._done.is_set() or self._close_sent:
            raise ShotStreamError(grpc.StatusCode.FAILED_PRECONDITION, "the session is closed")
        await self._write(msg)

    async def _recv(self) -> pb.ServerMessage | None:
        try:
            msg = await self._call.read()
        except grpc.RpcError as exc:
            raise _from_rpc_error(exc) from None
        return None if msg is grpc.aio.EOF else msg

    async def cue(self, prompt: str, num_chunks: int = 0, mode: str = "wait", event_id: str | None = None,
                  tags: Iterable[str] = ()) -> str:
        event_id, msg = _cue_message(prompt, num_chunks, mode, event_id, tags)
        await self._send(msg)
        return event_id

    async def pause(self) -> None:
        await self._send(pb.ClientMessage(pause=pb.Pause()))

    async def resume(self) -> None:
        await self._send(pb.ClientMessage(resume=pb.Resume()))

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while True:
            ev = await self.next_event()
            if ev is None:
                return
            yield ev

    async def next_event(self) -> Event | None:
        """The next event; None once the session has closed."""
        if self._reading:
            raise RuntimeError("another task is already reading this session's events")
        self._reading = True
        try:
            while not self._done.is_set():
                msg = await self._recv_or_finish()
                if msg is None:
                    return None
                try:
                    what, value = self._decoder.decode(msg)
                except ShotStreamError:
                    await self._finish(None)
                    raise
                if what == "closed":
                    await self._finish(value)
                    return None
                if what == "chunk":
                    if not self._close_sent:
                        with contextlib.suppress(ShotStreamError):
                            await self._write(_ack(value.chunk_seq))
                    return value
                if value is not None:
                    return value
            return None
        finally:
            self._reading = False

    async def _recv_or_finish(self) -> pb.ServerMessage | None:
        try:
            msg = await self._recv()
        except ShotStreamError as exc:
            await self._finish(None)
            if self._close_sent and exc.code == grpc.StatusCode.CANCELLED:
                return None
            raise
        if msg is None:
            await self._finish(self.close_reason or "stream ended")
        return msg

    async def _finish(self, reason: str | None) -> None:
        if reason is not None and self.close_reason is None:
            self.close_reason = reason
        self._done.set()
        if self._decoder is not None:
            self._decoder.close()
        async with self._write_lock:
            if not self._writing_done:
                self._writing_done = True
                with contextlib.suppress(Exception):
                    await self._call.done_writing()

    def _abort(self) -> None:
        self._writing_done = True
        self._call.cancel()
        self._done.set()
        if self._decoder is not None:
            self._decoder.close()

    async def close(self, timeout: float = 10.0) -> None:
        """Ask the server to end the session, discard what is still on the way, free the ring reader."""
        if self._done.is_set():
            self._call.cancel()
            return
        if not self._close_sent:
            self._close_sent = True
            with contextlib.suppress(ShotStreamError):
                await self._write(pb.ClientMessage(close=pb.Close()))
        try:
            if self._reading:  # another task is iterating: it sees `closed` and finishes
                await asyncio.wait_for(self._done.wait(), timeout)
            else:
                await asyncio.wait_for(self._drain(), timeout)
        except (asyncio.TimeoutError, ShotStreamError):
            pass
        if not self._done.is_set():
            self._abort()
        self._call.cancel()

    async def _drain(self) -> None:
        self._reading = True
        try:
            while not self._done.is_set():
                msg = await self._recv_or_finish()
                if msg is None:
                    return
                kind = msg.WhichOneof("kind")
                if kind == "closed":
                    await self._finish(msg.closed.reason)
                elif kind == "error" and msg.error.fatal:
                    await self._finish("error")
        finally:
            self._reading = False

    @property
    def closed(self) -> bool:
        return self._done.is_set()

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
