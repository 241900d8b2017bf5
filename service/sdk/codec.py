"""The wire side both clients share: channel settings, the name <-> enum tables, the request builders and
the decoding of server messages (shared-memory ring reads included) into :mod:`.events`. Nothing here
waits on the network, so :mod:`.client` (blocking) and :mod:`.aio` (asyncio) differ only in how they wait."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from ..protocol import PROTOCOL_VERSION, channels, pb, status_code
from .story_state import SNAPSHOT_PART_BYTES, CueLogPage, SnapshotAssembler, snapshot_info, snapshot_parts
from .events import (Chunk, ChunkTiming, CueAccepted, Event, Progress, ServerError, ServerInfo, SessionInfo,
                     ShotFinished, ShotStarted, ShotStreamError, SnapshotRestored, Stats, TakeSaved,
                     TakeStarted)

DEFAULT_ADDRESS = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # one RGBA chunk at 480x832 is 19 MB
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]

_TRANSPORTS = {"shared_memory": pb.TRANSPORT_SHARED_MEMORY, "shm": pb.TRANSPORT_SHARED_MEMORY,
               "inline": pb.TRANSPORT_INLINE}
_FORMATS = {"rgb8": pb.FRAME_FORMAT_RGB8, "rgb": pb.FRAME_FORMAT_RGB8,
            "rgba8": pb.FRAME_FORMAT_RGBA8, "rgba": pb.FRAME_FORMAT_RGBA8}
_MODES = {"wait": pb.CUE_MODE_WAIT, "cut": pb.CUE_MODE_CUT}
_DECODERS = {"wan": pb.DECODER_WAN, "tae": pb.DECODER_TAE}
_QUALITIES = {"live": pb.TAKE_QUALITY_LIVE, "full": pb.TAKE_QUALITY_FULL}
_TRANSPORT_NAMES = {pb.TRANSPORT_SHARED_MEMORY: "shared_memory", pb.TRANSPORT_INLINE: "inline"}
_FORMAT_NAMES = {pb.FRAME_FORMAT_RGB8: "rgb8", pb.FRAME_FORMAT_RGBA8: "rgba8"}
_DECODER_NAMES = {v: k for k, v in _DECODERS.items()}
_QUALITY_NAMES = {v: k for k, v in _QUALITIES.items()}


# -- channel ------------------------------------------------------------------------------------


def credentials(root_certificates: bytes | str | Path | None, tls: bool | None) -> grpc.ChannelCredentials | None:
    """TLS credentials for the channel, or None for a plaintext one."""
    if root_certificates is None and not tls:
        return None
    if isinstance(root_certificates, (str, Path)):
        root_certificates = Path(root_certificates).read_bytes()
    return grpc.ssl_channel_credentials(root_certificates=root_certificates)


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the bearer token the server may require."""
    return (("authorization", f"Bearer {token}"),) if token else ()


# -- errors -------------------------------------------------------------------------------------


def from_rpc_error(exc: grpc.RpcError) -> ShotStreamError:
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    return ShotStreamError(code or grpc.StatusCode.UNKNOWN, details or "the call failed with no message")


# -- requests -----------------------------------------------------------------------------------


def _choice(value: str | int, table: dict[str, int], what: str) -> int:
    if isinstance(value, int):
        return value
    try:
        return table[value.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"{what} must be one of {sorted(table)}, got {value!r}") from None


def _decoder(decoder: str | int | None) -> int:
    """The wire ``Decoder`` of "wan" / "tae"; None = unset (the server's default)."""
    return pb.DECODER_UNSPECIFIED if decoder is None else _choice(decoder, _DECODERS, "decoder")


def _decoder_name(value: int) -> str:
    """A wire ``Decoder`` as a name; unset (a server from before decoders) is the Wan VAE, the only one it had."""
    if value == pb.DECODER_UNSPECIFIED:
        return "wan"
    return _DECODER_NAMES.get(value, f"decoder-{value}")  # one added after this client was written


def _quality_name(value: int) -> str:
    """A wire ``TakeQuality`` as a name; unset is "live" (as the server treats it)."""
    if value == pb.TAKE_QUALITY_UNSPECIFIED:
        return "live"
    return _QUALITY_NAMES.get(value, f"quality-{value}")


def start_take(name: str, quality: str | int) -> pb.StartTake:
    """A ``StartTake``: ``name`` "" lets the server pick one; ``quality`` "live" | "full"."""
    return pb.StartTake(name=name, quality=_choice(quality, _QUALITIES, "quality"))


def open_message(global_caption: str, seed: int, transport: str, frame_format: str, chunks_in_flight: int,
                 client_name: str, decoder: str | int | None = None) -> pb.ClientMessage:
    return pb.ClientMessage(open=pb.OpenSession(
        protocol_version=PROTOCOL_VERSION, client_name=client_name, global_caption=global_caption, seed=int(seed),
        frame_format=_choice(frame_format, _FORMATS, "frame_format"),
        transport=_choice(transport, _TRANSPORTS, "transport"), max_chunks_in_flight=int(chunks_in_flight),
        decoder=_decoder(decoder)))


def open_messages(global_caption: str | None, seed: int | None, transport: str, frame_format: str,
                  chunks_in_flight: int, client_name: str, decoder: str | int | None = None, *,
                  snapshot: bytes | None = None, fork: tuple[str, bool] | None = None,
                  part_bytes: int | None = None) -> list[pb.ClientMessage]:
    """What opens a session: the ``OpenSession``, then (``snapshot``) the snapshot's other parts as
    ``snapshot_part`` messages, to be sent at once, in order. ``fork``: ``(session_id, wait_for_boundary)``.

    A snapshot's caption, seed and decoder come from its header: ``global_caption``/``seed`` may be left
    None (a different one raises ValueError, since the server would ignore it), ``decoder`` None = the
    snapshot's. A fork takes all three from the other session (the server's side), so only ``decoder`` may
    be given. Raises ShotStreamError(INVALID_ARGUMENT) for bytes that are not a whole snapshot."""
    if snapshot is not None and fork is not None:
        raise ValueError("open a session from a snapshot or a fork, not both")
    if snapshot is None and fork is None:
        if global_caption is None:
            raise TypeError("open_session() needs a global_caption (unless it continues a snapshot or forks a "
                            "session)")
        return [open_message(global_caption, seed or 0, transport, frame_format, chunks_in_flight, client_name,
                             decoder)]
    if fork is not None:
        session_id, wait = fork
        if global_caption or seed:
            raise ValueError("a fork continues the other session's story: its caption and seed are that session's "
                             "(leave global_caption and seed out)")
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"fork needs the other session's id (Session.session_id), got {session_id!r}")
        msg = open_message("", 0, transport, frame_format, chunks_in_flight, client_name, decoder)
        msg.open.fork.CopyFrom(pb.Fork(session_id=session_id, wait_for_boundary=bool(wait)))
        return [msg]
    header = snapshot_info(snapshot)
    if global_caption and global_caption != header.global_caption:
        raise ValueError("the snapshot continues a story with another global caption (the caption is part of "
                         "every shot's prompt): leave global_caption out")
    if seed is not None and int(seed) != header.seed:
        raise ValueError(f"the snapshot's story has seed {header.seed}; leave seed out (a snapshot keeps its seed)")
    msg = open_message(header.global_caption, header.seed, transport, frame_format, chunks_in_flight, client_name,
                       header.decoder if decoder is None else decoder)
    parts = snapshot_parts(snapshot, part_bytes or SNAPSHOT_PART_BYTES)
    msg.open.snapshot.CopyFrom(parts[0])
    return [msg] + [pb.ClientMessage(snapshot_part=part) for part in parts[1:]]


def check_num_chunks(num_chunks: Any, max_chunks: int | None) -> int:
    """``num_chunks`` as the server checks it (same message), before protobuf's bare "Value out of range"."""
    n = int(num_chunks)
    top = max_chunks if max_chunks else "max_chunks_per_shot"
    if n < 0 or (max_chunks and n > max_chunks) or n >= 2**32:
        raise ShotStreamError(grpc.StatusCode.INVALID_ARGUMENT, f"num_chunks {n} is out of range 1..{top} "
                                                                "(0 = full shot)")
    return n


def cue_message(prompt: str, num_chunks: int, mode: str, event_id: str | None, tags: Iterable[str],
                max_chunks: int | None = None, at_chunk: int = 0) -> tuple[str, pb.ClientMessage]:
    """The cue and its event id (generated when not given), which the caller hands back to the user.
    ``at_chunk`` (a cut only): the cut lands after that many chunks of the shot in progress (0 = next boundary)."""
    num_chunks = check_num_chunks(num_chunks, max_chunks)
    mode_value = _choice(mode, _MODES, "mode")
    at_chunk = int(at_chunk)
    if at_chunk < 0 or at_chunk >= 2**32:
        raise ValueError(f"at_chunk must be 0 (the next chunk boundary) or a chunk count, got {at_chunk}")
    if at_chunk and mode_value != pb.CUE_MODE_CUT:
        raise ValueError("at_chunk says where a cut lands: it needs mode='cut'")
    event_id = event_id if event_id is not None else uuid.uuid4().hex[:12]
    if isinstance(tags, str):
        tags = (tags,)
    return event_id, pb.ClientMessage(cue=pb.Cue(event_id=event_id, prompt=prompt, tags=list(tags),
                                                 num_chunks=int(num_chunks), mode=mode_value, at_chunk=at_chunk))


def story_request(global_caption: str | None, shots: Iterable[Any] | None, seed: int | None, frame_format: str,
                  decoder: str | int | None = None, take: str | None = None,
                  take_quality: str | int = "live", cue_log: pb.CueLog | None = None) -> pb.RenderStoryRequest:
    """Shots: strings, ``(prompt, num_chunks)`` pairs, dicts with 'prompt' and 'chunks'/'num_chunks', or
    objects with ``.prompt`` and ``.chunks`` (``service.story_file.ShotSpec``). 0 / None chunks = full shot.
    ``take``: also record the story as a take of that name ("" = the server picks one; None = no take).
    ``cue_log``: replay that log instead (no shots; its caption and seed; ``decoder`` None = the log's)."""
    decoder_value = _decoder(decoder)
    take_msg = start_take(take, take_quality) if take is not None else None
    if cue_log is not None:
        if not isinstance(cue_log, pb.CueLog):
            raise TypeError(f"cue_log must be a CueLog (Session.cue_log(), load_cue_log()), got "
                            f"{type(cue_log).__name__}")
        if shots:
            raise ValueError("a cue log replays its own shots: give shots or cue_log, not both")
        if global_caption and global_caption != cue_log.global_caption:
            raise ValueError("a cue log replays with its own global caption: leave global_caption out")
        if seed is not None and int(seed) != cue_log.seed:
            raise ValueError(f"a cue log replays with its own seed ({cue_log.seed}): leave seed out")
        return pb.RenderStoryRequest(protocol_version=PROTOCOL_VERSION, global_caption=cue_log.global_caption,
                                     seed=cue_log.seed, frame_format=_choice(frame_format, _FORMATS, "frame_format"),
                                     decoder=decoder_value, take=take_msg, cue_log=cue_log)
    if global_caption is None or shots is None:
        raise TypeError("render_story() needs a global_caption and shots (or a cue_log)")
    seed = seed or 0
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
        out.append(pb.StoryShot(prompt=prompt, num_chunks=check_num_chunks(n or 0, None)))
    return pb.RenderStoryRequest(protocol_version=PROTOCOL_VERSION, global_caption=global_caption, seed=int(seed),
                                 shots=out, frame_format=_choice(frame_format, _FORMATS, "frame_format"),
                                 decoder=decoder_value, take=take_msg)


def ack_for(event: Event, closing: bool) -> pb.ClientMessage | None:
    """The ack owed for an event just handed to the user: a chunk's pixels are ours by then, so the server
    may reuse its credit (and ring slot). None for other events, and once Close is sent."""
    if isinstance(event, Chunk) and not closing:
        return pb.ClientMessage(ack=pb.Ack(chunk_seq=event.chunk_seq))
    return None


# -- server messages ----------------------------------------------------------------------------


def server_info(msg: pb.ServerInfo) -> ServerInfo:
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
        max_chunks_in_flight=msg.max_chunks_in_flight, limits=dict(msg.limits), attention=msg.attention,
        fast_path=msg.fast_path, fp8=msg.fp8,
        decoders=tuple(_decoder_name(d) for d in msg.decoders) or ("wan",),  # none listed: a server from before
        default_decoder=_decoder_name(msg.default_decoder), tae=msg.tae)


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


def _take_started(m: pb.TakeStarted) -> TakeStarted:
    return TakeStarted(m.name, m.path, _quality_name(m.quality), m.full_path)


def _take_saved(m: pb.TakeSaved) -> TakeSaved:
    return TakeSaved(m.name, m.path, m.frames, m.bytes, m.duration_s, m.full_path, m.full_bytes)


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
                 last_in_shot=m.last_in_shot, frame_format=_FORMAT_NAMES.get(m.frame_format, "rgb8"),
                 transport=transport, timing=_timing(m), received_at=now, copy_ms=1e3 * (time.perf_counter() - t0))


def story_event(ev: pb.RenderStoryEvent) -> Event | None:
    """One RenderStory event (``take_saved``: a TakeSaved, the last event when a take was asked); None for a
    kind added after this client was written."""
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
    if kind == "take_saved":
        return _take_saved(ev.take_saved)
    return None


@dataclass(frozen=True)
class Closed:
    """The server ended the session (``SessionClosed``); ``reason`` becomes the session's ``close_reason``."""

    reason: str


def end_reason(msg: pb.ServerMessage) -> str | None:
    """While closing, messages are discarded undecoded (nobody reads their pixels any more); this says
    whether ``msg`` ends the session, and with what ``close_reason``."""
    kind = msg.WhichOneof("kind")
    if kind == "closed":
        return msg.closed.reason
    if kind == "error" and msg.error.fatal:
        return "error"
    return None


def session_decoder(reply: pb.ServerMessage | None, address: str) -> SessionDecoder:
    """The decoder for a ``Direct`` session, from the server's first message (None: the stream ended).
    Raises ShotStreamError when the server refused the session or its ring cannot be mapped."""
    if reply is None:
        raise ShotStreamError(grpc.StatusCode.UNAVAILABLE, "the server ended the stream without opening the session")
    kind = reply.WhichOneof("kind")
    if kind == "error":
        raise ShotStreamError(status_code(reply.error.code), reply.error.message)
    if kind != "opened":
        raise ShotStreamError(grpc.StatusCode.INTERNAL, f"expected `opened`, the server sent `{kind}`")
    return SessionDecoder(reply.opened, address)


class SessionDecoder:
    """Turns one session's ServerMessages into events; owns its ring reader."""

    def __init__(self, opened: pb.SessionOpened, address: str):
        self.info = SessionInfo(
            session_id=opened.session_id, width=opened.width, height=opened.height, fps=opened.fps,
            frames_first_chunk=opened.frames_first_chunk, frames_per_chunk=opened.frames_per_chunk,
            max_chunks_per_shot=opened.max_chunks_per_shot,
            frame_format=_FORMAT_NAMES.get(opened.frame_format, "rgb8"),
            transport=_TRANSPORT_NAMES.get(opened.transport, "inline"), chunks_in_flight=opened.max_chunks_in_flight,
            model=opened.model, random_weights=opened.random_weights,
            ring_path=opened.ring.path if opened.HasField("ring") else None, decoder=_decoder_name(opened.decoder))
        self.snapshots = SnapshotAssembler()
        self.reader = None
        if opened.transport == pb.TRANSPORT_SHARED_MEMORY:
            path = opened.ring.path
            if not path or not os.path.exists(path):
                raise ShotStreamError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"the server put this session's shared-memory ring at {path!r}, which does not exist on this "
                    f"machine: shared memory only works when client and server run on the same host (server: "
                    f"{address}). Open the session with transport='inline' instead.")
            from ..ring import RingReader

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

    def decode(self, msg: pb.ServerMessage) -> Event | Closed | CueLogPage | None:
        """The event in ``msg``, :class:`Closed`, a :class:`CueLogPage`, or None for a snapshot part that is not
        the last one or a kind added after this client was written.
        Raises ShotStreamError when the session is lost (a fatal error, a chunk that cannot be read)."""
        now = time.perf_counter()
        kind = msg.WhichOneof("kind")
        if kind == "chunk":
            m = msg.chunk
            if m.WhichOneof("payload") == "ring_slot":
                return self._ring_chunk(m, now)
            return _inline_chunk(m, now, self.info.transport)
        if kind == "shot_started":
            return _shot_started(msg.shot_started, now)
        if kind == "shot_finished":
            return _shot_finished(msg.shot_finished, now)
        if kind == "cue_accepted":
            return CueAccepted(msg.cue_accepted.event_id, msg.cue_accepted.queue_position)
        if kind == "stats":
            return _stats(msg.stats)
        if kind == "take_started":
            return _take_started(msg.take_started)
        if kind == "take_saved":
            return _take_saved(msg.take_saved)
        if kind == "error":
            e = msg.error
            if e.fatal:
                raise ShotStreamError(status_code(e.code), e.message, e.event_id)
            return ServerError(status_code(e.code), e.message, e.event_id)
        if kind == "closed":
            return Closed(msg.closed.reason)
        if kind == "snapshot":
            return self.snapshots.add(msg.snapshot)
        if kind == "restored":
            return SnapshotRestored(msg.restored.next_shot_index, msg.restored.story_frames)
        if kind == "cue_log":
            return CueLogPage(msg.cue_log)
        return None

    def _ring_chunk(self, m: pb.FrameChunk, now: float) -> Chunk:
        t0 = time.perf_counter()
        if self.reader is None:
            raise ShotStreamError(grpc.StatusCode.INTERNAL, "a ring-slot chunk arrived on an inline session")
        fmt = m.frame_format or pb.FRAME_FORMAT_RGB8
        shape = (m.num_frames, m.height, m.width, channels(fmt))
        from ..ring import StaleSlotError

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


def answers_snapshot_request(event: Event) -> bool:
    """Whether a non-fatal error refuses a snapshot request (e.g. FAILED_PRECONDITION: a shot is in progress
    and ``wait_for_boundary`` was false): errors about the session as a whole carry no event id, and the
    server names the snapshot in its message."""
    return isinstance(event, ServerError) and not event.event_id and "snapshot" in event.message.lower()
