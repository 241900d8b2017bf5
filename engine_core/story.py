"""One interactive story: shots started on demand, generated and decoded chunk by chunk.

Per shot (reference §11): pick history frames from earlier shots, VAE-encode each alone, fill
the global context cache with one t=0 pass; then per chunk run the 4 warped denoising steps,
decode the chunk at once (streaming VAE), and write the chunk's clean K/V with a t=0 pass.

Where we do less work than the reference without changing the maths:
- the clean pass of chunk ``b`` runs lazily at the start of chunk ``b+1``, so frames leave
  before it, and it is skipped for a shot's last chunk and for a cut (nothing reads it);
- history frames are encoded once and their latents reused by later shots (each frame is
  encoded alone, so a cached latent is the same tensor the reference recomputes);
- shot 0's history is all-zero latents, so its 6 black-frame encodes are skipped.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .history import ContextPlan, frames_to_keep, plan_context
from .kv_cache import SelfAttentionCache, TextCache
from .text import format_prompt
from .transformer import FrameRun
from .vae import StreamingDecoder

if TYPE_CHECKING:
    from .engine import ShotStreamEngine


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
    timings_ms: dict[str, float]  # text, history, context


@dataclass(frozen=True)
class ChunkResult:
    shot_index: int
    chunk_index: int
    first_frame: int  # index of frames[0] within the shot
    frames: torch.Tensor  # uint8 [n, H, W, 3] on the CPU
    latents: torch.Tensor  # x0 of the chunk, [3, C, h, w]
    last_in_shot: bool
    timings_ms: dict[str, float]  # commit (previous chunk's clean pass), denoise, decode


@dataclass
class _Shot:
    index: int
    num_chunks: int
    shot_flag: int
    text: TextCache
    caption_row: int
    noise: ShotNoise | None
    decoder: StreamingDecoder
    generator: torch.Generator
    chunks_done: int = 0
    pending: tuple[torch.Tensor, FrameRun] | None = None  # chunk awaiting its clean t=0 pass
    frames: list[torch.Tensor] = field(default_factory=list)  # decoded [-1, 1] frames, for history


def shot_seed(seed: int, shot: int) -> int:
    """Independent, reproducible noise stream per (story seed, shot index)."""
    digest = hashlib.blake2b(f"{seed}:{shot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """``[n, 3, H, W]`` in [-1, 1] -> uint8 ``[n, H, W, 3]``; truncating like the reference's writer."""
    return ((frames.float() + 1) * 0.5).clamp_(0, 1).mul_(255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class Story:
    """Create with :meth:`ShotStreamEngine.open_story`. Not thread-safe: drive it from one thread."""

    def __init__(self, engine: ShotStreamEngine, global_caption: str, seed: int):
        if not isinstance(global_caption, str):
            raise TypeError("global_caption must be a str")
        self.engine = engine
        self.global_caption = global_caption
        self.seed = int(seed)
        cfg = engine.config
        self._tokens_per_frame = cfg.tokens_per_frame
        self.cache = SelfAttentionCache(
            cfg.dit.num_layers, self._tokens_per_frame * (cfg.stream.context_frames + cfg.max_latent_frames),
            cfg.dit.num_heads, cfg.dit.head_dim, engine.dtype, engine.device)
        self.captions: list[torch.Tensor | None] = []  # text embedding of each shot's prompt (None once unreachable)
        self.shot_lengths: list[int] = []  # decoded frames of each finished shot
        self._kept_frames: dict[tuple[int, int], torch.Tensor] = {}
        self._history_latents: dict[tuple[int, int], torch.Tensor] = {}
        self._shot: _Shot | None = None
        self.closed = False

    # -- public API -------------------------------------------------------------------------

    @property
    def shot_in_progress(self) -> bool:
        return self._shot is not None and self._shot.chunks_done < self._shot.num_chunks

    @property
    def next_shot_index(self) -> int:
        return len(self.shot_lengths) + (1 if self._shot is not None and self._shot.chunks_done else 0)

    def start_shot(self, prompt: str, num_chunks: int | None = None, *, text_embedding: torch.Tensor | None = None,
                   noise: ShotNoise | None = None) -> ShotInfo:
        """Begin the next shot; cuts the current one at its last finished chunk.

        A shot that has produced no chunk yet is replaced, not kept. ``text_embedding``
        (``[text_len, text_dim]``) replaces encoding ``prompt``; ``noise`` replaces the seeded noise.
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
        self._finish_shot()
        index = len(self.shot_lengths)
        self.captions.append(embedding)
        try:
            t1 = self._now()

            plan = plan_context(self.shot_lengths, cfg.stream.context_frames)
            context_latents = self._context_latents(plan)
            t2 = self._now()

            caption_of = (lambda flag: flag) if index > 0 else (lambda flag: 0)  # shot 0: a single caption
            used = sorted({caption_of(f) for f in plan.flags} | {caption_of(plan.shot_flag)})
            row = {c: i for i, c in enumerate(used)}
            text = self.engine.dit.encode_text(torch.stack([self.captions[c] for c in used]))
            hp, wp = self._patch_grid()
            run = FrameRun(rope=self.engine.rope.cos_sin(0, plan.flags, hp, wp, self.engine.device), write_start=0,
                           caption_rows=tuple(row[caption_of(f)] for f in plan.flags))
            self.engine.dit(context_latents, 0.0, run, self.cache, text, need_output=False)
            t3 = self._now()

            self._shot = _Shot(index=index, num_chunks=num_chunks, shot_flag=plan.shot_flag, text=text,
                               caption_row=row[caption_of(plan.shot_flag)], noise=noise,
                               decoder=self.engine.vae.stream_decoder(),
                               generator=torch.Generator().manual_seed(shot_seed(self.seed, index)))
        except BaseException:  # e.g. out of GPU memory: keep captions aligned with shot indices
            self.captions.pop()
            raise
        self._drop_unreachable_history(index)
        return ShotInfo(shot_index=index, prompt=prompt, num_chunks=num_chunks, num_frames=cfg.pixel_frames(num_chunks),
                        context_frames=plan.frames, context_flags=plan.flags, shot_flag=plan.shot_flag,
                        prompt_tokens=prompt_tokens, truncated_tokens=truncated,
                        timings_ms={"text": 1e3 * (t1 - t0), "history": 1e3 * (t2 - t1), "context": 1e3 * (t3 - t2)})

    def step(self) -> ChunkResult:
        """Generate, decode and return the next chunk of the current shot."""
        self._check_open()
        shot = self._shot
        if shot is None or shot.chunks_done >= shot.num_chunks:
            raise RuntimeError("no shot in progress: call start_shot(prompt) first")
        engine, stream = self.engine, self.engine.config.stream
        t0 = self._now()
        self._commit_pending(shot)
        t1 = self._now()

        b, n = shot.chunks_done, stream.frames_per_chunk
        hp, wp = self._patch_grid()
        start = stream.context_frames + b * n
        run = FrameRun(rope=engine.rope.cos_sin(start, (shot.shot_flag,) * n, hp, wp, engine.device),
                       write_start=start * self._tokens_per_frame, caption_rows=(shot.caption_row,) * n)
        x = self._noise(shot, b, None)
        steps, sigmas = engine.schedule.steps, engine.schedule.step_sigmas
        for i, t in enumerate(steps.tolist()):
            flow = engine.dit(x, t, run, self.cache, shot.text)
            x0 = engine.schedule.to_x0(flow, x, sigmas[i])
            if i + 1 < len(steps):
                x = engine.schedule.add_noise(x0, self._noise(shot, b, i), sigmas[i + 1])
        t2 = self._now()

        decoded = shot.decoder.decode_chunk(x0)
        frames = to_uint8(decoded).cpu()
        t3 = time.perf_counter()

        first = sum(len(f) for f in shot.frames)
        shot.frames.append(decoded)
        shot.chunks_done += 1
        last = shot.chunks_done == shot.num_chunks
        shot.pending = None if last else (x0, run)
        return ChunkResult(shot_index=shot.index, chunk_index=b, first_frame=first, frames=frames, latents=x0,
                           last_in_shot=last,
                           timings_ms={"commit": 1e3 * (t1 - t0), "denoise": 1e3 * (t2 - t1), "decode": 1e3 * (t3 - t2)})

    def close(self) -> None:
        """Free the caches now rather than at garbage collection (GPU memory matters). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._shot = None
        self._kept_frames.clear()
        self._history_latents.clear()
        self.captions.clear()
        del self.cache

    # -- internals --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("story is closed")

    def _now(self) -> float:
        if self.engine.device.type == "cuda":
            torch.cuda.synchronize(self.engine.device)
        return time.perf_counter()

    def _patch_grid(self) -> tuple[int, int]:
        cfg = self.engine.config
        return cfg.latent_height // cfg.dit.patch_size[1], cfg.latent_width // cfg.dit.patch_size[2]

    def _caption_embedding(self, prompt: str, given: torch.Tensor | None) -> tuple[torch.Tensor, int | None, int]:
        cfg = self.engine.config.dit
        if given is not None:
            if given.shape != (cfg.text_len, cfg.text_dim):
                raise ValueError(f"text_embedding must be [{cfg.text_len}, {cfg.text_dim}], got {list(given.shape)}")
            return given.to(self.engine.device, self.engine.dtype), None, 0
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

    def _noise(self, shot: _Shot, chunk: int, step: int | None) -> torch.Tensor:
        """Initial noise of ``chunk`` (step None) or the fresh noise after ``step``."""
        cfg = self.engine.config
        n = cfg.stream.frames_per_chunk
        if shot.noise is not None:
            src = shot.noise.initial[chunk * n:(chunk + 1) * n] if step is None else shot.noise.renoise[chunk, step]
        else:
            src = torch.randn((n, cfg.dit.in_dim, cfg.latent_height, cfg.latent_width), generator=shot.generator)
        return src.to(self.engine.device, self.engine.dtype)

    def _commit_pending(self, shot: _Shot) -> None:
        if shot.pending is not None:
            x0, run = shot.pending
            self.engine.dit(x0, 0.0, run, self.cache, shot.text, need_output=False)
            shot.pending = None

    def _finish_shot(self) -> None:
        """Close the current shot (possibly cut); keep only frames later shots may sample."""
        shot, self._shot = self._shot, None
        if shot is None:
            return
        if shot.chunks_done == 0:  # replaced before producing anything
            self.captions.pop()
            return
        frames = torch.cat(shot.frames)
        self.shot_lengths.append(len(frames))
        for idx in frames_to_keep(shot.index, len(frames), self.engine.config.stream.context_frames):
            self._kept_frames[(shot.index, idx)] = frames[idx].clone()  # not a view: free the rest

    def _context_latents(self, plan: ContextPlan) -> torch.Tensor:
        cfg = self.engine.config
        if not plan.frames:
            return torch.zeros((cfg.stream.context_frames, cfg.dit.in_dim, cfg.latent_height, cfg.latent_width),
                               device=self.engine.device, dtype=self.engine.dtype)
        missing = [key for key in plan.frames if key not in self._history_latents]
        if missing:
            unique = list(dict.fromkeys(missing))
            latents = self.engine.vae.encode_frames(torch.stack([self._kept_frames[k] for k in unique]))
            self._history_latents.update(zip(unique, latents.to(self.engine.dtype)))
        return torch.stack([self._history_latents[k] for k in plan.frames])

    def _drop_unreachable_history(self, current: int) -> None:
        """Shots older than the context window can never be sampled again."""
        horizon = current - self.engine.config.stream.context_frames
        for i in range(max(horizon, 0)):
            self.captions[i] = None  # no later plan routes a frame to these captions
        for store in (self._kept_frames, self._history_latents):
            for key in [k for k in store if k[0] < horizon]:
                del store[key]
