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
