"""Story snapshots on the wire: a snapshot arriving in parts (OpenSession.snapshot, then snapshot_part
messages), and one going out in parts (the answer to a SnapshotRequest).

A snapshot is opaque bytes to the client (:mod:`engine_core.snapshot` says what is inside). The
server never writes one to disk: it holds at most one incoming snapshot per session, bounded by
``max_snapshot_bytes``, and the parts of at most one outgoing snapshot per session (see
:class:`service.outbox.Outbox`). Its header, in the first part, says which story it is, so a
session can be opened for it (caption, seed, decoder) and a snapshot from another model refused
before the rest is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc

from engine_core import ShotStreamEngine, StorySnapshot
from engine_core.snapshot import SnapshotError, SnapshotHeader

from .protocol import ProtocolError, decoder_name, error_message, pb
from .settings import ServerSettings

INVALID = grpc.StatusCode.INVALID_ARGUMENT
MISMATCH = grpc.StatusCode.FAILED_PRECONDITION
# Called with the story's snapshot at its next boundary, or None when the session ends first.
Waiter = Callable[[StorySnapshot | None], None]


class StoryHandoff:
    """A session's story coming in (a snapshot's bytes, or the snapshot of the session it forks) and going
    out (its snapshot at the next boundary, for its own client and for forks).

    Guarded by the session's lock. The GPU worker runs the restore and takes snapshots (both touch the
    engine); the session's scheduler offers them before its next shot.
    """

    def __init__(self, open_msg: pb.OpenSession, engine: ShotStreamEngine, settings: ServerSettings, forked: bool):
        self.header: SnapshotHeader | None = None  # of the snapshot this session continues
        self.awaiting = open_msg.HasField("snapshot") or forked  # no shot starts until the story is restored
        self.ready: bytes | StorySnapshot | None = None  # to restore now
        self.since = 0.0  # when the restore or the snapshot became due (monotonic)
        self.waiters: list[Waiter] = []
        self.client_asked = False  # this session's client asked for a snapshot not yet queued for it
        self._incoming: IncomingSnapshot | None = None
        if open_msg.HasField("snapshot"):
            incoming = IncomingSnapshot(open_msg.snapshot, open_msg.decoder, engine, settings)
            self.header = incoming.header
            if incoming.complete:
                self.deliver(incoming.take())
            else:
                self._incoming = incoming

    def add_part(self, part: pb.SnapshotPart) -> bool:
        """The next part of the snapshot being sent; True once it is complete (a restore is due)."""
        if self._incoming is None:
            raise ProtocolError(INVALID, "snapshot_part without a snapshot to continue: parts follow an "
                                         "OpenSession.snapshot, until its total_bytes have arrived")
        self._incoming.add(part)
        if not self._incoming.complete:
            return False
        self.deliver(self._incoming.take())
        self._incoming = None
        return True

    def deliver(self, source: bytes | StorySnapshot) -> None:
        self.ready, self.since = source, time.monotonic()

    def take_ready(self) -> bytes | StorySnapshot | None:
        source, self.ready = self.ready, None
        return source

    def check_can_snapshot(self, shot_in_progress: str | None, wait_for_boundary: bool, what: str) -> None:
        """Refuse a snapshot (FAILED_PRECONDITION) before the story is restored, or mid-shot unless asked to
        wait. ``shot_in_progress`` names the current shot, if any."""
        if self.awaiting:
            raise ProtocolError(MISMATCH, f"{what} needs the session's story restored first: ask after `restored`")
        if shot_in_progress is not None and not wait_for_boundary:
            raise ProtocolError(MISMATCH, f"{what} is taken between shots, and {shot_in_progress} is in progress: "
                                          "ask after its shot_finished, or set wait_for_boundary")

    def add_waiter(self, waiter: Waiter) -> None:
        if not self.waiters:
            self.since = time.monotonic()
        self.waiters.append(waiter)

    def take_waiters(self) -> list[Waiter]:
        waiters, self.waiters = self.waiters, []
        return waiters


class IncomingSnapshot:
    """The bytes of a snapshot a client is sending, checked as early as they allow."""

    def __init__(self, first: pb.SnapshotPart, asked_decoder: int, engine: ShotStreamEngine,
                 settings: ServerSettings):
        limit = settings.max_snapshot_bytes
        if first.total_bytes > limit:
            raise ProtocolError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"the snapshot is {first.total_bytes} bytes; this server takes at most {limit} "
                                "(max_snapshot_bytes)", fatal=True)
        try:
            self.header = SnapshotHeader.read(first.data)
        except SnapshotError as exc:
            raise ProtocolError(INVALID, f"OpenSession.snapshot: {exc} (send the snapshot's bytes unchanged, the "
                                         "first part holding at least its header)", fatal=True) from None
        if self.header.total_bytes != first.total_bytes:
            raise ProtocolError(INVALID, f"OpenSession.snapshot.total_bytes is {first.total_bytes}, but the "
                                         f"snapshot's header says it has {self.header.total_bytes} bytes", fatal=True)
        identity = self.header.identity
        decoder = identity.decoder
        if asked_decoder and decoder_name(asked_decoder, decoder) != decoder:
            raise ProtocolError(MISMATCH, f"the snapshot's story decodes with {decoder!r}; leave "
                                          "OpenSession.decoder unset or ask for that one", fatal=True)
        here = (engine.config.name, engine.weights_label, str(engine.dtype))
        there = (identity.config, identity.weights, identity.dtype)
        if here != there or decoder not in engine.decoders:
            raise ProtocolError(MISMATCH, f"the snapshot was made by another model (config, weights, dtype "
                                          f"{there}, decoder {decoder!r}); this server runs {here} with "
                                          f"decoders {list(engine.decoders)}", fatal=True)
        self.total = first.total_bytes
        self._data = bytearray(first.data)
        self._parts = 1

    @property
    def complete(self) -> bool:
        return len(self._data) == self.total

    def add(self, part: pb.SnapshotPart) -> None:
        """One more part, in order; a part past the announced size is a fatal INVALID_ARGUMENT."""
        if len(self._data) + len(part.data) > self.total:
            raise ProtocolError(INVALID, f"snapshot part {self._parts} goes past the {self.total} bytes "
                                         "OpenSession.snapshot.total_bytes announced", fatal=True)
        self._data += part.data
        self._parts += 1

    def take(self) -> bytes:
        """The whole snapshot (once complete); frees this buffer."""
        data, self._data = bytes(self._data), bytearray()
        return data


def snapshot_parts(data: bytes, part_bytes: int, next_shot_index: int) -> Iterator[pb.ServerMessage]:
    """``data`` as ServerMessage.snapshot parts of at most ``part_bytes`` each (one part when small)."""
    count = max(1, -(-len(data) // part_bytes))
    for index in range(count):
        yield pb.ServerMessage(snapshot=pb.SnapshotPart(
            data=data[index * part_bytes:(index + 1) * part_bytes], total_bytes=len(data), index=index, count=count,
            next_shot_index=next_shot_index))


def snapshot_messages(snapshot: StorySnapshot, settings: ServerSettings) -> Iterator[pb.ServerMessage]:
    """What a client gets for its snapshot: the parts, or a RESOURCE_EXHAUSTED error past ``max_snapshot_bytes``."""
    data = snapshot.to_bytes()
    if len(data) > settings.max_snapshot_bytes:
        yield error_message(ProtocolError(
            grpc.StatusCode.RESOURCE_EXHAUSTED, f"the story's snapshot is {len(data)} bytes; this server sends at "
                                                f"most {settings.max_snapshot_bytes} (max_snapshot_bytes)"))
        return
    yield from snapshot_parts(data, settings.snapshot_part_bytes, snapshot.next_shot_index)


def restore(story, source: bytes | StorySnapshot) -> StorySnapshot:
    """Continue ``source`` (a snapshot's bytes, or a forked session's snapshot) in ``story``; raises the fatal
    ProtocolError a client gets when that fails."""
    if isinstance(source, bytes):
        try:
            source = StorySnapshot.from_bytes(source)
        except SnapshotError as exc:
            raise restore_error(exc, damaged=True) from None
    try:
        story.restore(source)
    except SnapshotError as exc:
        raise restore_error(exc, damaged=False) from None
    return source


def restore_error(exc: SnapshotError, damaged: bool) -> ProtocolError:
    """A snapshot that could not be restored: INVALID_ARGUMENT when its bytes are damaged, FAILED_PRECONDITION
    when it belongs to another model or story. Fatal: the session ends with nothing kept."""
    what = "the snapshot is damaged" if damaged else "the snapshot cannot continue here"
    return ProtocolError(INVALID if damaged else MISMATCH, f"{what}: {exc}", fatal=True)
