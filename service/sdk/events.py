"""What SDK users receive: the error that ends a session or call, and the event / info dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import grpc
import numpy as np


class ShotStreamError(Exception):
    """The session or call ended: ``code`` is a :class:`grpc.StatusCode`, ``message`` says why."""

    def __init__(self, code: grpc.StatusCode, message: str, event_id: str = ""):
        super().__init__(f"{code.name}: {message}")
        self.code, self.message, self.event_id = code, message, event_id


@dataclass(frozen=True)
class ChunkTiming:
    """Server-side timings of one chunk (ms), as in ``shotstream.v1.ChunkTiming``."""

    commit_ms: float
    denoise_ms: float
    decode_ms: float
    queue_ms: float
    since_shot_start_ms: float


@dataclass(frozen=True, eq=False)
class Chunk:
    """Decoded frames of one chunk. ``frames``: numpy uint8 ``[n, H, W, C]`` (C = 3 or 4), owned by you."""

    frames: np.ndarray
    chunk_seq: int
    event_id: str
    shot_index: int
    chunk_index: int
    first_frame: int  # index of frames[0] within the shot
    story_frame: int  # index of frames[0] within the session
    last_in_shot: bool
    frame_format: str  # "rgb8" | "rgba8"
    transport: str  # "inline" | "shared_memory"
    timing: ChunkTiming | None
    received_at: float  # time.perf_counter() when the message arrived
    copy_ms: float  # client side: getting the pixels out of the ring / message into ``frames``

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


@dataclass(frozen=True)
class ShotStarted:
    event_id: str
    tags: tuple[str, ...]
    shot_index: int
    num_chunks: int
    num_frames: int  # frames if not cut
    prompt_tokens: int
    truncated_tokens: int  # tokens dropped by the 512-token limit
    setup_ms: float  # text encode + history re-encode + context fill
    received_at: float


@dataclass(frozen=True)
class ShotFinished:
    event_id: str
    shot_index: int
    chunks: int
    frames: int
    cut: bool
    received_at: float


@dataclass(frozen=True)
class CueAccepted:
    event_id: str
    queue_position: int  # 0 = starts next


@dataclass(frozen=True)
class Stats:
    chunks_sent: int
    frames_sent: int
    chunk_ms_mean: float
    fps: float
    queued_cues: int
    chunks_in_flight: int
    paused: bool
    sessions: int
    gpu_memory_used_bytes: int


@dataclass(frozen=True)
class TakeStarted:
    """The server is recording this session's frames from the next chunk on (``Session.start_take``)."""

    name: str
    path: str  # where the MP4 will be, on the server's host
    quality: str = "live"  # as granted: "live" | "full"
    full_path: str = ""  # "full": where the Wan-decoded MP4 will be ("<name>.full.mp4", or ``path`` on a wan session)


@dataclass(frozen=True)
class TakeSaved:
    """A take's MP4 is complete on the server's host (a "full" take: both files; ``full_path`` stays "" when
    the re-decode failed, which a :class:`ServerError` reports)."""

    name: str
    path: str  # the frames as the session saw them
    frames: int
    bytes: int
    duration_s: float
    full_path: str = ""  # a "full" take: the Wan-decoded MP4 (== ``path`` on a wan session); "" for a live take
    full_bytes: int = 0


@dataclass(frozen=True)
class ServerError:
    """A non-fatal error (e.g. a rejected cue); the session goes on."""

    code: grpc.StatusCode
    message: str
    event_id: str


@dataclass(frozen=True)
class SnapshotReady:
    """The story's state at a shot boundary (``Session.request_snapshot``), assembled from its parts: keep
    ``data`` with the game save and continue it with ``open_session(snapshot=data)``."""

    data: bytes = field(repr=False)
    next_shot_index: int  # the shot the story continues with (the next cue of a restored session)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class SnapshotRestored:
    """A session opened from a snapshot (or forked from another session) has its story back: the next cue
    becomes shot ``next_shot_index``, and ``Chunk.story_frame`` continues from ``story_frames``."""

    next_shot_index: int
    story_frames: int


@dataclass(frozen=True)
class Progress:
    """RenderStory progress."""

    shots_done: int
    shots_total: int
    frames_done: int
    frames_total: int


Event = Union[Chunk, ShotStarted, ShotFinished, CueAccepted, Stats, TakeStarted, TakeSaved, ServerError, Progress,
              SnapshotReady, SnapshotRestored]


@dataclass(frozen=True)
class SessionInfo:
    """What the server granted in ``SessionOpened``."""

    session_id: str
    width: int
    height: int
    fps: int
    frames_first_chunk: int
    frames_per_chunk: int
    max_chunks_per_shot: int
    frame_format: str
    transport: str
    chunks_in_flight: int
    model: str
    random_weights: bool
    ring_path: str | None
    decoder: str = "wan"  # what decodes this session's frames: "wan" (the Wan VAE, exact) | "tae" (tiny preview)


@dataclass(frozen=True)
class ServerInfo:
    protocol_version: int
    server_version: str
    model: str
    weights: str
    random_weights: bool
    device: str
    gpu: dict[str, Any] | None
    width: int
    height: int
    fps: int
    max_sessions: int
    max_sessions_per_client: int
    open_sessions: int
    max_prompt_chars: int
    max_chunks_per_shot: int
    max_chunks_in_flight: int
    limits: dict[str, float] = field(default_factory=dict)  # every client-facing bound by its setting name
    attention: str = ""  # the attention kernel the server chose at startup, and why
    fast_path: str = ""  # its speed levers ("compile+cuda_graphs+overlap_decode", or "eager")
    fp8: bool = False
    decoders: tuple[str, ...] = ("wan",)  # what ``open_session(decoder=...)`` may ask for
    default_decoder: str = "wan"  # what a session gets with ``decoder=None``
    tae: str = ""  # the tiny decoder loaded (e.g. "taew2_1.pth"), "" when none
