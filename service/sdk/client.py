"""The blocking client: :class:`ShotStreamClient` and its interactive :class:`Session`."""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc

from ..protocol import pb, pb_grpc
from . import codec, story_state
from .codec import DEFAULT_ADDRESS
from .events import Event, ServerInfo, SessionInfo, ShotStreamError, SnapshotReady
from .resume import ResumingSession


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

    def open_session(self, global_caption: str | None = None, seed: int | None = None,
                     transport: str = "shared_memory", frame_format: str = "rgb8", chunks_in_flight: int = 2,
                     client_name: str = "python-sdk", decoder: str | None = None, *,
                     snapshot: bytes | None = None) -> Session:
        """Open an interactive session (gRPC ``Direct``). Raises ShotStreamError when refused.
        ``seed`` None = 0.
        ``decoder``: "wan" (the Wan VAE, exact) or "tae" (the tiny preview decoder, if the server has one:
        ``server_info().decoders``); None = the server's default. ``session.info.decoder`` says which.

        ``snapshot``: continue a saved story (:meth:`Session.snapshot`'s bytes). Its caption, seed and decoder
        come from the snapshot, so ``global_caption`` and ``seed`` may be left out; the bytes go to the server in
        parts of at most 32 KiB. The session opens at once; a :class:`SnapshotRestored` event follows once the
        server has checked the whole snapshot (a damaged one, one of another model or decoder, or one over
        ``limits["max_snapshot_bytes"]`` ends the session with ShotStreamError while iterating). Cues sent
        meanwhile wait for the restore. Bytes that are not a whole snapshot raise ShotStreamError
        (INVALID_ARGUMENT) here, before anything is sent."""
        return self._open(codec.open_messages(global_caption, seed, transport, frame_format, chunks_in_flight,
                                              client_name, decoder, snapshot=snapshot))

    def open_resuming_session(self, global_caption: str | None = None, seed: int | None = None,
                              transport: str = "inline", frame_format: str = "rgb8", chunks_in_flight: int = 2,
                              client_name: str = "python-sdk", decoder: str | None = None, *,
                              snapshot: bytes | None = None, max_resumes: int = 3) -> ResumingSession:
        """:meth:`open_session` for a client behind a proxy (``deploy/haproxy.cfg``): the session moves to
        another server when its own goes away, continuing the story from its last shot boundary (it asks for a
        snapshot as every shot starts), and yields a :class:`Resumed` event when it does. ``transport``
        defaults to "inline": the next server may be on another host. See :mod:`service.sdk.resume`."""
        args = dict(global_caption=global_caption, seed=seed, transport=transport, frame_format=frame_format,
                    chunks_in_flight=chunks_in_flight, client_name=client_name, decoder=decoder, snapshot=snapshot)
        return ResumingSession(self, args, max_resumes)

    def fork(self, session: str | Any, wait_for_boundary: bool = True, *, transport: str = "shared_memory",
             frame_format: str = "rgb8", chunks_in_flight: int = 2, client_name: str = "python-sdk",
             decoder: str | None = None) -> Session:
        """A new session that continues another open session's story (its id, or the session itself) from its
        shot boundary, e.g. a second ending of a player's choice; the two then go on independently. Caption,
        seed and decoder are the other session's. ``wait_for_boundary=False`` is refused while the other
        session has a shot in progress; True takes the story when that shot ends. Answered like ``snapshot=``
        in :meth:`open_session`: the session opens at once, then a :class:`SnapshotRestored` event."""
        session_id = session if isinstance(session, str) else session.session_id
        return self._open(codec.open_messages(None, None, transport, frame_format, chunks_in_flight, client_name,
                                              decoder, fork=(session_id, wait_for_boundary)))

    def _open(self, messages: list[pb.ClientMessage]) -> Session:
        session = Session(self, messages)
        self._sessions.add(session)
        return session

    def render_story(self, global_caption: str | None = None, shots: Iterable[Any] | None = None,
                     seed: int | None = None, frame_format: str = "rgb8", timeout: float | None = None,
                     decoder: str | None = None, take: str | None = None, take_quality: str = "live", *,
                     cue_log: pb.CueLog | None = None) -> Iterator[Event]:
        """A whole story, headless (gRPC ``RenderStory``): yields ShotStarted, Chunk (inline), ShotFinished and
        Progress events. Closing the iterator early cancels the render on the server. ``seed`` None = 0.
        ``decoder`` as in :meth:`open_session`. ``take``: also record the story on the server as a take of that
        name ("" = the server picks one; None = no take) at ``take_quality`` ("live" | "full"); its
        :class:`TakeSaved` is then the last event.

        ``cue_log``: replay a session's cue log (:meth:`Session.cue_log`, :func:`load_cue_log`) instead of
        ``shots``: its finished shots, each with the chunks it made, with its caption and seed (leave
        ``global_caption``, ``shots`` and ``seed`` out), so the frames are the session's; ``decoder`` None = the
        log's. A log that began from a snapshot (``first_shot_index`` > 0) is replayed in a session opened from
        that snapshot instead (``shotstream story --from-snapshot --cue-log``)."""
        request = codec.story_request(global_caption, shots, seed, frame_format, decoder, take, take_quality,
                                      cue_log)
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
_KEEP, _SKIP = object(), object()  # what a wait does with an event that is not the one it waits for


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

    ``cue``/``pause``/``resume``/``request_snapshot``/``close`` may be called from any thread; iterate from
    one thread (:meth:`snapshot` and :meth:`cue_log` read events too: call them from that thread).
    Iteration yields events until the session closes; a fatal error raises ShotStreamError.
    """

    def __init__(self, client: ShotStreamClient, open_msgs: list[pb.ClientMessage]):
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        for msg in open_msgs:  # OpenSession, then a snapshot's other parts: the server reads them in order
            self._requests.put(msg)
        self._pending: deque[Event] = deque()  # read by snapshot()/cue_log() on the way, for next_event
        self._cue_logs = story_state.CueLogRequests()
        self._cue_log_lock = threading.Lock()
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
            tags: Iterable[str] = (), at_chunk: int = 0) -> str:
        """Queue a shot (``mode="wait"``) or cut to it (``"cut"``); ``num_chunks`` 0 = full shot.
        ``at_chunk`` (a cut only): the cut lands after that many chunks of the shot in progress, e.g. a
        scripted cut at a fixed point (0 = at its next chunk boundary, whenever the cue arrives; a cue that
        arrives later than that cuts at the next boundary). The cue log records where every cut landed.
        Returns the cue's event id (generated when not given), echoed on every event about the shot."""
        event_id, msg = codec.cue_message(prompt, num_chunks, mode, event_id, tags, self.info.max_chunks_per_shot,
                                          at_chunk)
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

    # -- snapshots and the cue log ------------------------------------------------------------

    def request_snapshot(self, wait_for_boundary: bool = True) -> None:
        """Ask for the story's state at a shot boundary: its parts are assembled into one
        :class:`SnapshotReady` event (``data``: bytes to keep with the game save, for
        ``open_session(snapshot=...)``). ``wait_for_boundary=False`` is refused while a shot is in progress
        (a :class:`ServerError`, FAILED_PRECONDITION); True takes it when the current shot ends (after its
        ShotFinished, before the next shot's ShotStarted)."""
        self._send(story_state.snapshot_request(wait_for_boundary))

    def snapshot(self, wait_for_boundary: bool = True, timeout: float | None = 60.0) -> bytes:
        """:meth:`request_snapshot`, then read events until the snapshot is complete and return its bytes.
        Events read meanwhile (a shot's chunks, which are acknowledged as iteration would, so the shot can
        end) are kept, and :meth:`next_event` / iteration return them next, in order. Raises ShotStreamError:
        FAILED_PRECONDITION (refused mid-shot), DEADLINE_EXCEEDED after ``timeout`` seconds (the request stays
        on: its SnapshotReady arrives through iteration), or when the session ends first."""
        self.request_snapshot(wait_for_boundary)

        def pick(ev: Any) -> Any:
            if isinstance(ev, SnapshotReady):
                return ev.data
            if codec.answers_snapshot_request(ev):
                raise ShotStreamError(ev.code, ev.message)
            return _SKIP if isinstance(ev, story_state.CueLogPage) else _KEEP

        return self._wait(pick, "the snapshot", timeout)

    def cue_log(self, timeout: float | None = 30.0) -> pb.CueLog:
        """The session's cue log: every cue that became a shot, with the chunks it made and whether a cut
        ended it (``pb.CueLog``; all pages, merged). Replay it with ``client.render_story(cue_log=...)``; keep
        it with :func:`save_cue_log`. Events read meanwhile are kept, as in :meth:`snapshot`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pages: list[pb.CueLog] = []
        from_shot = 0
        while True:
            self._ask_cue_log("page", from_shot)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            page = self._wait(self._pick_page, "the cue log", left)
            pages.append(page)
            if page.next_shot <= from_shot:  # 0: the last page (and never loop on a page that does not advance)
                return story_state.merge_cue_log(pages)
            from_shot = page.next_shot

    def _pick_page(self, ev: Any) -> Any:
        if isinstance(ev, story_state.CueLogPage):
            return ev.log if self._cue_logs.answered() == "page" else _SKIP
        return _KEEP

    def _ask_cue_log(self, kind: str, from_shot: int) -> None:
        with self._cue_log_lock:  # the order requests go out is the order their answers are matched in
            if self._done.is_set() or self._close_sent:
                if kind == "ping":
                    return
                raise ShotStreamError(grpc.StatusCode.FAILED_PRECONDITION, "the session is closed")
            self._cue_logs.sent(kind)
            self._requests.put(story_state.cue_log_request(from_shot))

    def _wait(self, pick: Callable[[Any], Any], what: str, timeout: float | None) -> Any:
        """Read events until ``pick`` returns a value other than _KEEP (kept for next_event) or _SKIP."""
        expired = threading.Event()
        timer = None
        if timeout is not None:  # a blocking read has no timeout: a ping's answer wakes it when time is up
            def expire() -> None:
                expired.set()
                self._ask_cue_log("ping", story_state.PING_FROM_SHOT)

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            while True:
                ev = self._read()
                if ev is None:
                    raise ShotStreamError(grpc.StatusCode.UNAVAILABLE,
                                          f"the session ended ({self.close_reason}) before {what} arrived")
                result = pick(ev)
                if result is _KEEP:
                    self._pending.append(ev)
                elif result is not _SKIP:
                    return result
                if expired.is_set():
                    raise ShotStreamError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                          f"{what} did not arrive within {timeout:g} s")
        finally:
            if timer is not None:
                timer.cancel()

    # -- events -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        while True:
            ev = self.next_event()
            if ev is None:
                return
            yield ev

    def next_event(self) -> Event | None:
        """The next event, blocking; None once the session has closed."""
        while True:
            if self._pending:
                return self._pending.popleft()
            ev = self._read()
            if not isinstance(ev, story_state.CueLogPage):
                return ev
            self._cue_logs.answered()  # a ping's answer, or a page whose cue_log() gave up

    def _read(self) -> Event | story_state.CueLogPage | None:
        """The next decoded message (chunks acknowledged); None once the session has closed."""
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
        self._pending.clear()
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
