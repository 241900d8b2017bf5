"""A deliberately naive, independent implementation of ShotStream causal multi-shot inference.

This module is ground truth for parity tests of the optimised engine (``engine_core``). It is written
for clarity, not speed: every step follows ``shotstream-inference.md`` (and the public reference code
it cites) literally. Nothing from ``engine_core`` is imported at run time; the ``cfg`` arguments are
``engine_core.config`` dataclasses (``DiTConfig`` / ``ModelConfig``), read by attribute only.

Conventions
-----------
* State dicts use the ORIGINAL Wan key names (``blocks.0.self_attn.q.weight`` ...), no ``model.`` prefix.
* All arithmetic runs in the dtype of ``sd["patch_embedding.weight"]`` (float32 for the tiny test model;
  pass a float64 state dict for a high-precision reference), except where the reference uses more
  precision: sinusoidal timestep features, RoPE (float64 complex) and the flow -> x0 conversion (float64).
* Latents are ``[frames, channels, height, width]``; inside the transformer tokens are kept as
  ``[frames, tokens_per_frame, dim]`` (tokens in row-major (row, col) order inside a frame, as Wan's
  ``flatten(2)`` of the patch-embedding output gives).

Two independent ways to run the transformer are provided and are compared by the self-tests:

* :func:`naive_dit_forward`: one full-sequence forward, all frames are queries and keys at once, with an
  optional frame-level boolean mask expanded to tokens (the training-style block mask).
* the cache path used by :func:`naive_story`: a context fill that stores post-RoPE K/V per layer, then
  per-chunk forwards whose keys are ``concat(context K/V, local K/V of earlier chunks, own K/V)``
  (reference ``wan/modules/causal_model.py:291-410``).

Only the per-layer building blocks (norms, projections, RoPE, softmax attention, the block skeleton)
are shared between the two paths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # duck-typed at run time: nothing from engine_core is imported when this module runs
    from engine_core.config import DiTConfig, ModelConfig

ROPE_THETA = 10000.0
ROPE_TABLE_ROWS = 1024  # positions index a 1024-row angle table (reference rope_params_angle(1024, ...))
SHOT_PHASE = 1.0 / 6.0  # RoPE discontinuity indicator: radians of temporal phase per shot flag


# =============================================================================================
# 1. Scheduler (spec section 4)
# =============================================================================================

def scheduler_tables(shift: float = 8.0, n: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True).set_timesteps(n): (sigmas, timesteps).

    sigma = linspace(1, 0, n + 1)[:-1] in float32, shifted sigma' = shift*sigma / (1 + (shift-1)*sigma),
    timestep = n * sigma' (n = num_train_timesteps = 1000). Both tables are float32 ``[n]``.
    """
    sigmas = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float32)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    timesteps = sigmas * n
    return sigmas, timesteps


def warped_timesteps(
    shift: float = 8.0, steps: Sequence[int] = (1000, 740, 500, 260), n: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """The actual denoising timesteps and their sigmas (``warp_denoising_step: True``).

    ``t = concat(timesteps, [0])[n - steps]`` (reference ``model/base.py:479-484``); the sigmas are
    taken from the same table positions. Returns two float32 tensors ``[len(steps)]``;
    for the defaults t ~ [1000, 957.929, 888.889, 737.589] and sigma ~ [1, 0.95793, 0.88889, 0.73759].
    """
    sigmas, timesteps = scheduler_tables(shift, n)
    index = n - torch.tensor(list(steps), dtype=torch.long)
    zero = torch.zeros(1, dtype=torch.float32)
    return torch.cat([timesteps, zero])[index], torch.cat([sigmas, zero])[index]


def sigma_at(t: float | torch.Tensor, shift: float = 8.0, n: int = 1000) -> torch.Tensor:
    """Sigma of the scheduler-table entry nearest to timestep ``t`` (argmin |timesteps - t|), float32 scalar.

    This is how the reference turns a timestep into a sigma, both for x0 conversion
    (``utils/wan_wrapper.py:184-208``) and for re-noising (``utils/scheduler.py:161-180``).
    """
    sigmas, timesteps = scheduler_tables(shift, n)
    t = torch.as_tensor(t, dtype=torch.float64)
    index = torch.argmin((timesteps.double() - t).abs())
    return sigmas[index]


def flow_to_x0(x_t: torch.Tensor, flow: torch.Tensor, t: float | torch.Tensor,
               shift: float = 8.0, n: int = 1000) -> torch.Tensor:
    """x0 = x_t - sigma_t * v, computed in float64 and returned in ``flow``'s dtype."""
    sigma = sigma_at(t, shift, n).double()
    return (x_t.double() - sigma * flow.double()).to(flow.dtype)


def renoise(x0: torch.Tensor, noise: torch.Tensor, t_next: float | torch.Tensor,
            shift: float = 8.0, n: int = 1000) -> torch.Tensor:
    """Forward corruption to the next timestep: (1 - sigma') * x0 + sigma' * eps (in x0's dtype)."""
    sigma = sigma_at(t_next, shift, n).to(x0.dtype)
    return (1 - sigma) * x0 + sigma * noise.to(x0.dtype)


# =============================================================================================
# 2. History selection (spec section 2.1)
# =============================================================================================

def history_plan(shot_lengths: Sequence[int], context_frames: int = 6) -> tuple[list[tuple[int, int]], list[int]]:
    """Which decoded frames of the previous shots become the context ("history") frames.

    ``shot_lengths[j]`` is the number of decoded pixel frames of previous shot j (81 for a full shot,
    fewer after a cut). Returns ``(picks, flags)``: ``picks`` is a list of (shot index, frame index
    within that shot), ``flags`` the RoPE shot flag of each context frame (= the source shot index).

    * No previous shot: no frames (the caller uses zero latents) and flags ``[0] * context_frames``.
    * Otherwise ``base = context_frames // k``, the remainder goes to the most recent shots, and shot j
      contributes ``round(linspace(first, last, counts[j]))``. As in the reference
      (``pipeline/causal_inference_ar.py:87-123``) the linspace runs over indices into the concatenation
      of all decoded frames, in float32, rounded half-to-even; we then subtract the shot's start.
    """
    k = len(shot_lengths)
    if k == 0:
        return [], [0] * context_frames
    counts = [context_frames // k] * k
    for i in range(1, context_frames % k + 1):
        counts[-i] += 1

    picks: list[tuple[int, int]] = []
    flags: list[int] = []
    start = 0  # index of this shot's first frame in the concatenation of all decoded frames
    for shot, (length, count) in enumerate(zip(shot_lengths, counts)):
        first, last = start, start + length - 1
        chosen = torch.linspace(first, last, steps=count).round().long().tolist()
        picks += [(shot, index - start) for index in chosen]
        flags += [shot] * len(chosen)
        start += length
    return picks, flags


def block_causal_mask(context_frames: int, frames_per_chunk: int, num_chunks: int) -> torch.Tensor:
    """Frame-level bool mask [F, F] (True = query frame may attend key frame) for context + chunks.

    Context frames form group 0, chunk b forms group b + 1; a query sees a key iff
    group(query) >= group(key). So the context sees only itself, and chunk b sees the context, the
    earlier chunks and itself (the training mask, ``causal_model.py:1037-1060``).
    """
    groups = [0] * context_frames
    for b in range(num_chunks):
        groups += [b + 1] * frames_per_chunk
    g = torch.tensor(groups)
    return g[:, None] >= g[None, :]


# =============================================================================================
# 3. Primitive layers
# =============================================================================================

def _linear(sd: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return x @ sd[name + ".weight"].T + sd[name + ".bias"]


def _silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _layer_norm(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased variance, as nn.LayerNorm
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight + bias
    return y


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """WanRMSNorm over the full last dim: normalise in (at least) fp32, cast back, then scale."""
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y.to(x.dtype) * weight


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """Wan's sinusoidal_embedding_1d in float64: cat[cos(t*w), sin(t*w)], w_j = 10000^(-j/half)."""
    half = dim // 2
    t = t.to(torch.float64).reshape(-1)
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64) / half)
    angles = torch.outer(t, freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head. q [Nq, H, D], k/v [Nk, H, D], mask [Nq, Nk] bool or None."""
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        if not bool(mask.any(dim=-1).all()):
            raise ValueError("every query must be allowed to attend at least one key")
        scores = scores.masked_fill(~mask[None], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.einsum("hqk,khd->qhd", weights, v)


# =============================================================================================
# 4. RoPE with the per-shot phase (spec section 3)
# =============================================================================================

def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Real dims per axis (t, h, w): d - 4*(d//6), 2*(d//6), 2*(d//6); 128 -> 44, 42, 42 (22/21/21 pairs)."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_angle_table(dim: int, rows: int = ROPE_TABLE_ROWS, theta: float = ROPE_THETA) -> torch.Tensor:
    """float64 [rows, dim // 2]: angle[p, j] = p / theta^(2j / dim) (reference rope_params_angle)."""
    inv_freq = 1.0 / torch.pow(theta, torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    return torch.outer(torch.arange(rows, dtype=torch.float64), inv_freq)


def rope_angles(head_dim: int, positions: Sequence[int], flags: Sequence[int], height: int, width: int,
                shot_phase: float = SHOT_PHASE) -> torch.Tensor:
    """float64 angles [F * height * width, head_dim // 2] for frames at ``positions`` with shot ``flags``.

    Token (frame f, row r, col c) gets ``cat[table_t[pos_f] + flag_f * shot_phase, table_h[r], table_w[c]]``.

    The phase ``flag * 1/6`` is computed in float64 here. The reference multiplies an int32 flag
    tensor (``causal_inference_ar.py:176``) by the Python float 1/6, which gives float32 before the
    add to the float64 table (``causal_rope_apply_dynamic``, ``causal_model.py:70-100``). Its phase
    therefore differs from ours by ~1e-7 rad per flag unit at most. That is far below bf16/fp32
    noise, so it is deliberately not reproduced.
    """
    positions = [int(p) for p in positions]
    flags = [int(s) for s in flags]
    if len(positions) != len(flags):
        raise ValueError("positions and flags must have one entry per frame")
    if min(positions) < 0 or max(positions) >= ROPE_TABLE_ROWS or max(height, width) > ROPE_TABLE_ROWS:
        raise ValueError("RoPE position outside the 1024-row table")
    dim_t, dim_h, dim_w = rope_axis_dims(head_dim)
    table_t, table_h, table_w = rope_angle_table(dim_t), rope_angle_table(dim_h), rope_angle_table(dim_w)

    per_token = []
    for p, s in zip(positions, flags):
        temporal = table_t[p] + s * shot_phase  # same phase shift on every temporal frequency
        for r in range(height):
            for c in range(width):
                per_token.append(torch.cat([temporal, table_h[r], table_w[c]]))
    return torch.stack(per_token)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2j], x[2j+1]) of every head by ``angles`` [N, D/2]; x is [N, H, D].

    Done as in the reference: float64 complex numbers times torch.polar(1, angle), cast back.
    """
    n, heads, d = x.shape
    as_complex = torch.view_as_complex(x.to(torch.float64).reshape(n, heads, d // 2, 2))
    rotation = torch.polar(torch.ones_like(angles), angles)[:, None, :]  # [N, 1, D/2]
    return torch.view_as_real(as_complex * rotation).reshape(n, heads, d).to(x.dtype)


# =============================================================================================
# 5. Model pieces (spec section 1.1); names follow the original Wan checkpoint
# =============================================================================================

def _dtype(sd: dict) -> torch.dtype:
    return sd["patch_embedding.weight"].dtype


def patch_embed(sd: dict, cfg: DiTConfig, latents: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Conv3d(kernel = stride = patch) as an explicit patch gather + matmul.

    latents [F, C, h, w] -> tokens [F, (h/ph)*(w/pw), dim] (row-major inside a frame), plus the grid.
    """
    pt, ph, pw = cfg.patch_size
    if pt != 1:
        raise ValueError("ShotStream works per latent frame: temporal patch size must be 1")
    frames, channels, h, w = latents.shape
    gh, gw = h // ph, w // pw
    x = latents.to(_dtype(sd))
    # [F, C, gh, ph, gw, pw] -> [F, gh, gw, C, ph, pw]: one flattened (C, ph, pw) patch per token,
    # the same element order as the Conv3d weight [dim, C, pt, ph, pw].
    patches = x.reshape(frames, channels, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(frames, gh * gw, channels * ph * pw)
    weight = sd["patch_embedding.weight"].reshape(cfg.dim, -1)
    return patches @ weight.T + sd["patch_embedding.bias"], gh, gw


def unpatchify(cfg: DiTConfig, y: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """Head output [F, gh*gw, out_dim*pt*ph*pw] (channel fastest, as Wan's view(..., p, q, r, c)) -> [F, C, h, w]."""
    pt, ph, pw = cfg.patch_size
    frames = y.shape[0]
    y = y.reshape(frames, gh, gw, pt, ph, pw, cfg.out_dim)
    y = torch.einsum("fhwpqrc->fpchqwr", y)
    return y.reshape(frames * pt, cfg.out_dim, gh * ph, gw * pw)


def time_embeddings(sd: dict, cfg: DiTConfig, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame e = time_embedding(sinusoid(t)) [F, dim] and e6 = time_projection(e) [F, 6, dim]."""
    features = sinusoidal_embedding(cfg.freq_dim, timesteps).to(_dtype(sd))
    e = _linear(sd, "time_embedding.2", _silu(_linear(sd, "time_embedding.0", features)))
    e6 = _linear(sd, "time_projection.1", _silu(e)).reshape(-1, 6, cfg.dim)
    return e, e6


def text_embedding(sd: dict, cfg: DiTConfig, text: torch.Tensor) -> torch.Tensor:
    """[n_captions, L <= text_len, text_dim] -> zero-pad to text_len -> Linear, GELU(tanh), Linear."""
    text = text.to(_dtype(sd))
    if text.shape[1] > cfg.text_len:
        raise ValueError(f"text has {text.shape[1]} tokens, more than text_len {cfg.text_len}")
    if text.shape[1] < cfg.text_len:
        pad = text.new_zeros(text.shape[0], cfg.text_len - text.shape[1], text.shape[2])
        text = torch.cat([text, pad], dim=1)
    return _linear(sd, "text_embedding.2", _gelu_tanh(_linear(sd, "text_embedding.0", text)))


def _heads(cfg: DiTConfig, x: torch.Tensor) -> torch.Tensor:
    return x.reshape(*x.shape[:-1], cfg.num_heads, cfg.head_dim)


def self_attn_qkv(sd: dict, cfg: DiTConfig, layer: int, x: torch.Tensor,
                  angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer's self-attention q, k (RMSNorm over the full dim, then heads, then RoPE) and v.

    x [N, dim] (already LN1-modulated), angles [N, head_dim/2]. Returns [N, H, D] each.
    """
    p = f"blocks.{layer}.self_attn."
    q = _heads(cfg, _rms_norm(_linear(sd, p + "q", x), sd[p + "norm_q.weight"], cfg.eps))
    k = _heads(cfg, _rms_norm(_linear(sd, p + "k", x), sd[p + "norm_k.weight"], cfg.eps))
    v = _heads(cfg, _linear(sd, p + "v", x))
    return apply_rope(q, angles), apply_rope(k, angles), v


def cross_attn_kv(sd: dict, cfg: DiTConfig, layer: int, text_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Text K/V of one layer: norm_k(W_k ctx), W_v ctx, each [n_captions, text_len, H, D]."""
    p = f"blocks.{layer}.cross_attn."
    k = _heads(cfg, _rms_norm(_linear(sd, p + "k", text_emb), sd[p + "norm_k.weight"], cfg.eps))
    v = _heads(cfg, _linear(sd, p + "v", text_emb))
    return k, v


def cross_attn(sd: dict, cfg: DiTConfig, layer: int, x: torch.Tensor, text_k: torch.Tensor,
               text_v: torch.Tensor, caption_of_frame: Sequence[int]) -> torch.Tensor:
    """Cross-attention of x [F, T, dim] (already LN3-normed); frame f attends caption caption_of_frame[f].

    All text_len positions are keys (no padding mask), as in Wan.
    """
    p = f"blocks.{layer}.cross_attn."
    q = _heads(cfg, _rms_norm(_linear(sd, p + "q", x), sd[p + "norm_q.weight"], cfg.eps))  # [F, T, H, D]
    out = torch.stack([
        attention(q[f], text_k[int(c)], text_v[int(c)]) for f, c in enumerate(caption_of_frame)
    ])
    return _linear(sd, p + "o", out.reshape(x.shape))


def block_forward(sd: dict, cfg: DiTConfig, layer: int, x: torch.Tensor, e6: torch.Tensor,
                  self_attention: Callable[[torch.Tensor], torch.Tensor],
                  text_k: torch.Tensor, text_v: torch.Tensor, caption_of_frame: Sequence[int]) -> torch.Tensor:
    """One Wan block on x [F, T, dim] with per-frame modulation e6 [F, 6, dim].

    ``self_attention`` maps the modulated input [F, T, dim] to the attention output after the o
    projection [F, T, dim]; the two inference paths plug in their own (masked / cached) version.
    """
    p = f"blocks.{layer}."
    m = sd[p + "modulation"] + e6  # [1, 6, dim] + [F, 6, dim]
    e = [m[:, i:i + 1, :] for i in range(6)]  # each [F, 1, dim], broadcast over the frame's tokens
    x = x + self_attention(_layer_norm(x, cfg.eps) * (1 + e[1]) + e[0]) * e[2]
    x = x + cross_attn(sd, cfg, layer, _layer_norm(x, cfg.eps, sd[p + "norm3.weight"], sd[p + "norm3.bias"]),
                       text_k, text_v, caption_of_frame)
    hidden = _gelu_tanh(_linear(sd, p + "ffn.0", _layer_norm(x, cfg.eps) * (1 + e[4]) + e[3]))
    x = x + _linear(sd, p + "ffn.2", hidden) * e[5]
    return x


def head_forward(sd: dict, cfg: DiTConfig, x: torch.Tensor, e: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """LN(x)*(1+m1)+m0 with m = head.modulation + e (the time embedding, not the projection); Linear; unpatchify."""
    m = sd["head.modulation"] + e[:, None, :]  # [1, 2, dim] + [F, 1, dim] -> [F, 2, dim]
    y = _layer_norm(x, cfg.eps) * (1 + m[:, 1:2, :]) + m[:, 0:1, :]
    return unpatchify(cfg, _linear(sd, "head.head", y), gh, gw)


def _o_proj(sd: dict, layer: int, y: torch.Tensor) -> torch.Tensor:
    return _linear(sd, f"blocks.{layer}.self_attn.o", y)


# =============================================================================================
# 6. Path A: one full-sequence forward with a frame-level mask
# =============================================================================================

def naive_dit_forward(sd: dict, cfg: DiTConfig, latents: torch.Tensor, timesteps: Sequence[float] | torch.Tensor,
                      positions: Sequence[int], flags: Sequence[int], text: torch.Tensor,
                      caption_of_frame: Sequence[int] | None = None,
                      attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Flow prediction [F, C, h, w] for all frames at once.

    latents [F, C, h, w]; timesteps [F] (one per frame); positions [F] (temporal RoPE positions);
    flags [F] (shot flags, phase flag/6 on temporal RoPE); text [n_captions, L, text_dim];
    caption_of_frame [F] index into text per frame (None = text[0] for every frame);
    attn_mask bool [F, F] frame-level, True = query frame may attend key frame (None = all).
    """
    x, gh, gw = patch_embed(sd, cfg, latents)
    frames, tokens = x.shape[:2]
    timesteps = torch.as_tensor(timesteps, dtype=torch.float32).reshape(-1)
    if not (len(timesteps) == len(positions) == len(flags) == frames):
        raise ValueError("timesteps, positions and flags need one entry per latent frame")
    captions = [0] * frames if caption_of_frame is None else [int(c) for c in caption_of_frame]

    e, e6 = time_embeddings(sd, cfg, timesteps)
    text_emb = text_embedding(sd, cfg, text)
    angles = rope_angles(cfg.head_dim, positions, flags, gh, gw)
    token_mask = None
    if attn_mask is not None:
        token_mask = attn_mask.bool().repeat_interleave(tokens, dim=0).repeat_interleave(tokens, dim=1)

    for layer in range(cfg.num_layers):
        def masked_self_attention(h: torch.Tensor, layer: int = layer) -> torch.Tensor:
            q, k, v = self_attn_qkv(sd, cfg, layer, h.reshape(frames * tokens, cfg.dim), angles)
            y = attention(q, k, v, token_mask).reshape(frames, tokens, cfg.dim)
            return _o_proj(sd, layer, y)

        text_k, text_v = cross_attn_kv(sd, cfg, layer, text_emb)
        x = block_forward(sd, cfg, layer, x, e6, masked_self_attention, text_k, text_v, captions)
    return head_forward(sd, cfg, x, e, gh, gw)


# =============================================================================================
# 7. Path B: the reference's cached streaming path (spec sections 2, 2.4)
# =============================================================================================

def _new_shot_caches(sd: dict, cfg: DiTConfig, text: torch.Tensor) -> dict:
    """Fresh per-shot caches: context K/V and local K/V slots per layer (filled later), text K/V per layer."""
    text_emb = text_embedding(sd, cfg, text)
    text_kv = [cross_attn_kv(sd, cfg, layer, text_emb) for layer in range(cfg.num_layers)]
    return {
        "context": [None] * cfg.num_layers,  # per layer (k, v), each [context_tokens, H, D], post-RoPE
        "local": [[] for _ in range(cfg.num_layers)],  # per layer: list over chunk slots of (k, v)
        "text": text_kv,
    }


def _fill_context(sd: dict, cfg: DiTConfig, caches: dict, latents: torch.Tensor, flags: Sequence[int],
                  captions: Sequence[int]) -> torch.Tensor:
    """Context forward at t=0, positions 0..n-1: frames attend only among themselves; store K/V per layer.

    Returns the (discarded by the pipeline) flow prediction.
    """
    x, gh, gw = patch_embed(sd, cfg, latents)
    frames, tokens = x.shape[:2]
    e, e6 = time_embeddings(sd, cfg, torch.zeros(frames))
    angles = rope_angles(cfg.head_dim, range(frames), flags, gh, gw)

    for layer in range(cfg.num_layers):
        def context_self_attention(h: torch.Tensor, layer: int = layer) -> torch.Tensor:
            q, k, v = self_attn_qkv(sd, cfg, layer, h.reshape(frames * tokens, cfg.dim), angles)
            caches["context"][layer] = (k.clone(), v.clone())
            y = attention(q, k, v).reshape(frames, tokens, cfg.dim)
            return _o_proj(sd, layer, y)

        text_k, text_v = caches["text"][layer]
        x = block_forward(sd, cfg, layer, x, e6, context_self_attention, text_k, text_v, captions)
    return head_forward(sd, cfg, x, e, gh, gw)


def _chunk_forward(sd: dict, cfg: DiTConfig, caches: dict, latents: torch.Tensor, t: float, chunk: int,
                   start_position: int, flags: Sequence[int], captions: Sequence[int]) -> torch.Tensor:
    """One generator forward for chunk ``chunk`` (latents [3, C, h, w], all frames at timestep t).

    Keys/values per layer = concat(context K/V, local slots 0..chunk-1, this forward's own K/V);
    no mask. After the forward (as the reference's deferred cache update) this forward's K/V are
    written into local slot ``chunk``, replacing whatever an earlier forward of the same chunk wrote.
    """
    x, gh, gw = patch_embed(sd, cfg, latents)
    frames, tokens = x.shape[:2]
    e, e6 = time_embeddings(sd, cfg, torch.full((frames,), float(t)))
    angles = rope_angles(cfg.head_dim, range(start_position, start_position + frames), flags, gh, gw)
    written: list[tuple[torch.Tensor, torch.Tensor]] = []

    for layer in range(cfg.num_layers):
        def cached_self_attention(h: torch.Tensor, layer: int = layer) -> torch.Tensor:
            q, k, v = self_attn_qkv(sd, cfg, layer, h.reshape(frames * tokens, cfg.dim), angles)
            context_k, context_v = caches["context"][layer]
            earlier = caches["local"][layer][:chunk]
            keys = torch.cat([context_k.clone()] + [kk.clone() for kk, _ in earlier] + [k], dim=0)
            values = torch.cat([context_v.clone()] + [vv.clone() for _, vv in earlier] + [v], dim=0)
            written.append((k.clone(), v.clone()))
            y = attention(q, keys, values).reshape(frames, tokens, cfg.dim)
            return _o_proj(sd, layer, y)

        text_k, text_v = caches["text"][layer]
        x = block_forward(sd, cfg, layer, x, e6, cached_self_attention, text_k, text_v, captions)

    for layer, kv in enumerate(written):  # commit after all blocks ran
        slots = caches["local"][layer]
        if len(slots) == chunk:
            slots.append(kv)
        elif len(slots) > chunk:
            slots[chunk] = kv
        else:
            raise RuntimeError(f"chunk {chunk} written before chunk {len(slots)}")
    return head_forward(sd, cfg, x, e, gh, gw)


def naive_story(sd: dict, cfg: ModelConfig, prompt_embeds: Sequence[torch.Tensor], noises: Sequence[dict],
                chunks_per_shot: Sequence[int],
                encode_frame: Callable[[torch.Tensor], torch.Tensor],
                decode_shot: Callable[[torch.Tensor], torch.Tensor]) -> list[dict]:
    """Generate a story shot by shot, reference style. Returns one dict per shot with:

    * ``latents`` [3*chunks, C, h, w]: the x0 outputs; ``frames``: ``decode_shot(latents)`` (in [-1, 1]);
    * ``context_latents`` [6, C, h, w], ``context_flags`` (list of 6 ints), ``gen_flag`` (int),
      ``history`` (the (shot, frame) picks), ``text`` (the [k+1, L, text_dim] captions used);
    * ``chunk_steps``: per chunk, per denoising step, ``{"t", "x_t", "x0"}`` (the model input and its x0).

    prompt_embeds[k] [L, text_dim] is the embedding of prompt k; noises[k] has ``initial``
    [3*chunks, C, h, w] and ``renoise`` [chunks, steps-1, 3, C, h, w] (renoise[b, i] = the fresh eps used
    after step i of chunk b). encode_frame maps one decoded frame [3, H, W] to one latent [C, h, w].
    """
    dit, stream = cfg.dit, cfg.stream
    dtype = _dtype(sd)
    n_ctx, per_chunk = stream.context_frames, stream.frames_per_chunk
    shift, n_train = stream.timestep_shift, stream.num_train_timesteps
    step_ts, _ = warped_timesteps(shift, stream.denoising_steps, n_train)
    step_ts = [float(t) for t in step_ts]
    results: list[dict] = []

    for k, num_chunks in enumerate(chunks_per_shot):
        initial = noises[k]["initial"].to(dtype)
        fresh = noises[k]["renoise"].to(dtype)
        if initial.shape[0] < per_chunk * num_chunks or fresh.shape[0] < num_chunks:
            raise ValueError(f"shot {k}: not enough noise for {num_chunks} chunks")

        # 1. History frames -> context latents and flags; generated frames get last flag + 1.
        picks, context_flags = history_plan([r["frames"].shape[0] for r in results], n_ctx)
        if k == 0:
            context_latents = torch.zeros((n_ctx, *initial.shape[1:]), dtype=dtype)
        else:
            context_latents = torch.stack([encode_frame(results[s]["frames"][f]) for s, f in picks]).to(dtype)
        gen_flag = context_flags[-1] + 1

        # 2. Captions 0..k; with more than one, each frame reads the caption of its shot flag.
        text = torch.stack([prompt_embeds[i] for i in range(k + 1)])

        def route(flags: Sequence[int]) -> list[int]:
            return [int(s) for s in flags] if text.shape[0] > 1 else [0] * len(flags)

        # 3. Fresh caches, context fill at t=0 (positions 0..n_ctx-1).
        caches = _new_shot_caches(sd, dit, text)
        _fill_context(sd, dit, caches, context_latents, context_flags, route(context_flags))

        # 4. Chunks: few-step x0 prediction with re-noising, then a clean pass at t=0 for the cache.
        outputs, chunk_steps = [], []
        for b in range(num_chunks):
            flags = [gen_flag] * per_chunk
            start = n_ctx + per_chunk * b
            x = initial[per_chunk * b: per_chunk * (b + 1)]
            steps = []
            for i, t in enumerate(step_ts):
                flow = _chunk_forward(sd, dit, caches, x, t, b, start, flags, route(flags))
                x0 = flow_to_x0(x, flow, t, shift, n_train)
                steps.append({"t": t, "x_t": x, "x0": x0})
                if i < len(step_ts) - 1:
                    x = renoise(x0, fresh[b, i], step_ts[i + 1], shift, n_train)
            outputs.append(x0)
            chunk_steps.append(steps)
            _chunk_forward(sd, dit, caches, x0, 0.0, b, start, flags, route(flags))

        latents = torch.cat(outputs)
        results.append({
            "latents": latents,
            "frames": decode_shot(latents),
            "context_latents": context_latents,
            "context_flags": context_flags,
            "gen_flag": gen_flag,
            "history": picks,
            "text": text,
            "chunk_steps": chunk_steps,
        })
    return results


# =============================================================================================
# 8. Test helpers: state-dict shapes and a random tiny model
# =============================================================================================

def state_dict_shapes(cfg: DiTConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the Wan2.1 T2V DiT with its shape (original key names)."""
    d, f = cfg.dim, cfg.ffn_dim
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embedding.weight": (d, cfg.in_dim, *cfg.patch_size),
        "patch_embedding.bias": (d,),
        "text_embedding.0.weight": (d, cfg.text_dim), "text_embedding.0.bias": (d,),
        "text_embedding.2.weight": (d, d), "text_embedding.2.bias": (d,),
        "time_embedding.0.weight": (d, cfg.freq_dim), "time_embedding.0.bias": (d,),
        "time_embedding.2.weight": (d, d), "time_embedding.2.bias": (d,),
        "time_projection.1.weight": (6 * d, d), "time_projection.1.bias": (6 * d,),
        "head.head.weight": (cfg.out_dim * math.prod(cfg.patch_size), d),
        "head.head.bias": (cfg.out_dim * math.prod(cfg.patch_size),),
        "head.modulation": (1, 2, d),
    }
    for n in range(cfg.num_layers):
        p = f"blocks.{n}."
        shapes[p + "modulation"] = (1, 6, d)
        for attn in ("self_attn", "cross_attn"):
            for proj in "qkvo":
                shapes[f"{p}{attn}.{proj}.weight"] = (d, d)
                shapes[f"{p}{attn}.{proj}.bias"] = (d,)
            shapes[f"{p}{attn}.norm_q.weight"] = (d,)
            shapes[f"{p}{attn}.norm_k.weight"] = (d,)
        shapes[p + "norm3.weight"] = (d,)
        shapes[p + "norm3.bias"] = (d,)
        shapes[p + "ffn.0.weight"] = (f, d)
        shapes[p + "ffn.0.bias"] = (f,)
        shapes[p + "ffn.2.weight"] = (d, f)
        shapes[p + "ffn.2.bias"] = (d,)
    return shapes


def random_state_dict(cfg: DiTConfig, seed: int = 0, std: float = 0.05,
                      dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random weights that keep activations sane: linear weights/biases ~ N(0, std), norm weights
    ~ 1 + N(0, 0.1), modulations ~ N(0, 1/dim) (Wan's init scale).

    std 0.05 (rather than 0.02) on the tiny model keeps x0 of order 1 while making attention matter:
    dropping the causal mask or the caption routing moves x0 by ~1e-3..1e-2 instead of ~1e-4, far
    above float32 round-off (~3e-7), so parity tests built on it can tell right from wrong.
    """
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in state_dict_shapes(cfg).items():
        noise = torch.randn(shape, generator=gen, dtype=torch.float64)
        if name.endswith("modulation"):
            value = noise / math.sqrt(cfg.dim)
        elif ".norm_" in name or name.endswith("norm3.weight"):
            value = 1.0 + 0.1 * noise
        else:
            value = std * noise
        sd[name] = value.to(dtype)
    return sd
