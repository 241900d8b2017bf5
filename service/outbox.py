"""A session's outgoing messages, bounded: a client that stops reading cannot grow the server's memory.

Frame chunks are bounded by credits already (the session never has more than ``credits`` unacked),
and snapshot parts by ``max_snapshot_bytes`` (a session sends one snapshot at a time: ``snapshot_bytes``
says how much of it the client has not read yet), so the bound here is on everything else (cue_accepted, errors, stats, ...), by count and by bytes.
Past half of either bound the client is told once (a non-fatal RESOURCE_EXHAUSTED, queued like any
message); past the bound further messages are dropped and ``overflowed`` is set, on which the session
loop ends the session with a fatal RESOURCE_EXHAUSTED. Loop thread only, like ``asyncio.Queue``.
"""

from __future__ import annotations

import asyncio

import grpc

from .protocol import ProtocolError, error_message, pb


class Outbox:
    def __init__(self, max_messages: int, max_bytes: int):
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._queue: asyncio.Queue[tuple[pb.ServerMessage, int]] = asyncio.Queue()
        self._messages = self._bytes = 0
        self.snapshot_bytes = 0  # bytes of snapshot parts queued and not yet taken
        self._warned = False
        self.overflowed = asyncio.Event()

    def put_nowait(self, msg: pb.ServerMessage) -> None:
        if self.overflowed.is_set():
            return  # the session is ending; nobody is reading
        kind = msg.WhichOneof("kind")
        if kind == "snapshot":
            self.snapshot_bytes += len(msg.snapshot.data)
        size = 0 if kind in ("chunk", "snapshot") else msg.ByteSize() + 1
        if size:
            if self._messages + 1 > self.max_messages or self._bytes + size > self.max_bytes:
                self.overflowed.set()
                return
            if not self._warned and (2 * (self._messages + 1) > self.max_messages
                                     or 2 * (self._bytes + size) > self.max_bytes):
                self._warned = True
                self._put(error_message(ProtocolError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{self._messages} messages ({self._bytes} bytes) are waiting for this client to read them "
                    f"(limits: max_outbox_messages={self.max_messages}, max_outbox_bytes={self.max_bytes}): read "
                    "the stream, or the session ends")), 1)
        self._put(msg, size)

    def _put(self, msg: pb.ServerMessage, size: int) -> None:
        if size:
            self._messages += 1
            self._bytes += size
        self._queue.put_nowait((msg, size))

    def overflow_error(self) -> ProtocolError:
        return ProtocolError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"the client did not read its messages: more than {self.max_messages} messages or "
                             f"{self.max_bytes} bytes were waiting (max_outbox_messages / max_outbox_bytes); "
                             "the session is closed", fatal=True)

    async def get(self) -> pb.ServerMessage:
        msg, size = await self._queue.get()
        return self._taken(msg, size)

    def get_nowait(self) -> pb.ServerMessage:
        return self._taken(*self._queue.get_nowait())

    def empty(self) -> bool:
        return self._queue.empty()

    def qsize(self) -> int:
        return self._queue.qsize()

    def _taken(self, msg: pb.ServerMessage, size: int) -> pb.ServerMessage:
        if msg.WhichOneof("kind") == "snapshot":
            self.snapshot_bytes -= len(msg.snapshot.data)
        if size:
            self._messages -= 1
            self._bytes -= size
            self._warned = self._warned and self._messages > 0  # warn again after the client caught up
        return msg
