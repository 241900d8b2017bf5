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

Decoders and takes: ``open_session(..., decoder="tae")`` previews with the server's tiny decoder (much
faster; ``server_info().decoders`` lists what it has, ``session.info.decoder`` what a session got), and
``session.start_take(name, quality="full")`` also records the take decoded with the Wan VAE
(``TakeSaved.full_path``). ``render_story(..., decoder=..., take=name, take_quality=...)`` does the same
headless; the take's :class:`TakeSaved` is then its last event.

Snapshots and cue logs: ``session.snapshot()`` returns the story's state at a shot boundary as bytes for a
game save (``request_snapshot()`` instead delivers it as a :class:`SnapshotReady` event);
``client.open_session(snapshot=data)`` continues it (a :class:`SnapshotRestored` event says when) and
``client.fork(session)`` starts a second session from another one's story. ``session.cue_log()`` is what the
session played, exactly (``save_cue_log`` / ``load_cue_log`` keep it as JSON); ``client.render_story(cue_log=log)``
replays it. ``snapshot_info(data)`` reads a snapshot's header (caption, seed, decoder, next shot).

Behind a proxy (``deploy/``): ``client.open_resuming_session(...)`` is a session that moves to another server
when its own goes away, continuing from its last shot boundary (a :class:`Resumed` event says so).

Errors: anything that ends the session or the call (a refused open, a fatal session error, a gRPC
status such as UNAVAILABLE or UNAUTHENTICATED) raises :class:`ShotStreamError`, with the gRPC
status code and the server's message. Non-fatal problems (e.g. a rejected cue) arrive as
:class:`ServerError` events and the session goes on. A bad argument the client can check itself (an
unknown transport, frame format, cue mode, decoder or take quality) raises ``ValueError`` at the call.
"""

from .aio import AsyncSession, AsyncShotStreamClient
from .client import Session, ShotStreamClient
from .resume import Resumed, ResumingSession
from .codec import DEFAULT_ADDRESS, MAX_MESSAGE_BYTES
from .story_state import SNAPSHOT_PART_BYTES, SnapshotInfo, load_cue_log, save_cue_log, snapshot_info
from .events import (Chunk, ChunkTiming, CueAccepted, Event, Progress, ServerError, ServerInfo, SessionInfo,
                     ShotFinished, ShotStarted, ShotStreamError, SnapshotReady, SnapshotRestored, Stats, TakeSaved,
                     TakeStarted)

__all__ = [
    "ShotStreamClient", "AsyncShotStreamClient", "Session", "AsyncSession", "ShotStreamError",
    "Chunk", "ChunkTiming", "ShotStarted", "ShotFinished", "Stats", "ServerError", "CueAccepted", "Progress",
    "TakeStarted", "TakeSaved", "SnapshotReady", "SnapshotRestored", "SnapshotInfo", "snapshot_info",
    "save_cue_log", "load_cue_log", "SNAPSHOT_PART_BYTES", "ResumingSession", "Resumed",
    "SessionInfo", "ServerInfo", "Event", "DEFAULT_ADDRESS", "MAX_MESSAGE_BYTES",
]
