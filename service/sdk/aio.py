"""The asyncio client (``grpc.aio``): :class:`AsyncShotStreamClient` and its :class:`AsyncSession`."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc

from ..protocol import pb, pb_grpc
from . import codec, story_state
from .codec import DEFAULT_ADDRESS
from .events import Event, ServerInfo, SessionInfo, ShotStreamError, SnapshotReady


class AsyncShotStreamClient:
    """The asyncio twin of :class:`ShotStreamClient` (``grpc.aio``). Create it inside a running loop."""

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str | None = None,
                 root_certificates: bytes | str | Path | None = None, *, tls: bool | None = None):
        self.address = address
        creds = codec.credentials(root_certificates, tls)
        self._channel = (grpc.aio.secure_channel(address, creds, options=codec.CHANNEL_OPTIONS) if creds is not None
                         else grpc.aio.insecure_channel(address, options=codec.CHANNEL_OPTIONS))
        self._stub = pb_grpc.ShotStreamStub(self._channel)
        self._metadata = codec.auth_metadata(token)

    async def server_info(self, timeout: float | None = 10.0) -> ServerInfo:
        try:
            return codec.server_info(await self._stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=timeout,
                                                                    metadata=self._metadata))
        except grpc.RpcError as exc:
            raise codec.from_rpc_error(exc) from None

    async def open_session(self, global_caption: str | None = None, seed: int | None = None,
                           transport: str = "shared_memory", frame_format: str = "rgb8", chunks_in_flight: int = 2,
                           client_name: str = "python-sdk", decoder: str | None = None, *,
                           snapshot: bytes | None = None) -> AsyncSession:
        """See :meth:`ShotStreamClient.open_session` (``snapshot=``: continue a saved story)."""
        return await self._open(codec.open_messages(global_caption, seed, transport, frame_format, chunks_in_flight,
                                                    client_name, decoder, snapshot=snapshot))

    async def fork(self, session: str | Any, wait_for_boundary: bool = True, *, transport: str = "shared_memory",
                   frame_format: str = "rgb8", chunks_in_flight: int = 2, client_name: str = "python-sdk",
                   decoder: str | None = None) -> AsyncSession:
        """See :meth:`ShotStreamClient.fork`."""
        session_id = session if isinstance(session, str) else session.session_id
        return await self._open(codec.open_messages(None, None, transport, frame_format, chunks_in_flight,
                                                    client_name, decoder, fork=(session_id, wait_for_boundary)))

    async def _open(self, messages: list[pb.ClientMessage]) -> AsyncSession:
        session = AsyncSession(self, messages)
        await session._open()
        return session

    def render_story(self, global_caption: str | None = None, shots: Iterable[Any] | None = None,
                     seed: int | None = None, frame_format: str = "rgb8", timeout: float | None = None,
                     decoder: str | None = None, take: str | None = None, take_quality: str = "live", *,
                     cue_log: pb.CueLog | None = None) -> AsyncIterator[Event]:
        """See :meth:`ShotStreamClient.render_story` (``async for`` its events; ``cue_log=``: replay a log)."""
        request = codec.story_request(global_caption, shots, seed, frame_format, decoder, take, take_quality,
                                      cue_log)
        return self._story_events(request, timeout)  # bad arguments raised above, before any call

    async def _story_events(self, request: pb.RenderStoryRequest, timeout: float | None) -> AsyncIterator[Event]:
        call = self._stub.RenderStory(request, timeout=timeout, metadata=self._metadata)
        try:
            async for ev in call:
                out = codec.story_event(ev)
                if out is not None:
                    yield out
        except grpc.RpcError as exc:
            raise codec.from_rpc_error(exc) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncShotStreamClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_KEEP, _SKIP = object(), object()  # what a wait does with an event that is not the one it waits for


class AsyncSession:
    """One interactive story (asyncio). Create with ``await client.open_session(...)``; ``async for`` events.
    One task reads events at a time (:meth:`snapshot` and :meth:`cue_log` read them too)."""

    def __init__(self, client: AsyncShotStreamClient, open_msgs: list[pb.ClientMessage]):
        self._client = client
        self._open_msgs = open_msgs
        self._call = client._stub.Direct(metadata=client._metadata)
        self._write_lock = asyncio.Lock()
        self._pending: deque[Event] = deque()  # read by snapshot()/cue_log() on the way, for next_event
        self._cue_logs = story_state.CueLogRequests()
        self._cue_log_lock = asyncio.Lock()
        self._pings: set[asyncio.Task] = set()
        self._reading = False
        self._done = asyncio.Event()
        self._close_sent = False
        self._writing_done = False
        self.close_reason: str | None = None
        self._decoder: codec.SessionDecoder | None = None
        self.info: SessionInfo | None = None

    async def _open(self) -> None:
        try:
            for msg in self._open_msgs:  # OpenSession, then a snapshot's other parts: the server reads them in order
                await self._write(msg)
            self._open_msgs = []
            self._decoder = codec.session_decoder(await self._recv(), self._client.address)
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
                raise codec.from_rpc_error(exc) from None
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
            raise codec.from_rpc_error(exc) from None
        return None if msg is grpc.aio.EOF else msg

    async def cue(self, prompt: str, num_chunks: int = 0, mode: str = "wait", event_id: str | None = None,
                  tags: Iterable[str] = (), at_chunk: int = 0) -> str:
        """See :meth:`Session.cue`."""
        event_id, msg = codec.cue_message(prompt, num_chunks, mode, event_id, tags, self.info.max_chunks_per_shot,
                                          at_chunk)
        await self._send(msg)
        return event_id

    async def pause(self) -> None:
        await self._send(pb.ClientMessage(pause=pb.Pause()))

    async def resume(self) -> None:
        await self._send(pb.ClientMessage(resume=pb.Resume()))

    async def start_take(self, name: str = "", quality: str = "live") -> None:
        """See :meth:`Session.start_take`."""
        await self._send(pb.ClientMessage(start_take=codec.start_take(name, quality)))

    async def stop_take(self) -> None:
        await self._send(pb.ClientMessage(stop_take=pb.StopTake()))

    # -- snapshots and the cue log ------------------------------------------------------------

    async def request_snapshot(self, wait_for_boundary: bool = True) -> None:
        """See :meth:`Session.request_snapshot`."""
        await self._send(story_state.snapshot_request(wait_for_boundary))

    async def snapshot(self, wait_for_boundary: bool = True, timeout: float | None = 60.0) -> bytes:
        """See :meth:`Session.snapshot` (events read meanwhile are kept for :meth:`next_event`)."""
        self._claim()
        try:
            await self.request_snapshot(wait_for_boundary)

            def pick(ev: Any) -> Any:
                if isinstance(ev, SnapshotReady):
                    return ev.data
                if codec.answers_snapshot_request(ev):
                    raise ShotStreamError(ev.code, ev.message)
                return _SKIP if isinstance(ev, story_state.CueLogPage) else _KEEP

            return await self._wait(pick, "the snapshot", timeout)
        finally:
            self._reading = False

    async def cue_log(self, timeout: float | None = 30.0) -> pb.CueLog:
        """See :meth:`Session.cue_log`."""
        self._claim()
        try:
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            pages: list[pb.CueLog] = []
            from_shot = 0
            while True:
                await self._ask_cue_log("page", from_shot)
                left = None if deadline is None else max(0.0, deadline - loop.time())
                page = await self._wait(self._pick_page, "the cue log", left)
                pages.append(page)
                if page.next_shot <= from_shot:  # 0: the last page (and never loop on a page that does not advance)
                    return story_state.merge_cue_log(pages)
                from_shot = page.next_shot
        finally:
            self._reading = False

    def _pick_page(self, ev: Any) -> Any:
        if isinstance(ev, story_state.CueLogPage):
            return ev.log if self._cue_logs.answered() == "page" else _SKIP
        return _KEEP

    async def _ask_cue_log(self, kind: str, from_shot: int) -> None:
        async with self._cue_log_lock:  # the order requests go out is the order their answers are matched in
            if self._done.is_set() or self._close_sent:
                if kind == "ping":
                    return
                raise ShotStreamError(grpc.StatusCode.FAILED_PRECONDITION, "the session is closed")
            self._cue_logs.sent(kind)
            await self._write(story_state.cue_log_request(from_shot))

    async def _ping(self) -> None:
        with contextlib.suppress(ShotStreamError):
            await self._ask_cue_log("ping", story_state.PING_FROM_SHOT)

    async def _wait(self, pick: Callable[[Any], Any], what: str, timeout: float | None) -> Any:
        """Read events until ``pick`` returns a value other than _KEEP (kept for next_event) or _SKIP.
        (Cancelling a grpc.aio read cancels the whole call, so time is up when a ping's answer arrives.)"""
        expired = asyncio.Event()
        timer = None
        if timeout is not None:
            def expire() -> None:
                expired.set()
                task = asyncio.ensure_future(self._ping())
                self._pings.add(task)
                task.add_done_callback(self._pings.discard)

            timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            while True:
                ev = await self._read()
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

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while True:
            ev = await self.next_event()
            if ev is None:
                return
            yield ev

    def _claim(self) -> None:
        if self._reading:
            raise RuntimeError("another task is already reading this session's events")
        self._reading = True

    async def next_event(self) -> Event | None:
        """The next event; None once the session has closed."""
        self._claim()
        try:
            while True:
                if self._pending:
                    return self._pending.popleft()
                ev = await self._read()
                if not isinstance(ev, story_state.CueLogPage):
                    return ev
                self._cue_logs.answered()  # a ping's answer, or a page whose cue_log() gave up
        finally:
            self._reading = False

    async def _read(self) -> Event | story_state.CueLogPage | None:
        """The next decoded message (chunks acknowledged); None once the session has closed."""
        while not self._done.is_set():
            msg = await self._recv_or_finish()
            if msg is None:
                return None
            try:
                event = self._decoder.decode(msg)
            except ShotStreamError:
                await self._finish(None)
                raise
            if isinstance(event, codec.Closed):
                await self._finish(event.reason)
                return None
            if event is not None:
                ack = codec.ack_for(event, closing=self._close_sent)
                if ack is not None:
                    with contextlib.suppress(ShotStreamError):
                        await self._write(ack)
                return event
        return None

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
        self._pending.clear()
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
        """Read until the session ends, without copying pixels: nothing reads them any more."""
        self._reading = True
        try:
            while not self._done.is_set():
                msg = await self._recv_or_finish()
                if msg is None:
                    return
                reason = codec.end_reason(msg)
                if reason is not None:
                    await self._finish(reason)
        finally:
            self._reading = False

    @property
    def closed(self) -> bool:
        return self._done.is_set()

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
