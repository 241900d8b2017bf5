"""The blocking client: :class:`ShotStreamClient` and its interactive :class:`Session`."""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc

from ..protocol import pb, pb_grpc
from . import codec
from .codec import DEFAULT_ADDRESS
from .events import Event, ServerInfo, SessionInfo, ShotStreamError


class ShotStreamClient:
    """Blocking client. ``token``: bearer token the server requires (sent as ``authorization: Bearer``).
    ``root_certificates``: PEM bytes (or a file path) for a TLS server; ``tls=True`` uses the system roots."""

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str | None = None,
                 root_certificates: bytes | str | Path | None = None, *, tls: bool | None = None):
        self.address = address
        creds = codec.credentials(root_certificates, tls)
        self._channel = (grpc.secure_channel(address, creds, options=codec.CHANNEL_OPTIONS) if creds is not None
                         else grpc.insecure_channel(address, options=codec.CHANNEL_OPTIONS))
        self._stub = pb_grpc.ShotStreamStub(self._channel)
        self._metadata = codec.auth_metadata(token)
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()

    def server_info(self, timeout: float | None = 10.0) -> ServerInfo:
        try:
            return codec.server_info(self._stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=timeout,
                                                              metadata=self._metadata))
        except grpc.RpcError as exc:
            raise codec.from_rpc_error(exc) from None

    def open_session(self, global_caption: str, seed: int = 0, transport: str = "shared_memory",
                     frame_format: str = "rgb8", chunks_in_flight: int = 2, client_name: str = "python-sdk",
                     decoder: str | None = None) -> Session:
        """Open an interactive session (gRPC ``Direct``). Raises ShotStreamError when refused.
        ``decoder``: "wan" (the Wan VAE, exact) or "tae" (the tiny preview decoder, if the server has one:
        ``server_info().decoders``); None = the server's default. ``session.info.decoder`` says which."""
        session = Session(self, codec.open_message(global_caption, seed, transport, frame_format, chunks_in_flight,
                                                   client_name, decoder))
        self._sessions.add(session)
        return session

    def render_story(self, global_caption: str, shots: Iterable[Any], seed: int = 0, frame_format: str = "rgb8",
                     timeout: float | None = None, decoder: str | None = None, take: str | None = None,
                     take_quality: str = "live") -> Iterator[Event]:
        """A whole story, headless (gRPC ``RenderStory``): yields ShotStarted, Chunk (inline), ShotFinished and
        Progress events. Closing the iterator early cancels the render on the server.
        ``decoder`` as in :meth:`open_session`. ``take``: also record the story on the server as a take of that
        name ("" = the server picks one; None = no take) at ``take_quality`` ("live" | "full"); its
        :class:`TakeSaved` is then the last event."""
        request = codec.story_request(global_caption, shots, seed, frame_format, decoder, take, take_quality)
        return self._story_events(request, timeout)  # bad arguments raised above, before any call

    def _story_events(self, request: pb.RenderStoryRequest, timeout: float | None) -> Iterator[Event]:
        call = self._stub.RenderStory(request, timeout=timeout, metadata=self._metadata)
        try:
            for ev in call:
                out = codec.story_event(ev)
                if out is not None:
                    yield out
        except grpc.RpcError as exc:
            raise codec.from_rpc_error(exc) from None
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
        self._decoder: codec.SessionDecoder | None = None
        self._call = client._stub.Direct(_request_iter(self._requests), metadata=client._metadata)
        try:
            self._decoder = codec.session_decoder(self._recv(), client.address)
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
            raise codec.from_rpc_error(exc) from None

    # -- control ------------------------------------------------------------------------------

    def cue(self, prompt: str, num_chunks: int = 0, mode: str = "wait", event_id: str | None = None,
            tags: Iterable[str] = ()) -> str:
        """Queue a shot (``mode="wait"``) or cut to it (``"cut"``); ``num_chunks`` 0 = full shot.
        Returns the cue's event id (generated when not given), echoed on every event about the shot."""
        event_id, msg = codec.cue_message(prompt, num_chunks, mode, event_id, tags, self.info.max_chunks_per_shot)
        self._send(msg)
        return event_id

    def pause(self) -> None:
        self._send(pb.ClientMessage(pause=pb.Pause()))

    def resume(self) -> None:
        self._send(pb.ClientMessage(resume=pb.Resume()))

    def start_take(self, name: str = "", quality: str = "live") -> None:
        """Record the frames of every later chunk into ``NAME.mp4`` on the server's host (its ``--takes-dir``).
        Answered by a :class:`TakeStarted` event, or a :class:`ServerError` (bad or existing name, already
        recording). ``name`` "" lets the server pick one. ``quality="full"`` also gives the take decoded with
        the Wan VAE (``TakeSaved.full_path``): on a "tae" session the server re-decodes it at low priority after
        :meth:`stop_take` into ``NAME.full.mp4``, and sends the one TakeSaved once both files are written; on a
        "wan" session it is ``NAME.mp4`` itself."""
        self._send(pb.ClientMessage(start_take=codec.start_take(name, quality)))

    def stop_take(self) -> None:
        """Finish the take; a :class:`TakeSaved` event follows once the file is complete. Closing the session
        also finishes the file, but :meth:`close` discards events: stop first to learn the take's size."""
        self._send(pb.ClientMessage(stop_take=pb.StopTake()))

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
                    event = self._decoder.decode(msg)
                except ShotStreamError:
                    self._finish(None)
                    raise
                if isinstance(event, codec.Closed):
                    self._finish(event.reason)
                    return None
                if event is not None:
                    ack = codec.ack_for(event, closing=self._close_sent)
                    if ack is not None:
                        self._requests.put(ack)
                    return event
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
                    reason = codec.end_reason(msg)
                    if reason is not None:
                        self._finish(reason)
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
