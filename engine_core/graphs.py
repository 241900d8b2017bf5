"""CUDA graphs of a story's chunk forwards: the 30-block DiT replayed as one launch per forward.

A graph fixes every address it touches. The story keeps them fixed: its KV cache is allocated
once, chunks cross-attend to a per-story caption buffer, and RoPE tables sit in per-story
buffers (one slot per chunk position) refilled at each shot. Inputs (latents, timestep
conditioning) are copied into the graph's own buffers before each replay; the output buffer is
overwritten by the next replay, so callers consume it first (the sampler's x0 is a new tensor).

One graph per (chunk position, pass kind) and story, captured on first use. All graphs share
one memory pool: they run one after another on one stream and their outputs are consumed in
stream order, so their scratch memory can overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .kv_cache import SelfAttentionCache, TextCache
from .transformer import CausalWanTransformer, FrameRun, TimeCond

_WARMUP_RUNS = 2  # compiled blocks and cuDNN autotuning settle before capture


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    x: torch.Tensor
    e: torch.Tensor
    e6: torch.Tensor
    out: torch.Tensor | None
    pinned: tuple[int, ...]  # data pointers the graph baked in: rope tables and caption K/V


class ChunkGraphs:
    def __init__(self, dit: CausalWanTransformer, cache: SelfAttentionCache, pool: tuple):
        self.dit, self.cache, self.pool = dit, cache, pool
        self._graphs: dict[tuple, _Graph] = {}

    def __len__(self) -> int:
        return len(self._graphs)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, cond: TimeCond, run: FrameRun, text: TextCache,
                 need_output: bool) -> torch.Tensor | None:
        key = (run.write_start, tuple(latents.shape), run.caption_rows, need_output)
        pinned = (run.rope[0].data_ptr(), run.rope[1].data_ptr(), text.k[0].data_ptr(), text.v[0].data_ptr())
        g = self._graphs.get(key)
        if g is None:
            g = self._graphs[key] = self._capture(latents, cond, run, text, need_output, pinned)
        elif g.pinned != pinned:
            raise RuntimeError("a CUDA graph's RoPE or caption buffers moved; the story must refill its own "
                               "buffers in place")
        g.x.copy_(latents)
        g.e.copy_(cond.e)
        g.e6.copy_(cond.e6)
        g.graph.replay()
        return g.out

    def _capture(self, latents: torch.Tensor, cond: TimeCond, run: FrameRun, text: TextCache, need_output: bool,
                 pinned: tuple[int, ...]) -> _Graph:
        x, e, e6 = latents.clone(), cond.e.clone(), cond.e6.clone()
        static = TimeCond(e=e, e6=e6)

        def forward() -> torch.Tensor | None:
            # Warm-up runs write this run's K/V into the cache: the same values the replay writes next.
            return self.dit(x, static, run, self.cache, text, need_output=need_output)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(_WARMUP_RUNS):
                forward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = forward()
        return _Graph(graph=graph, x=x, e=e, e6=e6, out=out, pinned=pinned)
