"""One interactive story session, independent of the door it came through (gRPC or WebSocket).

Threads: client messages are handled on the asyncio loop (:meth:`Session.handle`); the GPU worker
thread runs :meth:`Session.run` (one unit: a shot start, one DiT forward, or the next shot's setup;
:mod:`service.scheduler` picks which), hands out decoded chunks and calls :meth:`Session.release`. Everything they share sits behind ``_lock``. Server messages go to
``outbox`` (an asyncio queue) through ``loop.call_soon_threadsafe``.

Backpressure is credit based: a chunk is generated only while fewer than ``credits`` chunks are
unacknowledged, so a slow client stalls only its own session and the server holds at most
``credits`` chunks for it, in memory or in its ring. An ack counts only for a chunk that has been
handed to the client's transport (``delivered``), so acking chunk numbers ahead frees nothing.
Everything else a client can make a session hold is bounded too: queued cues (``max_queued_cues``),
outgoing messages (:mod:`service.outbox`), cue text sizes; a client that keeps hitting a limit
(``max_refusals`` refusals in a row) loses its session with a fatal RESOURCE_EXHAUSTED.

A story can be handed over between shots (:mod:`service.snapshots`): a session may continue a
snapshot or fork another session, and may be asked for its snapshot; both run on the worker as
units of their own. Its cue log (:mod:`service.cue_log`) records where every cut landed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

import grpc
import numpy as np

from engine_core import ChunkResult, ShotStreamEngine, StorySnapshot

from .checks import check_cue_labels, check_open, check_prompt, engine_failure
from .protocol import PROTOCOL_VERSION, ProtocolError, channels, decoder_enum, decoder_name, error_message, pack_frames, pb
from .cue_log import CueLogBook
from .full_takes import Renderer
from .outbox import Outbox
from .ring import FrameRing
from .scheduler import Unit
from .settings import ServerSettings
from .snapshots import StoryHandoff, Waiter, restore, snapshot_messages
from .takes import FullQuality, SessionTakes, TakeFolder

log = logging.getLogger(__name__)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
_STATS_WINDOW = 64  # chunk times Stats.chunk_ms_mean averages over (and all a session keeps)


@dataclass(frozen=True)
class _Cue:
    event_id: str
    prompt: str
    tags: tuple[str, ...]
    num_chunks: int
    wire: pb.Cue  # as the client sent it (the cue log keeps it)


@dataclass
class _Shot:
    cue: _Cue
    index: int
    started: float
    chunks: int = 0
    frames: int = 0
    begun: int = 0  # chunks whose forwards have started
    log: pb.CueLogEntry | None = None


@dataclass
class SessionCounters:
    chunks: int = 0
    frames: int = 0
    gpu_s: float = 0.0
    chunk_ms: list[float] = field(default_factory=list)  # the last _STATS_WINDOW chunks only


class Session:
    def __init__(self, session_id: str, open_msg: pb.OpenSession, engine: ShotStreamEngine, settings: ServerSettings,
                 loop: asyncio.AbstractEventLoop, on_chunk: Callable[[float, int], None] | None = None,
                 post: Callable[..., Future] | None = None, renderer: Renderer | None = None,
                 fork_of: Session | None = None):
        """``post(fn, *args)`` runs ``fn`` on the sender thread, in order (``None``: right here): frame packing,
        ring/inline copies and every message the worker emits go through it, off the GPU worker's critical path.
        ``renderer`` (the GPU worker) runs full-quality take renders; without it takes are live only.
        ``fork_of``: the open session whose story this one continues (OpenSession.fork)."""
        check_open(open_msg, settings)
        caption, seed = open_msg.global_caption, open_msg.seed
        self._handoff = StoryHandoff(open_msg, engine, settings, forked=fork_of is not None)
        if (header := self._handoff.header) is not None:
            caption, seed, self.decoder = header.global_caption, header.seed, header.identity.decoder
        elif fork_of is not None:
            caption, seed, self.decoder = fork_of.story.global_caption, fork_of.story.seed, fork_of.decoder
            if decoder_name(open_msg.decoder, self.decoder) != self.decoder:
                raise ProtocolError(PRECONDITION, f"session {fork_of.id}'s story decodes with {self.decoder!r}: "
                                                  "leave OpenSession.decoder unset to fork it", fatal=True)
        else:
            self.decoder = decoder_name(open_msg.decoder, settings.default_decoder)
        if self.decoder not in engine.decoders:
            raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                                f"this server has no {self.decoder!r} decoder (it has {list(engine.decoders)}): "
                                "leave `decoder` unset, or start the server with a tiny decoder (`--tae FILE`)",
                                fatal=True)
        self.id = session_id
        self.client_name = open_msg.client_name or "anonymous"
        self.engine = engine
        self.settings = settings
        self.frame_format = open_msg.frame_format or pb.FRAME_FORMAT_RGB8
        self.transport = open_msg.transport or pb.TRANSPORT_INLINE
        self.credits = open_msg.max_chunks_in_flight or settings.default_chunks_in_flight
        self.outbox = Outbox(settings.max_outbox_messages, settings.max_outbox_bytes)
        self._loop = loop
        self._loop_thread = threading.get_ident()  # sessions are created on the loop thread (registry.open)
        self._on_chunk = on_chunk
        self._post = post
        self._last_post: Future | None = None  # the latest work handed to the sender thread
        # Set by the registry: server-wide Stats fields (open sessions, GPU memory), merged into stats().
        self.server_stats: Callable[[], dict[str, int]] | None = None
        self._lock = threading.Lock()
        self._cues: deque[_Cue] = deque()
        self._cut = False
        self._paused = False
        self.closing = False
        self._shot: _Shot | None = None
        self._in_flight: dict[int, int | None] = {}  # chunk seq -> ring slot
        self._delivered: set[int] = set()  # chunks in flight that went out to the client: these may be acked
        self._refusals = 0  # limit refusals in a row
        self._cue_since = 0.0  # when the oldest queued cue became due (monotonic)
        self._making: deque[float] = deque()  # start times of chunks being denoised or decoded, oldest first
        self._prepare_due = False  # the shot is denoised and the next one's setup has not run yet
        self._seq = 0
        self._story_frame = 0
        self._cut_at = 0  # the pending cut's Cue.at_chunk
        self._log = CueLogBook(caption, seed, decoder_enum(self.decoder), settings.max_cue_log_shots)
        self.counters = SessionCounters()
        stream = engine.config.stream
        full = FullQuality(engine, preview=self.decoder != "wan", renderer=renderer,
                           max_shots=settings.max_take_full_shots, max_renders=settings.max_full_renders)
        self.takes = SessionTakes(TakeFolder(settings.takes_dir, settings.take_file_mode), session_id, stream.width,
                                  stream.height, stream.fps, self._emit, full)
        self._frame_bytes = stream.height * stream.width * channels(self.frame_format)
        self.story = engine.open_story(caption, seed, self.decoder)
        self.ring: FrameRing | None = None
        try:
            if self.transport == pb.TRANSPORT_SHARED_MEMORY:
                self.ring = FrameRing(session_id, self.credits, self._frame_bytes * _max_frames_per_chunk(engine),
                                      settings.ring_dir)
            if fork_of is not None:
                fork_of.add_waiter(self._forked, open_msg.fork.wait_for_boundary, f"fork {session_id}")
        except BaseException:
            self.story.close()
            if self.ring is not None:
                self.ring.close()
            raise
        self._free_slots = list(range(self.credits))

    # -- loop thread --------------------------------------------------------------------------

    def opened_message(self) -> pb.ServerMessage:
        cfg = self.engine.config
        first = cfg.pixel_frames(1)
        return pb.ServerMessage(opened=pb.SessionOpened(
            session_id=self.id, protocol_version=PROTOCOL_VERSION, width=cfg.stream.width, height=cfg.stream.height,
            fps=cfg.stream.fps, frames_first_chunk=first, frames_per_chunk=cfg.pixel_frames(2) - first,
            max_chunks_per_shot=cfg.stream.chunks_per_shot, frame_format=self.frame_format, transport=self.transport,
            max_chunks_in_flight=self.credits, ring=self.ring.layout() if self.ring else None, model=cfg.name,
            random_weights=self.engine.random_weights, decoder=decoder_enum(self.decoder)))

    def handle(self, msg: pb.ClientMessage) -> bool:
        """Apply one client message; returns True when the worker may have new work. Raises ProtocolError."""
        kind = msg.WhichOneof("kind")
        if kind in ("start_take", "stop_take"):
            # Not under the session lock: a full-quality take talks to the GPU worker, whose scheduler takes
            # that lock while holding the worker's own. The takes have a lock of their own.
            if kind == "start_take":
                self.takes.start(msg.start_take.name, msg.start_take.quality)
            else:
                self.takes.stop()
            return False
        with self._lock:
            if kind == "cue":
                cue = self._parse_cue(msg.cue)
                if msg.cue.mode == pb.CUE_MODE_CUT:
                    self._cues.clear()
                    self._cut = self._shot is not None
                    self._cut_at = msg.cue.at_chunk
                elif len(self._cues) >= self.settings.max_queued_cues:
                    self._refuse(f"{len(self._cues)} cues are already queued (max_queued_cues="
                                 f"{self.settings.max_queued_cues}): wait for a shot to start, or cut", cue.event_id)
                self._refusals = 0
                if not self._cues:
                    self._cue_since = time.monotonic()
                self._cues.append(cue)
                self._emit(pb.ServerMessage(cue_accepted=pb.CueAccepted(event_id=cue.event_id,
                                                                        queue_position=len(self._cues) - 1)))
                return True
            if kind == "ack":
                seq = msg.ack.chunk_seq
                if seq not in self._delivered:
                    sent = sorted(self._delivered)
                    raise ProtocolError(INVALID, f"ack for chunk {seq}, which is not awaiting an ack (delivered "
                                                 f"and unacked: {sent[:16] or 'none'}); ack a chunk only after "
                                                 "receiving it")
                self._delivered.discard(seq)
                slot = self._in_flight.pop(seq)
                if slot is not None:
                    self._free_slots.append(slot)
                return True
            if kind == "pause":
                self._paused = True
                return False
            if kind == "resume":
                self._paused = False
                return True
            if kind == "snapshot_part":
                return self._handoff.add_part(msg.snapshot_part)
            if kind == "snapshot":
                self._snapshot_request(msg.snapshot.wait_for_boundary)
                return True
            if kind == "cue_log":
                self._emit(pb.ServerMessage(cue_log=self._log.page(msg.cue_log.from_shot,
                                                                   self.settings.max_outbox_bytes // 4)))
                return False
            if kind == "open":
                raise ProtocolError(PRECONDITION, "the session is already open")
            raise ProtocolError(INVALID, "empty client message: set one of cue, ack, pause, resume, close, "
                                         "start_take, stop_take, snapshot, snapshot_part, cue_log")

    def _snapshot_request(self, wait_for_boundary: bool) -> None:
        """This client asks for its story's snapshot (under the lock)."""
        if self._handoff.client_asked or self.outbox.snapshot_bytes:
            raise ProtocolError(PRECONDITION, "a snapshot of this session is already on its way: ask again after "
                                              "its last part")
        self._handoff.check_can_snapshot(self._shot_name(), wait_for_boundary, "a snapshot")
        self._handoff.client_asked = True
        self._handoff.add_waiter(self._send_snapshot)

    def add_waiter(self, waiter: Waiter, wait_for_boundary: bool, who: str) -> None:
        """Another session forks this one: ``waiter`` gets the story's snapshot at its next boundary."""
        with self._lock:
            if self.closing:
                raise ProtocolError(grpc.StatusCode.NOT_FOUND, f"session {self.id} is closing: it cannot be forked",
                                    fatal=True)
            try:
                self._handoff.check_can_snapshot(self._shot_name(), wait_for_boundary, f"a fork of session {self.id}")
            except ProtocolError as exc:
                raise ProtocolError(exc.code, exc.message, fatal=True) from None
            self._handoff.add_waiter(waiter)
        log.info("session %s: %s waits for its snapshot", self.id, who)

    def _shot_name(self) -> str | None:
        shot = self._shot
        return None if shot is None else f"shot {shot.index} ({shot.cue.event_id or 'no event id'})"

    def delivered(self, seq: int) -> None:
        """Chunk ``seq`` has been handed to the client's transport: from now on it may be acked (loop thread)."""
        with self._lock:
            if seq in self._in_flight:
                self._delivered.add(seq)

    def _refuse(self, message: str, event_id: str) -> None:
        """A limit was hit: a non-fatal RESOURCE_EXHAUSTED, fatal after ``max_refusals`` in a row."""
        self._refusals += 1
        limit = self.settings.max_refusals
        if self._refusals > limit:
            raise ProtocolError(EXHAUSTED, f"{message}; the session ends after {limit} refusals in a row "
                                           "(max_refusals)", event_id=event_id, fatal=True)
        raise ProtocolError(EXHAUSTED, message, event_id=event_id)

    def _parse_cue(self, cue: pb.Cue) -> _Cue:
        chunks = self.engine.config.stream.chunks_per_shot
        check_cue_labels(cue, self.settings)
        check_prompt(cue.prompt, cue.num_chunks, self.settings.max_prompt_chars, chunks, cue.event_id)
        text = self.engine.text
        # the engine's prompt is caption + "shot{k}:" + prompt; k is at most the next index plus the queued cues
        full = len(self.story.global_caption) + len(cue.prompt)
        if text is not None:
            full += len(f"shot{self.story.next_shot_index + len(self._cues)}:")
        if text is not None and full > text.max_prompt_chars:
            raise ProtocolError(INVALID, f"the global caption plus this prompt have {full} characters; the model's "
                                         f"limit is {text.max_prompt_chars}: shorten the prompt or the caption",
                                event_id=cue.event_id)
        if cue.mode not in (pb.CUE_MODE_UNSPECIFIED, pb.CUE_MODE_WAIT, pb.CUE_MODE_CUT):
            raise ProtocolError(INVALID, f"unknown cue mode {cue.mode}", event_id=cue.event_id)
        if cue.at_chunk and cue.mode != pb.CUE_MODE_CUT:
            raise ProtocolError(INVALID, "at_chunk applies to CUT cues (a WAIT cue starts when the shot ends)",
                                event_id=cue.event_id)
        if cue.at_chunk > chunks:
            raise ProtocolError(INVALID, f"at_chunk {cue.at_chunk} is out of range 0..{chunks}", event_id=cue.event_id)
        wire = pb.Cue()
        wire.CopyFrom(cue)
        return _Cue(cue.event_id, cue.prompt, tuple(cue.tags), cue.num_chunks or chunks, wire)

    # -- worker thread ------------------------------------------------------------------------

    def next_unit(self) -> tuple[Unit, float] | None:
        """What this session can run now (see :mod:`service.scheduler`), and since when it waits."""
        with self._lock:
            if self.closing:
                return None
            handoff = self._handoff
            if handoff.ready is not None:
                return Unit.RESTORE, handoff.since
            if handoff.awaiting:
                return None
            if handoff.waiters and (self._shot is None or self._cut_ready()):
                return Unit.SNAPSHOT, handoff.since
            if self._paused:
                return None
            # a new chunk (a shot's first included) needs a credit; one part-way through its forwards has one,
            # which a cut frees (it drops that chunk)
            held = len(self._in_flight) + len(self._making)
            if self._cues and (self._shot is None or self._cut_ready()):
                dropped = 1 if self._shot is not None and self.story.denoising else 0
                return (Unit.START_SHOT, self._cue_since) if held - dropped < self.credits else None
            credit = held < self.credits
            if self._shot is not None and self.story.has_work:
                return (Unit.FORWARD, 0.0) if credit or self.story.denoising else None
            return (Unit.PREPARE, 0.0) if self._prepare_due else None

    def _cut_ready(self) -> bool:
        """A cut is pending and may land now (under the lock): at the next chunk boundary, or once the shot has
        made ``at_chunk`` chunks. A shot announced with ShotStarted always delivers its first chunk."""
        shot = self._shot
        if not self._cut or shot is None or (shot.begun == 1 and self.story.denoising):
            return False
        at = self._cut_at
        return at == 0 or shot.begun > at or (shot.begun == at and not self.story.denoising)

    @property
    def frames_pending(self) -> bool:
        return self.story.frames_pending

    def run(self, unit: Unit) -> int:
        """Run one unit of work; returns the frames it handed to the client."""
        if unit is Unit.START_SHOT:
            return self._start_shot()
        if unit is Unit.RESTORE:
            return self._restore()
        if unit is Unit.SNAPSHOT:
            return self._take_snapshot()
        if unit is Unit.FORWARD:
            if not self.story.denoising:
                self._making.append(time.perf_counter())
                self._shot.begun += 1
            frames = self._deliver(self.story.advance())
            self._prepare_due = not self.story.has_work  # the shot is denoised: ready the next one before its cue
            return frames
        self._prepare_due = False
        self.story.prepare_next_shot()
        return self._deliver(self.story.poll_frames())

    def poll_frames(self) -> int:
        """Hand out frames that finished decoding, without running anything."""
        return self._deliver(self.story.poll_frames())

    def wait_frames(self) -> int:
        """Block until this session's oldest decoding frames are ready, and hand them out."""
        return self._deliver(self.story.wait_frames())

    def release(self) -> None:
        """Free the story's GPU memory and the ring file once the sender is done with it. Worker thread."""
        with self._lock:
            waiters = self._handoff.take_waiters()
        for waiter in waiters:  # forks of this session that were waiting for its boundary
            waiter(None)
        if self._last_post is not None:
            wait([self._last_post])
        self.story.close()
        if self.ring is not None:
            self.ring.close()

    def fail(self, exc: BaseException) -> None:
        """An engine failure (e.g. out of GPU memory) ends this session, not the server."""
        if isinstance(exc, ProtocolError):  # e.g. a snapshot that cannot be restored: the client's mistake
            log.info("session %s ends: %s", self.id, exc.message)
            self._emit(error_message(exc))
            return
        log.exception("session %s failed", self.id, exc_info=exc)
        self._emit(error_message(engine_failure("generation failed", exc)))

    def _start_shot(self) -> int:
        """Start the next cued shot; on a cut, first deliver the chunks the cut shot finished denoising."""
        with self._lock:
            cue = self._cues.popleft()
            self._cut = False
            self._cue_since = time.monotonic()
        frames = self._end_cut_shot() if self._shot is not None else 0
        info = self.story.start_shot(cue.prompt, cue.num_chunks)
        self._prepare_due = False
        with self._lock:
            self._shot = _Shot(cue=cue, index=info.shot_index, started=time.perf_counter(),
                               log=self._log.started(cue.wire, info.shot_index))
        self._emit(pb.ServerMessage(shot_started=pb.ShotStarted(
            event_id=cue.event_id, tags=cue.tags, shot_index=info.shot_index, num_chunks=info.num_chunks,
            num_frames=info.num_frames, prompt_tokens=info.prompt_tokens or 0, truncated_tokens=info.truncated_tokens,
            setup_ms=sum(info.timings_ms.values()))))
        return frames

    def _end_cut_shot(self) -> int:
        """A cut lands: the chunk part-way through its forwards is dropped, the denoised ones go out."""
        dropped = self.story.denoising
        self.story.end_shot()
        if dropped:
            self._making.pop()
        frames = self._deliver(self.story.poll_frames())
        self._finish_shot(cut=True)
        return frames

    def _restore(self) -> int:
        """Continue the snapshot (its bytes, or a forked session's) this session was opened with."""
        with self._lock:
            source = self._handoff.take_ready()
        source = restore(self.story, source)
        self._story_frame = sum(source.shot_lengths)
        with self._lock:
            self._log.restored(source.next_shot_index)
            self._handoff.awaiting = False
        log.info("session %s continues a story at shot %d", self.id, source.next_shot_index)
        self._emit(pb.ServerMessage(restored=pb.SnapshotRestored(next_shot_index=source.next_shot_index,
                                                                 story_frames=self._story_frame)))
        return 0

    def _take_snapshot(self) -> int:
        """The story's snapshot at this boundary (right after a cut that landed), for every waiter."""
        frames = self._end_cut_shot() if self._shot is not None else 0
        snapshot = self.story.snapshot()
        with self._lock:
            waiters = self._handoff.take_waiters()
        for waiter in waiters:
            waiter(snapshot)
        return frames

    def _forked(self, snapshot: StorySnapshot | None) -> None:
        """The snapshot of the session this one forks (on the worker thread), or None: it ended first."""
        if snapshot is None:
            self._emit(error_message(ProtocolError(grpc.StatusCode.ABORTED, "the session this one forks ended "
                                                   "before its shot boundary: open a new story", fatal=True)))
            return
        with self._lock:
            self._handoff.deliver(snapshot)

    def _send_snapshot(self, snapshot: StorySnapshot | None) -> None:
        """This client's snapshot: serialized and sent in parts on the sender thread, behind the chunks before it."""
        if snapshot is not None:
            self._in_order(self._pack_snapshot, snapshot)

    def _pack_snapshot(self, snapshot: StorySnapshot) -> None:
        try:
            for msg in snapshot_messages(snapshot, self.settings):
                self._to_loop(msg)
        finally:
            try:  # after the parts, in order: the client may ask again once they are queued
                self._loop.call_soon_threadsafe(self._snapshot_sent)
            except RuntimeError:
                pass

    def _snapshot_sent(self) -> None:
        with self._lock:
            self._handoff.client_asked = False

    def _deliver(self, slices: list) -> int:
        """Send each chunk whose last latent frame is decoded (the wire carries whole chunks)."""
        frames = 0
        for piece in slices:
            if piece.chunk is not None:
                frames += self._send_chunk(piece.chunk)
        return frames

    def _send_chunk(self, chunk: ChunkResult) -> int:
        shot = self._shot
        started = self._making.popleft()
        now = time.perf_counter()
        rgb = chunk.frames.numpy()  # a fresh tensor per chunk: nothing else writes to it
        self.takes.add(rgb, chunk)  # outside the session lock, like start/stop (see handle)
        with self._lock:
            self._seq += 1
            seq = self._seq
            slot = self._free_slots.pop() if self.ring is not None else None
            self._in_flight[seq] = slot
        t = chunk.timings_ms
        device_ms = t["commit"] + t["denoise"] + t["decode"]
        n, height, width, _ = rgb.shape
        msg = pb.FrameChunk(
            chunk_seq=seq, event_id=shot.cue.event_id, shot_index=shot.index, chunk_index=chunk.chunk_index,
            first_frame=chunk.first_frame, story_frame=self._story_frame, num_frames=n, width=width, height=height,
            frame_format=self.frame_format, last_in_shot=chunk.last_in_shot,
            timing=pb.ChunkTiming(commit_ms=t["commit"], denoise_ms=t["denoise"], decode_ms=t["decode"],
                                  queue_ms=max(0.0, 1e3 * (now - started) - device_ms),
                                  since_shot_start_ms=1e3 * (now - shot.started)))
        self._in_order(self._pack_and_send, rgb, msg, slot)
        elapsed = time.perf_counter() - started
        with self._lock:
            shot.chunks += 1
            shot.log.chunks = shot.chunks
        shot.frames += n
        self._story_frame += n
        c = self.counters
        c.chunks, c.frames, c.gpu_s = c.chunks + 1, c.frames + n, c.gpu_s + elapsed
        c.chunk_ms.append(1e3 * elapsed)
        if len(c.chunk_ms) > _STATS_WINDOW:  # bounded: a session may run for hours
            del c.chunk_ms[0]
        if self._on_chunk is not None:
            self._on_chunk(elapsed, n)
        if chunk.last_in_shot:
            self._finish_shot(cut=False)
        if c.chunks % self.settings.stats_every_chunks == 0:
            self._emit(pb.ServerMessage(stats=self.stats()))
        return n

    def _pack_and_send(self, rgb: np.ndarray, msg: pb.FrameChunk, slot: int | None) -> None:
        """The copies of a chunk (RGBA packing, into the ring or the message), then the message (sender thread)."""
        try:
            frames = pack_frames(rgb, self.frame_format)
            if slot is None:
                msg.pixels = frames.tobytes()
            else:
                offset, length = self.ring.write(slot, msg.chunk_seq, frames)
                msg.ring_slot.CopyFrom(pb.RingSlot(slot=slot, sequence=msg.chunk_seq, offset=offset, length=length))
        except Exception as exc:  # noqa: BLE001 - e.g. the ring's file vanished: this session ends, not the server
            self.closing = True
            log.exception("session %s: sending chunk %d failed", self.id, msg.chunk_seq)
            self._to_loop(error_message(engine_failure("sending frames failed", exc)))
            return
        self._to_loop(pb.ServerMessage(chunk=msg))

    def _finish_shot(self, cut: bool) -> None:
        with self._lock:
            shot, self._shot = self._shot, None
            shot.log.finished, shot.log.cut = True, cut
        self._emit(pb.ServerMessage(shot_finished=pb.ShotFinished(
            event_id=shot.cue.event_id, shot_index=shot.index, chunks=shot.chunks, frames=shot.frames, cut=cut)))

    # -- both ---------------------------------------------------------------------------------

    @property
    def queued_cues(self) -> int:
        with self._lock:
            return len(self._cues)

    def stats(self) -> pb.Stats:
        c = self.counters
        with self._lock:
            queued, in_flight, paused = len(self._cues), len(self._in_flight), self._paused
        recent = c.chunk_ms[:]  # a copy: the worker thread appends concurrently
        extra = self.server_stats() if self.server_stats is not None else {}
        return pb.Stats(chunks_sent=c.chunks, frames_sent=c.frames,
                        chunk_ms_mean=float(np.mean(recent)) if recent else 0.0,
                        fps=c.frames / c.gpu_s if c.gpu_s else 0.0, queued_cues=queued, chunks_in_flight=in_flight,
                        paused=paused, **extra)

    def _emit(self, msg: pb.ServerMessage) -> None:
        if threading.get_ident() == self._loop_thread:  # e.g. cue_accepted: keep order with errors put directly
            self.outbox.put_nowait(msg)
        else:  # behind the chunks the worker handed to the sender before it
            self._in_order(self._to_loop, msg)

    def _in_order(self, fn: Callable[..., None], *args: object) -> None:
        if self._post is None:
            fn(*args)
        else:
            self._last_post = self._post(fn, *args)

    def _to_loop(self, msg: pb.ServerMessage) -> None:
        try:
            self._loop.call_soon_threadsafe(self.outbox.put_nowait, msg)
        except RuntimeError:  # the session's loop has closed: nobody will read this message
            pass


def _max_frames_per_chunk(engine: ShotStreamEngine) -> int:
    cfg = engine.config
    return max(cfg.pixel_frames(1), cfg.pixel_frames(2) - cfg.pixel_frames(1))
