"""The Wan2.1 diffusion transformer, run block-causally over preallocated KV caches.

Parameter names are the original Wan checkpoint's (``blocks.0.self_attn.q.weight`` ...), so the
published weights and the ShotStream student load without renaming. Arithmetic follows the
reference causal model: everything in the parameter dtype (bf16 on GPU), norms in fp32,
RoPE angles in float64.

A forward takes one run of latent frames (the 6 history frames, or a 3-frame chunk), writes its
post-RoPE keys/values into the cache at ``write_start`` in place, and attends to the cache prefix
``[0, write_start + L)``. That prefix holds exactly what the reference concatenates (context cache +
local cache up to and including this chunk), so no cache is ever cloned or concatenated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import UNSELECTED, AttentionBackend, attend
from .config import DiTConfig
from .kv_cache import SelfAttentionCache, TextCache
from .rope import apply_rotary


class RMSNorm(nn.Module):
    """Wan's RMSNorm: statistics in fp32, scale applied in the input dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class LayerNorm(nn.Module):
    """Wan's LayerNorm: computed in fp32, returned in the input dtype; affine only where Wan has it."""

    def __init__(self, dim: int, eps: float, affine: bool = False):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), (self.dim,), w, b, self.eps).type_as(x)


class Attention(nn.Module):
    """q/k/v/o projections with RMS q/k norms over the full width (before the head split)."""

    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(dim, eps), RMSNorm(dim, eps)
        self.backend: AttentionBackend = UNSELECTED  # set through CausalWanTransformer.attention

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim))

    def key_value(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.norm_k(self.k(x))), self.heads(self.v(x))


LayerKV = tuple[torch.Tensor, torch.Tensor]  # one layer's keys and values


@dataclass(frozen=True)
class TimeCond:
    """A timestep's conditioning, computed once per distinct timestep rather than on every forward."""

    e: torch.Tensor  # [1, dim]: time embedding (the head's modulation)
    e6: torch.Tensor  # [1, 6, dim]: per-block modulation


@dataclass(frozen=True)
class FrameRun:
    """What one forward needs to know about its frames besides the latents."""

    rope: tuple[torch.Tensor, torch.Tensor]  # cos, sin: [L, 1, head_dim/2]
    write_start: int  # token offset of this run in the self-attention cache
    caption_rows: tuple[int, ...]  # per frame: row of the TextCache it cross-attends to


class Block(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim, eps = cfg.dim, cfg.eps
        self.norm1 = LayerNorm(dim, eps)
        self.self_attn = Attention(dim, cfg.num_heads, eps)
        self.norm3 = LayerNorm(dim, eps, affine=True)
        self.cross_attn = Attention(dim, cfg.num_heads, eps)
        self.norm2 = LayerNorm(dim, eps)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))

    def self_attention(self, x: torch.Tensor, run: FrameRun, cache_kv: LayerKV, kv_only: bool) -> torch.Tensor | None:
        attn = self.self_attn
        prefix_k, prefix_v = cache_kv  # the cache up to the end of this run; its tail is this run's slot
        cos, sin = run.rope
        k, v = attn.key_value(x)
        n = x.shape[1]
        prefix_k[:, -n:] = apply_rotary(k, cos, sin)
        prefix_v[:, -n:] = v
        if kv_only:
            return None
        q = apply_rotary(attn.heads(attn.norm_q(attn.q(x))), cos, sin)
        return attn.o(attend(q, prefix_k, prefix_v, attn.backend))

    def cross_attention(self, x: torch.Tensor, run: FrameRun, text_kv: LayerKV) -> torch.Tensor:
        """Each frame attends to the caption of its own shot (per-frame caption routing)."""
        attn = self.cross_attn
        text_k, text_v = text_kv
        q = attn.heads(attn.norm_q(attn.q(x)))
        tokens_per_frame = x.shape[1] // len(run.caption_rows)
        outs, start = [], 0
        for row, count in _runs(run.caption_rows):
            stop = start + count * tokens_per_frame
            outs.append(attend(q[:, start:stop], text_k[row:row + 1], text_v[row:row + 1], attn.backend))
            start = stop
        return attn.o(outs[0] if len(outs) == 1 else torch.cat(outs, dim=1))

    def forward(self, x: torch.Tensor, e: torch.Tensor, run: FrameRun, cache_kv: LayerKV, text_kv: LayerKV,
                kv_only: bool = False) -> torch.Tensor | None:
        """One layer. ``cache_kv`` are this layer's cache views ending where this run ends and ``text_kv`` its
        caption K/V: no layer index or offsets, so one compiled graph serves all 30 blocks and every chunk
        position. ``kv_only``: write this layer's K/V and stop (last layer of a cache-only pass)."""
        m = (self.modulation + e).unbind(1)  # shift, scale, gate (self-attn); shift, scale, gate (ffn)
        y = self.self_attention(self.norm1(x) * (1 + m[1]) + m[0], run, cache_kv, kv_only)
        if y is None:
            return None
        x = x + y * m[2]
        x = x + self.cross_attention(self.norm3(x), run, text_kv)
        return x + self.ffn(self.norm2(x) * (1 + m[4]) + m[3]) * m[5]


class Head(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm = LayerNorm(cfg.dim, cfg.eps)
        self.head = nn.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size))
        self.modulation = nn.Parameter(torch.zeros(1, 2, cfg.dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation + e.unsqueeze(1)).unbind(1)
        return self.head(self.norm(x) * (1 + scale) + shift)


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """Wan's timestep sinusoid, float64: ``[cos(t*f), sin(t*f)]`` with ``f = 10000^(-i/half)``."""
    half = dim // 2
    t = t.to(torch.float64)
    angles = torch.outer(t, torch.pow(10000, -torch.arange(half).to(t).div(half)))
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class CausalWanTransformer(nn.Module):
    """Wan2.1 T2V DiT with block-causal attention over a caller-owned cache (see module docstring)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)

    @property
    def dtype(self) -> torch.dtype:
        return self.head.head.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.head.head.weight.device

    @property
    def attention(self) -> AttentionBackend:
        """The attention kernel every block uses (engine_core.attention.select_attention picks it)."""
        return self.blocks[0].self_attn.backend if len(self.blocks) else UNSELECTED

    @attention.setter
    def attention(self, backend: AttentionBackend) -> None:
        for module in self.modules():
            if isinstance(module, Attention):
                module.backend = backend

    @torch.no_grad()
    def encode_text(self, text: torch.Tensor) -> TextCache:
        """Cross-attention K/V of each caption ``[n, text_len, text_dim]``, computed once per shot."""
        if text.ndim != 3 or text.shape[1:] != (self.cfg.text_len, self.cfg.text_dim):
            raise ValueError(f"text embeddings must be [n, {self.cfg.text_len}, {self.cfg.text_dim}], "
                             f"got {list(text.shape)}")
        ctx = self.text_embedding(text.to(self.device, self.dtype))
        ks, vs = zip(*(blk.cross_attn.key_value(ctx) for blk in self.blocks))
        return TextCache(k=list(ks), v=list(vs))

    @torch.no_grad()
    def forward(self, latents: torch.Tensor, timestep: float | TimeCond, run: FrameRun, cache: SelfAttentionCache,
                text: TextCache, need_output: bool = True, eager: bool = False) -> torch.Tensor | None:
        """One pass over ``latents [F, C, h, w]`` at ``timestep`` (or its precomputed conditioning); returns the flow.

        With ``need_output=False`` the pass only fills the cache (history fill, clean re-pass), so
        the last layer stops after writing K/V and the head is skipped. ``eager=True`` runs the blocks
        uncompiled (the once-per-shot context fill, whose caption routing varies, would only add recompiles).
        """
        cfg = self.cfg
        if latents.ndim != 4 or latents.shape[1] != cfg.in_dim:
            raise ValueError(f"latents must be [frames, {cfg.in_dim}, h, w], got {list(latents.shape)}")
        frames, _, h, w = latents.shape
        if len(run.caption_rows) != frames:
            raise ValueError(f"{len(run.caption_rows)} caption rows for {frames} frames")
        x = self.patch_embedding(latents.to(self.dtype).movedim(0, 1).unsqueeze(0))  # [1, dim, F, h', w']
        grid = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)  # [1, L, dim]
        cond = timestep if isinstance(timestep, TimeCond) else self.time_conditioning(timestep)
        last, end = len(self.blocks) - 1, run.write_start + x.shape[1]
        for i, block in enumerate(self.blocks):
            layer = block.forward if eager else block  # forward() bypasses a compiled __call__
            x = layer(x, cond.e6, run, (cache.k[i, :, :end], cache.v[i, :, :end]), (text.k[i], text.v[i]),
                      kv_only=not need_output and i == last)
        if not need_output:
            return None
        return self._unpatchify(self.head(x, cond.e), grid)

    @torch.no_grad()
    def time_conditioning(self, timestep: float) -> TimeCond:
        """The sinusoid (float64) -> MLP conditioning of ``timestep``; the engine precomputes its few steps."""
        t = torch.tensor([timestep], device=self.device, dtype=torch.float32)
        e = self.time_embedding(sinusoidal_embedding(self.cfg.freq_dim, t).to(self.dtype))  # [1, dim]
        return TimeCond(e=e, e6=self.time_projection(e).unflatten(1, (6, self.cfg.dim)))

    def _unpatchify(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """``[1, L, C*pt*ph*pw]`` -> ``[F, C, h, w]``."""
        pt, ph, pw = self.cfg.patch_size
        f, h, w = grid
        x = x.view(f, h, w, pt, ph, pw, self.cfg.out_dim)
        x = torch.einsum("fhwpqrc->fpchqwr", x)
        return x.reshape(f * pt, self.cfg.out_dim, h * ph, w * pw)


def _runs(rows: Sequence[int]) -> list[tuple[int, int]]:
    """Run-length encode ``rows``: [(row, count), ...] in order."""
    out: list[tuple[int, int]] = []
    for r in rows:
        if out and out[-1][0] == r:
            out[-1] = (r, out[-1][1] + 1)
        else:
            out.append((r, 1))
    return out
