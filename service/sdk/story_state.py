"""The SDK's side of a story's state: story snapshots (read, split into parts, put back together) and cue
logs (asked for in pages, merged, saved as JSON, turned into the shots a replay renders). Standard library and
protobuf only: the SDK needs no torch to keep a game's save."""

from __future__ import annotations

import json
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import grpc

from ..protocol import pb
from .events import ShotStreamError, SnapshotReady

# -- story snapshots ----------------------------------------------------------------------------

# A client -> server message may be limits["max_control_message_bytes"] (64 KiB) long, and the WebSocket
# gateway carries it as base64 JSON (4/3 larger): 32 KiB of snapshot per part fits both with room to spare.
SNAPSHOT_PART_BYTES = 32 * 1024
_SNAPSHOT_MAGIC = b"SHOTSNAP"
_SNAPSHOT_FORMAT = "shotstream.snapshot"
_SNAPSHOT_PREFIX = struct.Struct("<8sIQ")  # magic, format version, header length; then the JSON header


@dataclass(frozen=True)
class SnapshotInfo:
    """What a story snapshot's header says (read here with the standard library: the SDK needs no torch)."""

    global_caption: str
    seed: int
    decoder: str  # "wan" | "tae": what decoded the story (a session continuing it gets the same)
    shot_lengths: tuple[int, ...]  # frames of every shot the story has
    total_bytes: int  # the whole snapshot's size, as its header says
    model: str  # the model configuration that made it (e.g. "wan2.1-t2v-1.3b", "tiny")
    version: int  # the snapshot format version

    @property
    def next_shot_index(self) -> int:
        """The shot the story continues with."""
        return len(self.shot_lengths)

    @property
    def story_frames(self) -> int:
        return sum(self.shot_lengths)


def _bad_snapshot(message: str) -> ShotStreamError:
    return ShotStreamError(grpc.StatusCode.INVALID_ARGUMENT, message)


def snapshot_info(data: bytes | bytearray | memoryview) -> SnapshotInfo:
    """Read a snapshot's header (``b"SHOTSNAP" | u32 version | u64 header length | JSON header | payload``).
    Raises ShotStreamError(INVALID_ARGUMENT), as the server would, for bytes that are not a snapshot or not all
    of it (its checksum is the server's to check)."""
    data = memoryview(data)
    if len(data) < _SNAPSHOT_PREFIX.size or bytes(data[:8]) != _SNAPSHOT_MAGIC:
        raise _bad_snapshot("not a ShotStream story snapshot (it does not start with SHOTSNAP)")
    _, version, header_len = _SNAPSHOT_PREFIX.unpack_from(data)
    end = _SNAPSHOT_PREFIX.size + header_len
    if end > len(data):
        raise _bad_snapshot(f"the snapshot is truncated: {len(data)} bytes, its header alone needs {end}")
    try:
        header = json.loads(bytes(data[_SNAPSHOT_PREFIX.size:end]))
        if not isinstance(header, dict) or header.get("format") != _SNAPSHOT_FORMAT:
            raise ValueError("not a ShotStream story snapshot header")
        identity = header["identity"]
        info = SnapshotInfo(global_caption=str(header["global_caption"]), seed=int(header["seed"]),
                            decoder=str(identity["decoder"]),
                            shot_lengths=tuple(int(n) for n in header["shot_lengths"]),
                            total_bytes=end + int(header["payload_bytes"]), model=str(identity["config"]),
                            version=int(version))
    except (ValueError, KeyError, TypeError) as exc:  # json (UnicodeDecodeError is a ValueError), fields, int()
        raise _bad_snapshot(f"the snapshot's header (format version {version}) cannot be read: "
                            f"{type(exc).__name__}: {exc}") from None
    if info.total_bytes != len(data):
        raise _bad_snapshot(f"the snapshot is truncated or padded: {len(data)} bytes, its header says "
                            f"{info.total_bytes}")
    return info


def snapshot_parts(data: bytes, part_bytes: int = SNAPSHOT_PART_BYTES) -> list[pb.SnapshotPart]:
    """``data`` as ``SnapshotPart`` messages of at most ``part_bytes`` each (``total_bytes``, ``index`` and
    ``count`` set), in order: the first goes in ``OpenSession.snapshot``, the rest as ``snapshot_part``."""
    if part_bytes < 1:
        raise ValueError("part_bytes must be positive")
    data = bytes(data)
    count = max(1, -(-len(data) // part_bytes))
    return [pb.SnapshotPart(data=data[i * part_bytes:(i + 1) * part_bytes], total_bytes=len(data), index=i,
                            count=count) for i in range(count)]


def snapshot_request(wait_for_boundary: bool) -> pb.ClientMessage:
    return pb.ClientMessage(snapshot=pb.SnapshotRequest(wait_for_boundary=bool(wait_for_boundary)))


class SnapshotAssembler:
    """Collects a session's ``ServerMessage.snapshot`` parts into one :class:`SnapshotReady`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._total = 0

    def add(self, part: pb.SnapshotPart) -> SnapshotReady | None:
        """The whole snapshot once its last part is in, else None. Raises ShotStreamError(DATA_LOSS) for parts
        out of order or larger than their total (the session cannot go on from there)."""
        if part.index == 0:
            self._parts, self._size, self._total = [], 0, part.total_bytes
        elif part.index != len(self._parts) or part.total_bytes != self._total:
            expected = len(self._parts)
            self._parts, self._size, self._total = [], 0, 0
            raise ShotStreamError(grpc.StatusCode.DATA_LOSS,
                                  f"snapshot part {part.index} (of {part.total_bytes} bytes) arrived where part "
                                  f"{expected} was due")
        self._parts.append(part.data)
        self._size += len(part.data)
        if self._size > self._total:
            self._parts, self._size, self._total = [], 0, 0
            raise ShotStreamError(grpc.StatusCode.DATA_LOSS, f"the snapshot's parts hold more than its "
                                                             f"{part.total_bytes} bytes")
        if self._size < self._total:
            return None
        data = b"".join(self._parts)
        self._parts, self._size, self._total = [], 0, 0
        return SnapshotReady(data, part.next_shot_index)


# -- cue logs -----------------------------------------------------------------------------------

# Ask for a page past any story's end: answered at once with an empty page. A blocking read cannot be given a
# timeout, so the SDK's waits that have one send this when their time is up, to wake the read.
PING_FROM_SHOT = 2**32 - 1


def cue_log_request(from_shot: int = 0) -> pb.ClientMessage:
    return pb.ClientMessage(cue_log=pb.CueLogRequest(from_shot=int(from_shot)))


@dataclass(frozen=True)
class CueLogPage:
    """One ``ServerMessage.cue_log`` (internal: :meth:`Session.cue_log` merges the pages)."""

    log: pb.CueLog


class CueLogRequests:
    """The cue-log requests on their way, oldest first ("page" or "ping"): the server answers each at once,
    in order, so the answer to the oldest is the next ``cue_log`` message."""

    def __init__(self) -> None:
        self._waiting: deque[str] = deque()

    def sent(self, kind: str) -> None:
        self._waiting.append(kind)  # before the message goes out, so its answer always finds it

    def answered(self) -> str | None:
        """What the arriving page answers: "page", "ping", or None (nothing asked: an unrequested page)."""
        return self._waiting.popleft() if self._waiting else None


def merge_cue_log(pages: list[pb.CueLog]) -> pb.CueLog:
    """One log from its pages (each shot once, in order; ``next_shot`` 0)."""
    out = pb.CueLog()
    out.CopyFrom(pages[0])
    del out.entries[:]
    out.next_shot = 0
    seen = -1
    for page in pages:
        out.dropped_shots = max(out.dropped_shots, page.dropped_shots)
        for entry in page.entries:
            if entry.shot_index > seen:
                out.entries.append(entry)
                seen = entry.shot_index
    return out


def cue_log_shots(log: pb.CueLog) -> list[tuple[str, int]]:
    """The shots a replay of ``log`` renders: each finished entry's ``(prompt, chunks it made)``, in order.
    Raises ValueError for a log that cannot be replayed exactly (its oldest shots dropped, or a gap)."""
    if log.dropped_shots:
        raise ValueError(f"the cue log lost its oldest {log.dropped_shots} shot(s) (the server keeps "
                         "limits['max_cue_log_shots']): it cannot be replayed from its start")
    shots = []
    for expected, entry in enumerate(log.entries, start=log.first_shot_index):
        if entry.shot_index != expected:
            raise ValueError(f"the cue log has shot {entry.shot_index} where shot {expected} was due")
        if entry.finished:
            if entry.chunks < 1:
                raise ValueError(f"the cue log's shot {entry.shot_index} is finished with no chunks")
            shots.append((entry.cue.prompt, int(entry.chunks)))
    return shots


def save_cue_log(log: pb.CueLog, path: str | Path) -> None:
    """Write ``log`` as JSON (protobuf's JSON mapping, the proto's field names) to ``path``."""
    from google.protobuf import json_format

    text = json_format.MessageToJson(log, preserving_proto_field_name=True, indent=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def load_cue_log(path: str | Path) -> pb.CueLog:
    """A cue log that :func:`save_cue_log` wrote (any protobuf JSON of a ``CueLog``). Raises ValueError saying
    what is wrong (OSError when the file cannot be read)."""
    from google.protobuf import json_format

    text = Path(path).read_text(encoding="utf-8")
    try:
        return json_format.Parse(text, pb.CueLog())
    except json_format.ParseError as exc:
        raise ValueError(f"{path}: not a cue log ({exc})") from None
