"""The decode lane: VAE decoding of finished chunks, overlapped with the next chunk's denoising.

Why: decoding a 12-frame chunk costs about as long as denoising one (~275 ms on an H100), and done
inline it delays both the frames and the next chunk. On CUDA the lane runs the decode on its own
stream. ``submit`` only enqueues GPU work and returns; the side stream waits (a CUDA event, not a
host sync) for what the caller already queued on its stream, i.e. the denoising that produced the
latents, then decodes one latent frame at a time, converts to uint8 and copies into pinned host
memory, recording an event after each latent frame. ``poll`` hands out whatever has finished,
``wait_next``/``drain`` block on those events. Nothing here calls ``torch.cuda.synchronize``.

Rules for callers (one worker thread drives the lane; it is not thread-safe):

* Once a :class:`FrameDecoder` (the Wan VAE's or the tiny decoder's) is given to a lane, decode it only through that lane: its causal
  cache is written on the side stream.
* Results come out in submission order, across all decoders; each decoder's latents are decoded in
  its own submission order (one side stream serialises everything).
* ``DecodedFrames.video`` is safe to use on the stream that was current when it was handed out.

On the CPU, or with ``overlap=False``, ``submit`` decodes synchronously and the rest is bookkeeping.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import torch


class FrameDecoder(Protocol):
    """One shot's streaming decoder: :class:`~engine_core.vae.StreamingDecoder` (Wan VAE) or
    :class:`~engine_core.tae.TaeStreamingDecoder` (tiny preview decoder)."""

    @property
    def device(self) -> torch.device: ...

    def check_chunk(self, latents: torch.Tensor) -> None: ...

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor: ...


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """``[n, 3, H, W]`` in [-1, 1] -> uint8 ``[n, H, W, 3]``; truncating like the reference's writer."""
    return ((frames.float() + 1) * 0.5).clamp_(0, 1).mul_(255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@dataclass(frozen=True)
class DecodedFrames:
    """The frames of one decoded latent frame (1 for a shot's first latent, 4 after)."""

    tag: object  # whatever the caller passed to submit()
    latent_index: int  # 0..F-1 within the submitted chunk
    last_of_chunk: bool
    frames: torch.Tensor  # uint8 [n, H, W, 3] on the CPU (pinned on CUDA); the caller's to keep
    video: torch.Tensor  # the same frames in [-1, 1], [n, 3, H, W], on the VAE's device (for history re-encode)
    decode_ms: float  # measured with CUDA events on GPU (time.perf_counter on CPU)


@dataclass
class _Job:
    """One latent frame in flight; no events on the CPU path, where submit() already finished it."""

    tag: object
    latent_index: int
    last_of_chunk: bool
    frames: torch.Tensor
    video: torch.Tensor
    start: torch.cuda.Event | None
    done: torch.cuda.Event | None
    cpu_ms: float = 0.0

    def finished(self) -> bool:
        return self.done is None or self.done.query()


class DecodeLane:
    """Decodes submitted chunks off the critical path and hands frames back in submission order."""

    def __init__(self, device: torch.device, overlap: bool = True) -> None:
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self._cuda = device.type == "cuda"
        # The side stream exists only when it can overlap anything: CUDA with overlap on.
        self._side = torch.cuda.Stream(device=device) if self._cuda and overlap else None
        self._jobs: deque[_Job] = deque()

    def submit(self, decoder: FrameDecoder, latents: torch.Tensor, tag: object) -> None:
        """Queue a chunk's F latent frames ``[F, z, h, w]`` for decoding, one :class:`DecodedFrames` per latent frame.

        On CUDA the side stream first waits (an event) for the work already queued on the current
        stream, so ``latents`` may still be being computed; it is kept from reuse until the side
        stream is done with it (``record_stream``). Returns without waiting for the GPU. On the CPU
        or with ``overlap=False`` it decodes synchronously. Bad latents raise ``ValueError`` before
        anything is queued.
        """
        if decoder.device != self.device:
            raise ValueError(f"this lane decodes on {self.device}, but the decoder's VAE is on {decoder.device}")
        decoder.check_chunk(latents)
        count = latents.shape[0]
        if not self._cuda:
            for i, latent in enumerate(latents):
                t0 = time.perf_counter()
                video = decoder.decode_latent(latent)
                frames = to_uint8(video)
                self._jobs.append(_Job(tag, i, i == count - 1, frames, video, None, None,
                                       1e3 * (time.perf_counter() - t0)))
            return
        stream = self._side if self._side is not None else torch.cuda.current_stream(self.device)
        if self._side is not None:
            self._side.wait_stream(torch.cuda.current_stream(self.device))
            if latents.is_cuda:
                latents.record_stream(self._side)
        with torch.cuda.stream(stream):
            for i, latent in enumerate(latents):
                start = torch.cuda.Event(enable_timing=True)
                start.record(stream)
                video = decoder.decode_latent(latent)
                pixels = to_uint8(video)
                frames = torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True)
                frames.copy_(pixels, non_blocking=self._side is not None)  # blocking (synchronous) without overlap
                done = torch.cuda.Event(enable_timing=True)
                done.record(stream)
                self._jobs.append(_Job(tag, i, i == count - 1, frames, video, start, done))
        if self._side is None:
            done.synchronize()  # the copies were blocking, but the last event must have fired for poll()

    def poll(self) -> list[DecodedFrames]:
        """Everything finished so far, in submission order; never blocks."""
        out = []
        while self._jobs and self._jobs[0].finished():
            out.append(self._hand_out(self._jobs.popleft()))
        return out

    def wait_next(self) -> DecodedFrames:
        """Block until the oldest pending latent frame is decoded (``event.synchronize``), and return it."""
        if not self._jobs:
            raise RuntimeError("nothing is pending in this decode lane: submit() a chunk first")
        job = self._jobs.popleft()
        if job.done is not None:
            job.done.synchronize()
        return self._hand_out(job)

    def pending(self) -> int:
        """Latent frames submitted and not yet handed out (finished or not)."""
        return len(self._jobs)

    def drain(self) -> list[DecodedFrames]:
        """Block until all submitted work is done; return all of it in order."""
        return [self.wait_next() for _ in range(len(self._jobs))]

    def _hand_out(self, job: _Job) -> DecodedFrames:
        decode_ms = job.cpu_ms
        if job.done is not None and job.start is not None:
            decode_ms = job.start.elapsed_time(job.done)
        if self._side is not None and job.video.is_cuda:
            # Allocated on the side stream, freed by the caller after its own stream's work with it.
            job.video.record_stream(torch.cuda.current_stream(self.device))
        return DecodedFrames(tag=job.tag, latent_index=job.latent_index, last_of_chunk=job.last_of_chunk,
                             frames=job.frames, video=job.video, decode_ms=decode_ms)
