"""Headless rendering of a whole story: shots in, frames and a timing report out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from engine_core import ChunkResult, ShotStreamEngine, Story, StorySnapshot
from engine_core.decode_lane import to_uint8

from .report import IN_PROCESS, ChunkTimings, ShotTimings, TimingsReport, timings_report
from .story_file import StorySpec


def render_story(engine: ShotStreamEngine, spec: StorySpec, seed: int,
                 on_chunk: Callable[[ChunkResult], None], decoder: str = "wan", *,
                 snapshot: StorySnapshot | None = None,
                 on_end: Callable[[Story], None] | None = None) -> TimingsReport:
    """Generate every shot of ``spec``, handing each decoded chunk to ``on_chunk`` as soon as it exists.
    Returns the timing report (:mod:`service.report`; transport ``in-process``).

    ``snapshot``: continue that story (its caption, seed and decoder; ``spec``'s shots come next).
    ``on_end(story)`` runs after the last shot, before the story is closed (e.g. to snapshot it)."""
    if snapshot is not None:
        story = engine.restore_story(snapshot)
        seed = snapshot.seed
    else:
        story = engine.open_story(spec.global_caption, seed, decoder)
    shots: list[ShotTimings] = []
    chunks: list[ChunkTimings] = []
    t0 = in_hand = time.perf_counter()
    try:
        for i, shot in enumerate(spec.shots):
            due = time.perf_counter()
            info = story.start_shot(shot.prompt, shot.chunks)
            started = time.perf_counter()
            first_frame_ms = None
            made = frames = 0
            while story.shot_in_progress:
                chunk = story.step()
                in_hand = time.perf_counter()
                t = chunk.timings_ms
                chunks.append(ChunkTimings(
                    shot=info.shot_index, chunk=chunk.chunk_index, frames=len(chunk.frames),
                    first_frame=chunk.first_frame, since_shot_start_ms=1e3 * (in_hand - started),
                    commit_ms=t["commit"], denoise_ms=t["denoise"], decode_ms=t["decode"], queue_ms=None,
                    transport_ms=None, copy_ms=None, received_ms=1e3 * (in_hand - t0)))
                if first_frame_ms is None:
                    first_frame_ms = 1e3 * (in_hand - due)
                made, frames = made + 1, frames + len(chunk.frames)
                on_chunk(chunk)
            shots.append(ShotTimings(
                index=info.shot_index, event_id=f"shot{i}", prompt=shot.prompt, chunks=made, frames=frames,
                prompt_tokens=info.prompt_tokens, truncated_tokens=info.truncated_tokens,
                setup_ms=sum(info.timings_ms.values()), first_frame_ms=first_frame_ms, server_first_frame_ms=None,
                cut=False, context_frames=[list(f) for f in info.context_frames]))
        if on_end is not None:
            on_end(story)
    finally:
        story.close()
    cfg = engine.config
    return timings_report(model=cfg.name, weights=engine.weights_label, random_weights=engine.random_weights,
                          device=str(engine.device), transport=IN_PROCESS, server=None, session_id=None, seed=seed,
                          width=cfg.stream.width, height=cfg.stream.height, video_fps=cfg.stream.fps,
                          wall_s=in_hand - t0, shots=shots, chunks=chunks, decoder=story.decoder)


def full_quality_frames(engine: ShotStreamEngine, chunk_latents: list[torch.Tensor]) -> np.ndarray:
    """One shot's frames (uint8 ``[n, H, W, 3]``) decoded with the Wan VAE from its chunks' latents, in order:
    what a ``decoder="wan"`` story shows for the same latents."""
    with torch.no_grad():
        return to_uint8(engine.vae.decode(torch.cat(chunk_latents))).cpu().numpy()


def story_frames(spec: StorySpec, frames_first_chunk: int, frames_per_chunk: int, chunks_per_shot: int) -> int:
    """Frames the whole story produces when no shot is cut."""
    return sum(frames_first_chunk + ((s.chunks or chunks_per_shot) - 1) * frames_per_chunk for s in spec.shots)


def render_story_remote(client: Any, spec: StorySpec, seed: int, on_chunk: Callable[[Any], None], *,
                        transport: str = "shared_memory", on_open: Callable[[Any], None] | None = None,
                        client_name: str = "shotstream-cli/story", decoder: str | None = None,
                        snapshot: bytes | None = None, on_end: Callable[[Any], None] | None = None) -> TimingsReport:
    """Play ``spec`` through a server: one ``Direct`` session, every shot cued up front in WAIT mode.

    ``snapshot``: the session continues that story (its caption, which must be ``spec``'s, its seed and
    decoder; ``seed`` is ignored). ``on_end(session)`` runs after the last shot, before the session closes
    (e.g. to take its snapshot).

    ``client``: a :class:`service.sdk.ShotStreamClient`. ``on_open(SessionInfo)`` runs once the session
    is open (before any frame); ``on_chunk(sdk.Chunk)`` gets each chunk as it arrives (RGB8 frames).
    Returns the timing report (:mod:`service.report`); raises :class:`service.sdk.ShotStreamError` when
    the server refuses a cue or ends the session.

    Client-side timings (``time.perf_counter`` on this machine):

    * ``first_frame_ms``: from the moment the shot was due (the first cue sent, for shot 0; the
      previous shot's ``ShotFinished`` arriving, for later shots) to its first chunk's frames in hand.
    * ``transport_ms`` per chunk: from the server finishing the chunk to its frames in hand here:
      ring write or serialization, the trip through gRPC, and the copy out. Estimated as arrival
      minus the shot's ``ShotStarted`` arrival minus the server's ``since_shot_start_ms``, so it is
      low by the (small) delivery time of the ``ShotStarted`` message itself, and includes any time
      the chunk waited because this client was busy (e.g. encoding the MP4).
    """
    import grpc

    from .sdk import Chunk, ServerError, ShotFinished, ShotStarted, ShotStreamError
    from .sdk.events import ChunkTiming

    server = client.server_info()
    shots_total = len(spec.shots)
    event_ids = [f"shot{i}" for i in range(shots_total)]
    shots: list[ShotTimings] = []
    chunks: list[ChunkTimings] = []
    current: ShotTimings | None = None
    started_at = 0.0
    in_hand = None
    decoder_arg = {"decoder": decoder} if decoder else {}  # unset: the server's default (or the snapshot's)
    if snapshot is not None:
        from .sdk import snapshot_info

        seed = snapshot_info(snapshot).seed
        story_args: dict = {"global_caption": spec.global_caption, "snapshot": snapshot}
    else:
        story_args = {"global_caption": spec.global_caption, "seed": seed}
    with client.open_session(transport=transport, frame_format="rgb8", client_name=client_name, **story_args,
                             **decoder_arg) as session:
        info = session.info
        if on_open is not None:
            on_open(info)
        t0 = time.perf_counter()
        for event_id, shot in zip(event_ids, spec.shots, strict=True):
            session.cue(shot.prompt, num_chunks=shot.chunks or 0, mode="wait", event_id=event_id)
        due = t0
        for ev in session:
            if isinstance(ev, ShotStarted):
                started_at = ev.received_at
                current = ShotTimings(
                    index=ev.shot_index, event_id=ev.event_id, prompt=spec.shots[event_ids.index(ev.event_id)].prompt,
                    chunks=ev.num_chunks, frames=ev.num_frames, prompt_tokens=ev.prompt_tokens,
                    truncated_tokens=ev.truncated_tokens, setup_ms=ev.setup_ms, first_frame_ms=None,
                    server_first_frame_ms=None, cut=False, context_frames=None)
            elif isinstance(ev, Chunk):
                in_hand = ev.received_at + ev.copy_ms / 1e3
                on_chunk(ev)
                t = ev.timing or ChunkTiming(0.0, 0.0, 0.0, 0.0, 0.0)  # a server that sends none: zeros
                chunks.append(ChunkTimings(
                    shot=ev.shot_index, chunk=ev.chunk_index, frames=ev.num_frames, first_frame=ev.first_frame,
                    since_shot_start_ms=t.since_shot_start_ms, commit_ms=t.commit_ms, denoise_ms=t.denoise_ms,
                    decode_ms=t.decode_ms, queue_ms=t.queue_ms,
                    transport_ms=1e3 * (in_hand - started_at) - t.since_shot_start_ms, copy_ms=ev.copy_ms,
                    received_ms=1e3 * (in_hand - t0)))
                if current is not None and current["first_frame_ms"] is None:
                    current["first_frame_ms"] = 1e3 * (in_hand - due)
                    current["server_first_frame_ms"] = current["setup_ms"] + t.since_shot_start_ms
            elif isinstance(ev, ShotFinished):
                due = ev.received_at
                if current is not None:
                    current.update(chunks=ev.chunks, frames=ev.frames, cut=ev.cut)
                    shots.append(current)
                    current = None
                if len(shots) == shots_total:
                    break
            elif isinstance(ev, ServerError) and ev.event_id in event_ids:
                raise ShotStreamError(ev.code, f"{ev.event_id}: {ev.message}", ev.event_id)
        else:
            raise ShotStreamError(grpc.StatusCode.UNAVAILABLE, f"the server closed the session after {len(shots)} of "
                                                              f"{shots_total} shots ({session.close_reason})")
        if on_end is not None:
            on_end(session)
    return timings_report(model=info.model, weights=server.weights, random_weights=info.random_weights,
                          device=server.device, transport=info.transport, server=client.address,
                          session_id=info.session_id, seed=seed, width=info.width, height=info.height,
                          video_fps=info.fps, wall_s=(in_hand or time.perf_counter()) - t0, shots=shots,
                          chunks=chunks, decoder=info.decoder)
