"""Full-quality takes: the shots a take recorded, re-decoded with the Wan VAE from their kept latents.

A session that previews with the tiny decoder (``decoder=tae``) can still record a take at full
quality (``StartTake.quality = FULL``). While such a take records, :class:`KeptLatents` keeps each
recorded shot's chunk latents (~4 MB per shot at 480x832), from the shot's first chunk, because the
Wan decoder is causal: a take that starts mid-shot still needs the shot's earlier latents. At most
``max_take_full_shots`` shots; then the take stops. When the take stops, a :class:`FullRender` is
handed to the GPU worker, which runs it one latent frame at a time only when no session has anything
to run (``GpuWorker.render``), so it never delays live chunks; at most ``max_full_renders`` such takes
record, wait or render server-wide (each holds a worker slot from StartTake until its file is written). The frames the take recorded go to ``<name>.full.mp4`` through that file's own
encoder thread (a :class:`~service.takes.TakeRecorder`).

A session that already decodes with the Wan VAE needs none of this: its live take is full quality.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from engine_core import ChunkResult, ShotStreamEngine
from engine_core.decode_lane import to_uint8


class Renderer(Protocol):
    """Where full-quality renders run (the GPU worker), with the server-wide bound on them."""

    def reserve_render(self, limit: int) -> bool: ...

    def release_render(self) -> None: ...

    def render(self, job: FullRender) -> None: ...


@dataclass
class ShotLatents:
    """One recorded shot: its chunk latents from chunk 0, and the frames of it the take recorded."""

    shot_index: int
    latents: list[torch.Tensor]  # chunk x0s, [F, z, h, w] each, from the shot's first chunk on
    first_frame: int  # the first recorded frame, within the shot
    frames: int = 0  # recorded frames


@dataclass
class KeptLatents:
    """The current shot's latents (always, while the session previews with the tiny decoder: a take
    may start mid-shot) and, while a full-quality take records, its recorded shots."""

    max_shots: int
    current: tuple[int, list[torch.Tensor]] | None = None  # shot index, its chunk latents so far
    recorded: list[ShotLatents] = field(default_factory=list)

    def add(self, chunk: ChunkResult) -> None:
        """A chunk the session produced (before it is recorded)."""
        if self.current is None or self.current[0] != chunk.shot_index:
            self.current = (chunk.shot_index, [])
        self.current[1].append(chunk.latents)

    def full(self, chunk: ChunkResult) -> bool:
        """Recording ``chunk`` would exceed ``max_shots`` shots."""
        new_shot = not self.recorded or self.recorded[-1].shot_index != chunk.shot_index
        return new_shot and len(self.recorded) >= self.max_shots

    def record(self, chunk: ChunkResult) -> None:
        """``chunk`` (already passed to :meth:`add`) goes into the take."""
        if not self.recorded or self.recorded[-1].shot_index != chunk.shot_index:
            self.recorded.append(ShotLatents(chunk.shot_index, list(self.current[1][:-1]), chunk.first_frame))
        shot = self.recorded[-1]
        shot.latents.append(chunk.latents)
        shot.frames += len(chunk.frames)

    def take_recorded(self) -> list[ShotLatents]:
        """The recorded shots, handed over once (the take stopped); recording starts afresh."""
        shots, self.recorded = self.recorded, []
        return shots


class FullRender:
    """Decodes a take's recorded shots with the Wan VAE, one latent frame per :meth:`step` (GPU worker
    thread), and hands the recorded frames (uint8 ``[n, H, W, 3]``) to ``sink`` in order."""

    def __init__(self, engine: ShotStreamEngine, shots: list[ShotLatents], sink: Callable[[object], None],
                 finish: Callable[[BaseException | None], None], name: str = "") -> None:
        self.name = name
        self._engine, self._sink, self._finish = engine, sink, finish
        self._shots = deque(s for s in shots if s.frames)
        self._decoder = None
        self._latents: deque[torch.Tensor] = deque()
        self._frame = 0  # frames of the current shot decoded so far
        self.finished = False

    @torch.no_grad()
    def step(self) -> bool:
        """Decode the next latent frame; True once every recorded frame has gone to the sink."""
        if self._decoder is None:
            if not self._shots:
                return self._done(None)
            shot = self._shots[0]
            self._decoder = self._engine.vae.stream_decoder()
            self._latents = deque(torch.cat(shot.latents).unbind(0))
            self._frame = 0
        shot = self._shots[0]
        video = self._decoder.decode_latent(self._latents.popleft())
        start, stop = shot.first_frame, shot.first_frame + shot.frames
        lo, hi = max(start, self._frame), min(stop, self._frame + len(video))
        if lo < hi:
            self._sink(to_uint8(video[lo - self._frame:hi - self._frame]).cpu().numpy())
        self._frame += len(video)
        if self._frame >= stop or not self._latents:  # a shot's later latents are not in the take
            self._shots.popleft()
            self._decoder = None
            if not self._shots:
                return self._done(None)
        return False

    def fail(self, exc: BaseException) -> None:
        """The render cannot go on (a GPU error, the server stopping): the full file is not written."""
        if not self.finished:
            self._shots.clear()
            self._done(exc)

    def _done(self, error: BaseException | None) -> bool:
        self.finished = True
        self._finish(error)
        return True
