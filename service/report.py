"""``timings.json``: the one report layout of ``shotstream story`` (in-process or ``--server``) and ``shotstream demo``.

Every key is always present, whichever path wrote the report; a value that path cannot measure is
``null`` (noted per field below). Times are milliseconds unless the name says ``_s``; "client clock"
is ``time.perf_counter`` in the process that wrote the report, "server clock" the server's (the
engine's, in-process). ``schema`` names this layout; a change to it gets a new number.
"""

from __future__ import annotations

from typing import TypedDict

SCHEMA = "shotstream.timings/1"
IN_PROCESS = "in-process"  # the transport of a story rendered without a server


class ChunkTimings(TypedDict):
    """One chunk (``report["chunks"]``, in arrival order)."""

    shot: int  # shot index
    chunk: int  # chunk index within the shot
    frames: int
    first_frame: int  # index of the chunk's first frame within the shot
    since_shot_start_ms: float  # server clock: the shot's setup done -> this chunk decoded
    commit_ms: float  # the previous chunk's clean re-pass into the cache (0 for a shot's first chunk)
    denoise_ms: float
    decode_ms: float
    queue_ms: float | None  # server: time the chunk waited besides its own compute (other sessions); null in-process
    transport_ms: float | None  # server finished it -> frames in the client's hands (estimated); null in-process
    copy_ms: float | None  # client: pixels out of the ring or message into its own array; null in-process
    received_ms: float  # client clock: the story's start -> this chunk's frames in hand


class ShotTimings(TypedDict):
    """One finished shot (``report["shots"]``, in story order)."""

    index: int
    event_id: str  # "shot{index}": the cue's event id
    prompt: str
    chunks: int  # chunks produced (fewer than planned when cut)
    frames: int  # frames produced
    prompt_tokens: int | None  # null when the text embedding was supplied
    truncated_tokens: int  # dropped by the model's 512-token limit
    setup_ms: float  # server clock: text encode + history re-encode + context fill
    first_frame_ms: float | None  # client clock: the shot was due (previous one finished) -> first frames in hand
    server_first_frame_ms: float | None  # server clock: setup_ms + first chunk's since_shot_start_ms; null in-process
    cut: bool  # a later cue cut it short
    context_frames: list[list[int]] | None  # [source shot, frame] per context slot; null through a server


class TimingsReport(TypedDict):
    """The whole report."""

    schema: str  # SCHEMA
    model: str
    weights: str
    random_weights: bool
    device: str
    transport: str  # "in-process", "inline" or "shared_memory"
    server: str | None  # the server's address; null in-process
    session_id: str | None  # null in-process
    seed: int
    width: int
    height: int
    video_fps: int
    frames: int
    wall_s: float  # client clock: the first shot cued (started, in-process) -> the last frames in hand
    delivered_fps: float | None  # frames / wall_s
    generated_fps: float | None  # frames / the chunks' summed compute (commit + denoise + decode)
    transport_ms_mean: float | None  # over the chunks; null in-process
    transport_ms_max: float | None
    video: str | None  # the MP4 written
    decoder: str  # what decoded the frames played: "wan" (the Wan VAE) or "tae" (the tiny preview decoder)
    quality: str  # "live" (the MP4 holds the frames played) or "full" (re-decoded with the Wan VAE afterwards)
    full_decode_s: float | None  # quality "full" with the tiny decoder: the Wan re-decode's wall time
    story_file: str | None  # the story played (the demo sets it)
    shots: list[ShotTimings]
    chunks: list[ChunkTimings]


def timings_report(*, model: str, weights: str, random_weights: bool, device: str, transport: str,
                   server: str | None, session_id: str | None, seed: int, width: int, height: int, video_fps: int,
                   wall_s: float, shots: list[ShotTimings], chunks: list[ChunkTimings],
                   decoder: str = "wan") -> TimingsReport:
    """The report, with the totals derived from its rows."""
    frames = sum(c["frames"] for c in chunks)
    compute_ms = sum(c["commit_ms"] + c["denoise_ms"] + c["decode_ms"] for c in chunks)
    transport_ms = [c["transport_ms"] for c in chunks if c["transport_ms"] is not None]
    return TimingsReport(
        schema=SCHEMA, model=model, weights=weights, random_weights=random_weights, device=device,
        transport=transport, server=server, session_id=session_id, seed=seed, width=width, height=height,
        video_fps=video_fps, frames=frames, wall_s=wall_s, delivered_fps=frames / wall_s if wall_s > 0 else None,
        generated_fps=1e3 * frames / compute_ms if compute_ms > 0 else None,
        transport_ms_mean=sum(transport_ms) / len(transport_ms) if transport_ms else None,
        transport_ms_max=max(transport_ms) if transport_ms else None, video=None, decoder=decoder, quality="live",
        full_decode_s=None, story_file=None, shots=shots, chunks=chunks)
