"""Headless rendering of a whole story: shots in, frames and a timing report out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine_core import ChunkResult, ShotStreamEngine

from .story_file import StorySpec


def render_story(engine: ShotStreamEngine, spec: StorySpec, seed: int,
                 on_chunk: Callable[[ChunkResult], None]) -> dict[str, Any]:
    """Generate every shot of ``spec``, handing each decoded chunk to ``on_chunk`` as soon as it exists."""
    story = engine.open_story(spec.global_caption, seed)
    shots: list[dict[str, Any]] = []
    frames = 0
    t_story = time.perf_counter()
    try:
        for shot in spec.shots:
            t_shot = time.perf_counter()
            info = story.start_shot(shot.prompt, shot.chunks)
            chunks: list[dict[str, Any]] = []
            first_frame_ms = None
            while story.shot_in_progress:
                chunk = story.step()
                on_chunk(chunk)
                elapsed_ms = 1e3 * (time.perf_counter() - t_shot)
                first_frame_ms = elapsed_ms if first_frame_ms is None else first_frame_ms
                frames += len(chunk.frames)
                chunks.append({"index": chunk.chunk_index, "frames": len(chunk.frames), "since_shot_start_ms": elapsed_ms,
                               "timings_ms": chunk.timings_ms})
            shots.append({"index": info.shot_index, "chunks": info.num_chunks, "frames": info.num_frames,
                          "prompt_tokens": info.prompt_tokens, "truncated_tokens": info.truncated_tokens,
                          "context_frames": [list(f) for f in info.context_frames],
                          "context_flags": list(info.context_flags), "shot_flag": info.shot_flag,
                          "first_frame_ms": first_frame_ms, "setup_timings_ms": info.timings_ms, "chunk_timings": chunks})
    finally:
        story.close()
    wall = time.perf_counter() - t_story
    cfg = engine.config
    return {
        "model": cfg.name, "weights": engine.weights_label, "random_weights": engine.random_weights,
        "device": str(engine.device), "dtype": str(engine.dtype).removeprefix("torch."), "seed": seed,
        "width": cfg.stream.width, "height": cfg.stream.height, "video_fps": cfg.stream.fps,
        "frames": frames, "wall_s": wall, "generated_fps": frames / wall if wall > 0 else None, "shots": shots,
    }


def story_frames(spec: StorySpec, frames_first_chunk: int, frames_per_chunk: int, chunks_per_shot: int) -> int:
    """Frames the whole story produces when no shot is cut."""
    return sum(frames_first_chunk + ((s.chunks or chunks_per_shot) - 1) * frames_per_chunk for s in spec.shots)


def render_story_remote(client: Any, spec: StorySpec, seed: int, on_chunk: Callable[[Any], None], *,
                        transport: str = "shared_memory", on_open: Callable[[Any], None] | None = None,
                        client_name: str = "shotstream-cli/story") -> dict[str, Any]:
    """Play ``spec`` through a server: one ``Direct`` session, every shot cued up front in WAIT mode.

    ``client``: a :class:`service.sdk.ShotStreamClient`. ``on_open(SessionInfo)`` runs once the session
    is open (before any frame); ``on_chunk(sdk.Chunk)`` gets each chunk as it arrives (RGB8 frames).
    Returns the timing report; raises :class:`service.sdk.ShotStreamError` when the server refuses a
    cue or ends the session.

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

    server = client.server_info()
    shots_total = len(spec.shots)
    event_ids = [f"shot{i}" for i in range(shots_total)]
    shots: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    started_at = 0.0
    frames = 0
    last_in_hand = None
    with client.open_session(spec.global_caption, seed=seed, transport=transport, frame_format="rgb8",
                             client_name=client_name) as session:
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
                current = {"index": ev.shot_index, "event_id": ev.event_id, "chunks": ev.num_chunks,
                           "frames": ev.num_frames, "prompt_tokens": ev.prompt_tokens,
                           "truncated_tokens": ev.truncated_tokens, "setup_ms": ev.setup_ms, "first_frame_ms": None,
                           "server_first_frame_ms": None, "chunk_timings": []}
            elif isinstance(ev, Chunk):
                in_hand = ev.received_at + ev.copy_ms / 1e3
                on_chunk(ev)
                frames += ev.num_frames
                last_in_hand = in_hand
                t = ev.timing
                since = t.since_shot_start_ms if t else 0.0
                if current is not None:
                    if current["first_frame_ms"] is None:
                        current["first_frame_ms"] = 1e3 * (in_hand - due)
                        current["server_first_frame_ms"] = current["setup_ms"] + since
                    current["chunk_timings"].append({
                        "index": ev.chunk_index, "frames": ev.num_frames, "first_frame": ev.first_frame,
                        "since_shot_start_ms": since,
                        "timings_ms": {"commit": t.commit_ms, "denoise": t.denoise_ms, "decode": t.decode_ms,
                                       "queue": t.queue_ms} if t else {},
                        "transport_ms": 1e3 * (in_hand - started_at) - since, "copy_ms": ev.copy_ms,
                        "received_ms": 1e3 * (in_hand - t0)})
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
    wall = (last_in_hand or time.perf_counter()) - t0
    chunk_rows = [c for s in shots for c in s["chunk_timings"]]
    transport_ms = [c["transport_ms"] for c in chunk_rows]
    compute_ms = sum(sum(v for k, v in c["timings_ms"].items() if k != "queue") for c in chunk_rows)
    return {
        "server": client.address, "transport": info.transport, "session_id": info.session_id,
        "model": info.model, "weights": server.weights, "random_weights": info.random_weights,
        "device": server.device, "seed": seed, "width": info.width, "height": info.height, "video_fps": info.fps,
        "frames": frames, "wall_s": wall, "delivered_fps": frames / wall if wall > 0 else None,
        "server_compute_fps": 1e3 * frames / compute_ms if compute_ms > 0 else None,
        "transport_ms_mean": sum(transport_ms) / len(transport_ms) if transport_ms else None,
        "transport_ms_max": max(transport_ms) if transport_ms else None,
        "shots": shots,
    }
