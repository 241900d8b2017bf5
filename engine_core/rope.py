"""3-axis rotary position embedding with ShotStream's per-shot phase (the RoPE discontinuity indicator).

A token at temporal position ``p`` in a frame with shot flag ``s`` gets temporal angles
``p * omega_j + s * phase`` on every temporal pair ``j`` (phase = 1/6 rad), plus the usual
height/width angles. Angles are built in float64 exactly like the reference (``rope_params_angle``)
and only then turned into cos/sin, so positions and flags lose no precision.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from .transfer import upload


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Real dims per axis (t, h, w): Wan splits 128 as 44/42/42, i.e. 22/21/21 rotation pairs."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def angle_table(max_positions: int, dim: int, theta: float = 10000.0) -> torch.Tensor:
    """``[max_positions, dim // 2]`` float64 angles ``p * theta^(-2j/dim)``."""
    inv = 1.0 / torch.pow(theta, torch.arange(0, dim, 2).to(torch.float64).div(dim))
    return torch.outer(torch.arange(max_positions).to(torch.float64), inv)


class RotaryEmbedding:
    """Builds (and memoises) cos/sin tables for a run of frames at given positions and shot flags."""

    def __init__(self, head_dim: int, shot_phase: float, max_positions: int = 1024, cache_size: int = 64):
        t, h, w = axis_dims(head_dim)
        self.tables = (angle_table(max_positions, t), angle_table(max_positions, h), angle_table(max_positions, w))
        self.shot_phase = shot_phase
        self.max_positions = max_positions
        self._memo: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._cache_size = cache_size

    def angles(self, start: int, flags: Sequence[int], height: int, width: int) -> torch.Tensor:
        """float64 ``[F*height*width, head_dim // 2]`` angles for frames at positions start.. with ``flags``."""
        frames = len(flags)
        if start < 0 or start + frames > self.max_positions or max(height, width) > self.max_positions:
            raise ValueError(f"RoPE positions {start}..{start + frames} exceed the table ({self.max_positions})")
        tt, th, tw = self.tables
        flag = torch.tensor([float(f) for f in flags], dtype=torch.float64)
        temporal = tt[start:start + frames] + flag[:, None] * self.shot_phase
        grid = torch.cat([
            temporal.view(frames, 1, 1, -1).expand(frames, height, width, -1),
            th[:height].view(1, height, 1, -1).expand(frames, height, width, -1),
            tw[:width].view(1, 1, width, -1).expand(frames, height, width, -1),
        ], dim=-1)
        return grid.reshape(frames * height * width, -1)

    def cos_sin(self, start: int, flags: Sequence[int], height: int, width: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 ``[L, 1, head_dim // 2]`` cos and sin on ``device``; memoised per geometry."""
        key = (start, tuple(int(f) for f in flags), height, width, str(device))
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
            return hit
        ang = self.angles(start, flags, height, width)
        out = (upload(ang.cos().float().unsqueeze(1), device), upload(ang.sin().float().unsqueeze(1), device))
        self._memo[key] = out
        if len(self._memo) > self._cache_size:
            self._memo.popitem(last=False)
        return out


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs ``(x[2j], x[2j+1])`` of ``x [B, L, H, D]``; computed in fp32, returned in x's dtype."""
    pairs = x.float().unflatten(-1, (-1, 2))
    real, imag = pairs[..., 0], pairs[..., 1]
    out = torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)
