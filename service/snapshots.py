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

from collections.abc import Iterator

import grpc

from engine_core import ShotStreamEngine
from engine_core.snapshot import SnapshotError, SnapshotHeader

from .protocol import ProtocolError, decoder_name, pb
from .settings import ServerSettings

INVALID = grpc.StatusCode.INVALID_ARGUMENT
MISMATCH = grpc.StatusCode.FAILED_PRECONDITION


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


def restore_error(exc: SnapshotError, damaged: bool) -> ProtocolError:
    """A snapshot that could not be restored: INVALID_ARGUMENT when its bytes are damaged, FAILED_PRECONDITION
    when it belongs to another model or story. Fatal: the session ends with nothing kept."""
    what = "the snapshot is damaged" if damaged else "the snapshot cannot continue here"
    return ProtocolError(INVALID if damaged else MISMATCH, f"{what}: {exc}", fatal=True)
