"""One interactive story: shots started on demand, generated forward by forward, decoded as they go.

Per shot (reference §11): pick history frames from earlier shots, VAE-encode each alone, fill
the global context cache with one t=0 pass; then per chunk run the 4 warped denoising steps,
hand the chunk to the decoder, and write the chunk's clean K/V with a t=0 pass.

Two ways to drive it: :meth:`Story.step` runs a whole chunk and returns its frames; a scheduler
calls :meth:`Story.advance`, which runs one unit (one DiT forward) and returns the frames that
became ready, one latent frame's worth (1, then 4 frames) at a time. Use one or the other.

Where we do less work than the reference without changing the maths:
- the clean pass of chunk ``b`` runs lazily at the start of chunk ``b+1``, so frames leave
  before it, and it is skipped for a shot's last chunk and for a cut (nothing reads it);
- what the next shot needs that does not depend on its prompt (history encode, context fill,
  RoPE tables) runs as soon as the previous shot ends (:meth:`prepare_next_shot`), so a cue pays
  only its text and the first chunk; shot 0's context fill reads its own caption, so it waits;
- history frames are encoded once and their latents reused by later shots (each frame is
  encoded alone, so a cached latent is the same tensor the reference recomputes);
- shot 0's history is all-zero latents, so its 6 black-frame encodes are skipped.

With ``decoder="tae"`` the tiny preview decoder makes the frames, and later shots re-encode their
history frames from those preview frames (the Wan encoder, as always): the only place where the
decoder choice reaches the latents. ``bench/decoder_quality.py`` measures that drift.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .decode_lane import DecodeLane, DecodedFrames, FrameDecoder, to_uint8
from .history import ContextPlan, frames_to_keep, plan_context
from .kv_cache import SelfAttentionCache, TextCache
from .snapshot import SnapshotError, StorySnapshot
from .text import format_prompt
from .timing import Clock
from .transfer import upload
from .transformer import FrameRun, TimeCond

if TYPE_CHECKING:
    from .engine import ShotStreamEngine

__all__ = ["ChunkResult", "FrameSlice", "ShotInfo", "ShotNoise", "Story", "shot_seed", "to_uint8"]


@dataclass(frozen=True)
class ShotNoise:
    """Caller-supplied noise, to replay a run exactly (e.g. against the reference).

    ``initial``: ``[3 * num_chunks, C, h, w]`` starting noise of each chunk's frames.
    ``renoise``: ``[num_chunks, steps - 1, 3, C, h, w]``: the fresh noise after step ``i`` of chunk ``b``.
    """

    initial: torch.Tensor
    renoise: torch.Tensor


@dataclass(frozen=True)
class ShotInfo:
    shot_index: int
    prompt: str
    num_chunks: int
    num_frames: int  # video frames the shot will produce if it is not cut
    context_frames: tuple[tuple[int, int], ...]  # (source shot, frame in shot) per context slot
    context_flags: tuple[int, ...]
    shot_flag: int
    prompt_tokens: int | None  # None when the caller supplied the text embedding
    truncated_tokens: int
    timings_ms: dict[str, float]  # host time of text, history, context (0 when prepared ahead)
    prepared_ahead: bool  # history and context fill ran before the cue (prepare_next_shot)


@dataclass(frozen=True)
class FrameSlice:
    """The frames of one latent frame (1 for a shot's first, then 4), ready on the host."""

    shot_index: int
    chunk_index: int
    first_frame: int  # index of frames[0] within the shot
    frames: torch.Tensor  # uint8 [n, H, W, 3] on the CPU; the caller's to keep
    last_in_chunk: bool
    last_in_shot: bool
    chunk: ChunkResult | None  # the whole chunk, on its last slice


@dataclass(frozen=True)
class ChunkResult:
    shot_index: int
    chunk_index: int
    first_frame: int  # index of frames[0] within the shot
    frames: torch.Tensor  # uint8 [n, H, W, 3] on the CPU
    latents: torch.Tensor  # x0 of the chunk, [3, C, h, w]
    last_in_shot: bool
    timings_ms: dict[str, float]  # commit (previous chunk's clean pass), denoise, decode: device time


@dataclass
class _Shot:
    index: int
    num_chunks: int
    shot_flag: int
    noise: ShotNoise | None
    decoder: FrameDecoder
    generator: torch.Generator
    started: int = 0  # chunks whose denoising has finished (handed to the decoder)
    done: int = 0  # chunks whose frames are all on the host
    frames_out: int = 0
    pending: tuple[torch.Tensor, FrameRun] | None = None  # chunk awaiting its clean t=0 pass
    video: list[torch.Tensor] = field(default_factory=list)  # decoded [-1, 1] frames, for history
    slices: list[DecodedFrames] = field(default_factory=list)  # of the chunk being collected


@dataclass(frozen=True)
class _ChunkTag:
    shot: _Shot
    chunk: int
    latents: torch.Tensor
    marks: tuple  # clock marks: start, after commit, after denoising


def shot_seed(seed: int, shot: int) -> int:
    """Independent, reproducible noise stream per (story seed, shot index)."""
    digest = hashlib.blake2b(f"{seed}:{shot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class Story:
    """Create with :meth:`ShotStreamEngine.open_story`. Not thread-safe: drive it from one thread."""

    def __init__(self, engine: ShotStreamEngine, global_caption: str, seed: int, decoder: str = "wan"):
        if not isinstance(global_caption, str):
            raise TypeError("global_caption must be a str")
        engine.stream_decoder(decoder)  # raises ValueError naming the available decoders
        self.decoder = decoder
        self.engine = engine
        self.global_caption = global_caption
        self.seed = int(seed)
        cfg, dit = engine.config, engine.config.dit
        device, dtype = engine.device, engine.dtype
        self._tokens_per_frame = cfg.tokens_per_frame
        self.cache = SelfAttentionCache(dit.num_layers, self._tokens_per_frame * (cfg.stream.context_frames
                                                                                  + cfg.max_latent_frames),
                                        dit.num_heads, dit.head_dim, dtype, device)
        # Fixed-address buffers (CUDA graphs bake addresses in): the current shot's caption K/V and
        # the RoPE tables of each chunk position, refilled in place at every shot.
        text_shape = (dit.num_layers, 1, dit.text_len, dit.num_heads, dit.head_dim)
        self._chunk_text = TextCache(k=list(torch.zeros(text_shape, dtype=dtype, device=device).unbind(0)),
                                     v=list(torch.zeros(text_shape, dtype=dtype, device=device).unbind(0)))
        rope_shape = (cfg.stream.chunks_per_shot, self._tokens_per_frame * cfg.stream.frames_per_chunk, 1,
                      dit.head_dim // 2)
        self._rope = (torch.zeros(rope_shape, device=device), torch.zeros(rope_shape, device=device))
        self._graphs = engine.chunk_graphs(self.cache)
        self._lane = DecodeLane(device, overlap=engine.fast.overlap_decode)
        self._clock = Clock(device)
        self.captions: list[torch.Tensor | None] = []  # text embedding of each shot's prompt (None once unreachable)
        self.shot_lengths: list[int] = []  # decoded frames of each finished shot
        self._kept_frames: dict[tuple[int, int], torch.Tensor] = {}
        self._history_latents: dict[tuple[int, int], torch.Tensor] = {}
        self._shot: _Shot | None = None
        self._prepared: tuple[int, ContextPlan, bool] | None = None  # shot index, plan, context filled
        self._work: Iterator[None] | None = None  # the chunk being denoised, one forward per next()
        self._ready: deque[FrameSlice] = deque()
        self.closed = False

    # -- public API -------------------------------------------------------------------------

    @property
    def shot_in_progress(self) -> bool:
        """A shot is started and not all of its frames are out yet."""
        return self._shot is not None and self._shot.done < self._shot.num_chunks

    @property
    def has_work(self) -> bool:
        """:meth:`advance` has a forward to run."""
        shot = self._shot
        return shot is not None and (self._work is not None or shot.started < shot.num_chunks)

    @property
    def denoising(self) -> bool:
        """A chunk is part-way through its forwards (the next :meth:`advance` continues it)."""
        return self._work is not None

    @property
    def frames_pending(self) -> bool:
        """Frames are being decoded, or decoded and not yet returned by :meth:`advance`."""
        return bool(self._ready) or self._lane.pending() > 0

    @property
    def next_shot_index(self) -> int:
        return len(self.shot_lengths) + (1 if self._shot is not None and self._shot.started else 0)

    def prepare_next_shot(self) -> bool:
        """Run the next shot's prompt-independent setup now (history encode, context fill, RoPE tables).

        Call it when a shot has finished, or right after a cut; :meth:`start_shot` then pays only
        the prompt's text and the first chunk. Returns False (and does nothing) while the current
        shot still has chunks to make. Waits for the finished shot's last frames to decode.
        """
        self._check_open()
        if self._shot is not None and self._shot.started < self._shot.num_chunks:
            return False
        self._end_shot()
        self._prepare(len(self.shot_lengths), caption=None)
        return True

    def start_shot(self, prompt: str, num_chunks: int | None = None, *, text_embedding: torch.Tensor | None = None,
                   noise: ShotNoise | None = None) -> ShotInfo:
        """Begin the next shot; cuts the current one after its last denoised chunk.

        A chunk still being denoised is dropped; chunks already denoised still come out (from
        :meth:`advance`, or before the new shot's chunks from :meth:`step`). A shot that has
        produced no chunk yet is replaced, not kept. ``text_embedding`` (``[text_len, text_dim]``)
        replaces encoding ``prompt``; ``noise`` replaces the seeded noise.
        """
        self._check_open()
        cfg = self.engine.config
        num_chunks = cfg.stream.chunks_per_shot if num_chunks is None else num_chunks
        if isinstance(num_chunks, bool) or not isinstance(num_chunks, int) or not 1 <= num_chunks <= cfg.stream.chunks_per_shot:
            raise ValueError(f"num_chunks must be an integer in 1..{cfg.stream.chunks_per_shot}, got {num_chunks!r}")
        if noise is not None:
            self._check_noise(noise, num_chunks)
        t0 = time.perf_counter()
        embedding, prompt_tokens, truncated = self._caption_embedding(prompt, text_embedding)
        t1 = time.perf_counter()
        self._work = None
        self._end_shot()
        index = len(self.shot_lengths)
        ahead = self._is_prepared(index)
        self.captions.append(embedding)
        try:
            text = self.engine.dit.encode_text(embedding[None])
            for layer, (k, v) in enumerate(zip(text.k, text.v)):
                self._chunk_text.k[layer].copy_(k)
                self._chunk_text.v[layer].copy_(v)
            timings = self._prepare(index, caption=text)
            plan = self._prepared[1]
            self._shot = _Shot(index=index, num_chunks=num_chunks, shot_flag=plan.shot_flag, noise=noise,
                               decoder=self.engine.stream_decoder(self.decoder),
                               generator=torch.Generator().manual_seed(shot_seed(self.seed, index)))
        except BaseException:  # e.g. out of GPU memory: keep captions aligned with shot indices
            self.captions.pop()
            raise
        self._drop_unreachable_history(index)
        return ShotInfo(shot_index=index, prompt=prompt, num_chunks=num_chunks, num_frames=cfg.pixel_frames(num_chunks),
                        context_frames=plan.frames, context_flags=plan.flags, shot_flag=plan.shot_flag,
                        prompt_tokens=prompt_tokens, truncated_tokens=truncated,
                        timings_ms={"text": 1e3 * (t1 - t0), **timings}, prepared_ahead=ahead)

    def advance(self) -> list[FrameSlice]:
        """Run one unit of work (one DiT forward) if there is one; return the frames that are ready.

        Never waits for the GPU: with nothing to run and frames still decoding it returns what is
        done (possibly nothing); :meth:`wait_frames` blocks instead.
        """
        self._check_open()
        if self._work is None and self.has_work:
            self._work = self._chunk_work(self._shot)
        if self._work is not None:
            try:
                next(self._work)
            except StopIteration:
                self._work = None
        return self.poll_frames()

    def poll_frames(self) -> list[FrameSlice]:
        """The frames that are ready now (including chunks denoised before a cut), without running anything."""
        self._check_open()
        self._collect(self._lane.poll())
        return self._take_ready()

    def wait_frames(self) -> list[FrameSlice]:
        """Block until the oldest decoding latent frame is on the host; return what is ready."""
        self._check_open()
        if not self._ready and self._lane.pending():
            self._collect([self._lane.wait_next()])
        self._collect(self._lane.poll())
        return self._take_ready()

    def end_shot(self) -> None:
        """End the current shot now, as a cut does: a chunk part-way through its forwards is dropped;
        chunks already denoised still come out (:meth:`poll_frames`). Then the story is between shots."""
        self._check_open()
        self._end_shot()

    def snapshot(self) -> StorySnapshot:
        """The story's state between shots (after a shot's last chunk, or after :meth:`end_shot`).

        Frames later history may sample are encoded now (each alone, exactly as a later shot would
        encode them), so the snapshot holds latents only. Raises ``RuntimeError`` mid-shot.
        """
        self._check_open()
        if self._shot is not None and self._shot.started < self._shot.num_chunks:
            raise RuntimeError("a snapshot is taken between shots: the current shot still has chunks to make; "
                               "wait for its last chunk, or end it first (end_shot(), like a cut)")
        self._end_shot()
        keep = list(self._kept_frames)
        self._context_latents_for(keep)
        return StorySnapshot(
            identity=self.engine.identity(self.decoder), global_caption=self.global_caption, seed=self.seed,
            shot_lengths=tuple(self.shot_lengths),
            captions={i: c.cpu() for i, c in enumerate(self.captions) if c is not None},
            history_latents={key: self._history_latents[key].cpu() for key in keep})

    def restore(self, snapshot: StorySnapshot) -> None:
        """Continue ``snapshot`` in this fresh story (one with no shot yet, opened with the snapshot's caption,
        seed and decoder), e.g. one whose caches a server has already allocated. Raises :class:`SnapshotError`."""
        self._check_open()
        if self.shot_lengths or self._shot is not None:
            raise SnapshotError("a snapshot is restored into a fresh story; this one has shots already")
        mine = (self.global_caption, self.seed, self.decoder)
        theirs = (snapshot.global_caption, snapshot.seed, snapshot.identity.decoder)
        if mine != theirs:
            raise SnapshotError(f"the story was opened with caption, seed and decoder {mine!r}; the snapshot has "
                                f"{theirs!r}")
        self.engine.check_snapshot(snapshot)
        device, dtype = self.engine.device, self.engine.dtype
        captions = [snapshot.captions[i].to(device, dtype) if i in snapshot.captions else None
                    for i in range(len(snapshot.shot_lengths))]
        latents = {key: t.to(device, dtype) for key, t in snapshot.history_latents.items()}
        plan = plan_context(list(snapshot.shot_lengths), self.engine.config.stream.context_frames)
        missing = [key for key in plan.frames if key not in latents]
        missing += [f for f in plan.flags if snapshot.shot_lengths and f >= 0 and captions[f] is None]
        if missing:
            raise SnapshotError(f"the snapshot lacks what the next shot's history needs: {missing[:8]}")
        self.shot_lengths, self.captions, self._history_latents = list(snapshot.shot_lengths), captions, latents

    def step(self) -> ChunkResult:
        """Generate, decode and return the next chunk (chunks denoised before a cut come first)."""
        self._check_open()
        while True:
            for i, piece in enumerate(self._ready):
                if piece.chunk is not None:
                    for _ in range(i + 1):
                        self._ready.popleft()
                    return piece.chunk
            if self._lane.pending():  # never start the next chunk first: a cut after k steps keeps k chunks
                self._collect([self._lane.wait_next()])
            elif self.has_work:
                if self._work is None:
                    self._work = self._chunk_work(self._shot)
                try:
                    next(self._work)
                except StopIteration:
                    self._work = None
            else:
                raise RuntimeError("no shot in progress: call start_shot(prompt) first")
            self._collect(self._lane.poll())

    def close(self) -> None:
        """Free the caches now rather than at garbage collection (GPU memory matters). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._lane.drain()  # nothing may still be writing into memory we are about to free
        self._shot = self._work = self._prepared = self._graphs = None
        self._ready.clear()
        self._kept_frames.clear()
        self._history_latents.clear()
        self.captions.clear()
        del self.cache, self._chunk_text, self._rope

    # -- internals --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("story is closed")

    def _patch_grid(self) -> tuple[int, int]:
        cfg = self.engine.config
        return cfg.latent_height // cfg.dit.patch_size[1], cfg.latent_width // cfg.dit.patch_size[2]

    def _caption_embedding(self, prompt: str, given: torch.Tensor | None) -> tuple[torch.Tensor, int | None, int]:
        cfg = self.engine.config.dit
        if given is not None:
            if given.shape != (cfg.text_len, cfg.text_dim):
                raise ValueError(f"text_embedding must be [{cfg.text_len}, {cfg.text_dim}], got {list(given.shape)}")
            return upload(given, self.engine.device, self.engine.dtype), None, 0
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
        if not prompt.strip():  # checked alone: the global caption and "shotN:" would mask an empty prompt
            raise ValueError("prompt is empty or only whitespace; give the shot some text")
        text = self.engine.text
        if text is None:
            raise RuntimeError("this engine has no text encoder; pass text_embedding=")
        full = format_prompt(self.global_caption, self.next_shot_index, prompt)
        info = text.prompt_info(full)
        return text.encode([full])[0].to(self.engine.device, self.engine.dtype), info.num_tokens, info.truncated_tokens

    def _check_noise(self, noise: ShotNoise, num_chunks: int) -> None:
        cfg = self.engine.config
        n, c = cfg.stream.frames_per_chunk, cfg.dit.in_dim
        lat = (cfg.latent_height, cfg.latent_width)
        want_init = (n * num_chunks, c, *lat)
        want_re = (num_chunks, len(cfg.stream.denoising_steps) - 1, n, c, *lat)
        if tuple(noise.initial.shape) != want_init or tuple(noise.renoise.shape) != want_re:
            raise ValueError(f"noise must be initial {list(want_init)} and renoise {list(want_re)}, got "
                             f"{list(noise.initial.shape)} and {list(noise.renoise.shape)}")

    def _chunk_noise(self, shot: _Shot, chunk: int) -> torch.Tensor:
        """``[steps, n, C, h, w]``: the chunk's initial noise, then the fresh noise after each step but the last.

        Drawn from the shot's CPU generator in the reference's order, staged in pinned memory and
        copied to the device in one non-blocking transfer (no per-step host round trips).
        """
        cfg, engine = self.engine.config, self.engine
        n, steps = cfg.stream.frames_per_chunk, len(cfg.stream.denoising_steps)
        shape = (n, cfg.dit.in_dim, cfg.latent_height, cfg.latent_width)
        if shot.noise is not None:
            noise = torch.cat([shot.noise.initial[chunk * n:(chunk + 1) * n][None], shot.noise.renoise[chunk]])
        else:
            noise = torch.empty((steps, *shape), pin_memory=engine.device.type == "cuda")
            for i in range(steps):
                torch.randn(shape, generator=shot.generator, out=noise[i])
        return upload(noise, engine.device, engine.dtype)

    def _forward(self, latents: torch.Tensor, cond: TimeCond, run: FrameRun, need_output: bool = True
                 ) -> torch.Tensor | None:
        if self._graphs is not None:
            return self._graphs(latents, cond, run, self._chunk_text, need_output)
        return self.engine.dit(latents, cond, run, self.cache, self._chunk_text, need_output=need_output)

    def _chunk_work(self, shot: _Shot) -> Iterator[None]:
        """One chunk, one DiT forward per ``next()``: the previous chunk's clean pass, then the 4 steps."""
        engine, stream, clock = self.engine, self.engine.config.stream, self._clock
        marks = [clock.mark()]
        if shot.pending is not None:
            x0, run = shot.pending
            shot.pending = None
            self._forward(x0, engine.time_cond(0.0), run, need_output=False)
            yield
        marks.append(clock.mark())
        b, n = shot.started, stream.frames_per_chunk
        start = stream.context_frames + b * n
        run = FrameRun(rope=(self._rope[0][b], self._rope[1][b]), write_start=start * self._tokens_per_frame,
                       caption_rows=(0,) * n)
        noise = self._chunk_noise(shot, b)
        x = noise[0]
        steps, sigmas = engine.schedule.steps.tolist(), engine.step_sigmas
        for i, t in enumerate(steps):
            flow = self._forward(x, engine.time_cond(t), run)
            x0 = engine.schedule.to_x0(flow, x, sigmas[i])
            if i + 1 < len(steps):
                x = engine.schedule.add_noise(x0, noise[i + 1], sigmas[i + 1])
                yield
        marks.append(clock.mark())
        shot.started += 1
        shot.pending = None if shot.started == shot.num_chunks else (x0, run)
        self._lane.submit(shot.decoder, x0, _ChunkTag(shot, b, x0, tuple(marks)))

    def _collect(self, decoded: list[DecodedFrames]) -> None:
        """Turn decoded latent frames into slices (and, at a chunk's end, its ChunkResult)."""
        for d in decoded:
            tag: _ChunkTag = d.tag
            shot = tag.shot
            shot.video.append(d.video)
            shot.slices.append(d)
            first = shot.frames_out
            shot.frames_out += len(d.frames)
            chunk = None
            last_in_shot = False
            if d.last_of_chunk:
                shot.done += 1
                last_in_shot = shot.done == shot.num_chunks
                pieces, shot.slices = shot.slices, []
                frames = torch.cat([p.frames for p in pieces])
                start, commit_end, denoise_end = tag.marks
                chunk = ChunkResult(
                    shot_index=shot.index, chunk_index=tag.chunk, first_frame=shot.frames_out - len(frames),
                    frames=frames,
                    latents=tag.latents, last_in_shot=last_in_shot,
                    timings_ms={"commit": self._clock.ms(start, commit_end), "denoise": self._clock.ms(
                        commit_end, denoise_end), "decode": sum(p.decode_ms for p in pieces)})
            self._ready.append(FrameSlice(shot_index=shot.index, chunk_index=tag.chunk, first_frame=first,
                                          frames=d.frames, last_in_chunk=d.last_of_chunk,
                                          last_in_shot=last_in_shot, chunk=chunk))

    def _take_ready(self) -> list[FrameSlice]:
        out = list(self._ready)
        self._ready.clear()
        return out

    def _end_shot(self) -> None:
        """Close the current shot (possibly cut) once its denoised chunks are decoded; keep only
        the frames later shots may sample."""
        shot = self._shot
        if shot is None:
            return
        self._work = None
        self._collect(self._lane.drain())
        self._shot = None
        if shot.done == 0:  # replaced before producing anything
            self.captions.pop()
            return
        shot.num_chunks = shot.done  # a cut shot ends at its last delivered chunk
        frames = torch.cat(shot.video)
        self.shot_lengths.append(len(frames))
        for idx in frames_to_keep(shot.index, len(frames), self.engine.config.stream.context_frames):
            self._kept_frames[(shot.index, idx)] = frames[idx].clone()  # not a view: free the rest

    def _prepare(self, index: int, caption: TextCache | None) -> dict[str, float]:
        """History latents, RoPE tables and (where the captions are known) the context fill of shot ``index``.

        Shot 0's context frames cross-attend to shot 0's own caption, so its fill waits for ``caption``.
        Returns the host time spent now, per stage.
        """
        if self._is_prepared(index):
            return {"history": 0.0, "context": 0.0}
        t0 = time.perf_counter()
        engine, cfg = self.engine, self.engine.config
        plan = plan_context(self.shot_lengths, cfg.stream.context_frames)
        context_latents = self._context_latents(plan)
        hp, wp = self._patch_grid()
        for b in range(cfg.stream.chunks_per_shot):
            start = cfg.stream.context_frames + b * cfg.stream.frames_per_chunk
            cos, sin = engine.rope.cos_sin(start, (plan.shot_flag,) * cfg.stream.frames_per_chunk, hp, wp,
                                           engine.device)
            self._rope[0][b].copy_(cos, non_blocking=True)
            self._rope[1][b].copy_(sin, non_blocking=True)
        t1 = time.perf_counter()
        filled = index > 0 or caption is not None
        if filled:
            if index == 0:
                text, rows = caption, (0,) * len(plan.flags)  # shot 0: a single caption
            else:
                used = sorted(set(plan.flags))
                text = engine.dit.encode_text(torch.stack([self.captions[c] for c in used]))
                rows = tuple(used.index(f) for f in plan.flags)
            run = FrameRun(rope=engine.rope.cos_sin(0, plan.flags, hp, wp, engine.device), write_start=0,
                           caption_rows=rows)
            engine.dit(context_latents, engine.time_cond(0.0), run, self.cache, text, need_output=False, eager=True)
        self._prepared = (index, plan, filled)
        t2 = time.perf_counter()
        return {"history": 1e3 * (t1 - t0), "context": 1e3 * (t2 - t1)}

    def _is_prepared(self, index: int) -> bool:
        """Shot ``index``'s context is in the cache (never for shot 0: its fill reads its own caption)."""
        return index > 0 and self._prepared is not None and self._prepared[0] == index and self._prepared[2]

    def _context_latents(self, plan: ContextPlan) -> torch.Tensor:
        cfg = self.engine.config
        if not plan.frames:
            return torch.zeros((cfg.stream.context_frames, cfg.dit.in_dim, cfg.latent_height, cfg.latent_width),
                               device=self.engine.device, dtype=self.engine.dtype)
        self._context_latents_for(plan.frames)
        return torch.stack([self._history_latents[k] for k in plan.frames])

    def _context_latents_for(self, keys) -> None:
        """Encode the kept frames among ``keys`` that have no latent yet (each frame alone)."""
        missing = [key for key in keys if key not in self._history_latents]
        if missing:
            unique = list(dict.fromkeys(missing))
            latents = self.engine.vae.encode_frames(torch.stack([self._kept_frames[k] for k in unique]))
            self._history_latents.update(zip(unique, latents.to(self.engine.dtype)))

    def _drop_unreachable_history(self, current: int) -> None:
        """Shots older than the context window can never be sampled again."""
        horizon = current - self.engine.config.stream.context_frames
        for i in range(max(horizon, 0)):
            self.captions[i] = None  # no later plan routes a frame to these captions
        for store in (self._kept_frames, self._history_latents):
            for key in [k for k in store if k[0] < horizon]:
                del store[key]
