"""Which decoded frames of earlier shots fill the global context cache (``dynamic_sample_frames``).

Shot ``k`` splits the context slots over the ``k`` previous shots: ``slots // k`` each, the
remainder to the most recent shots; inside a shot, frames at ``round(linspace(first, last, n))``.
From shot 7 on only the 6 most recent shots contribute (one frame each). Shot 0 has no history:
the cache is filled from all-zero latents with flags 0, and its own frames get flag 1 (the
reference's shot-0 quirk: generated frames take ``last context flag + 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def context_counts(num_prev_shots: int, slots: int = 6) -> list[int]:
    """Frames taken from each previous shot, oldest first."""
    if num_prev_shots < 1:
        raise ValueError("context counts need at least one previous shot")
    counts = [slots // num_prev_shots] * num_prev_shots
    for i in range(1, slots % num_prev_shots + 1):
        counts[-i] += 1
    return counts


def frame_indices(num_frames: int, count: int) -> list[int]:
    """``round(linspace(0, num_frames - 1, count))`` as the reference computes it (torch, float32)."""
    if count == 0:
        return []
    return torch.linspace(0, num_frames - 1, steps=count).round().long().tolist()


@dataclass(frozen=True)
class ContextPlan:
    """History for one shot: ``frames[i] = (source shot, frame index in that shot)``, or none for shot 0."""

    frames: tuple[tuple[int, int], ...]
    flags: tuple[int, ...]  # RoPE shot flag (and caption index) of each context frame
    shot_flag: int  # flag of the frames the shot generates


def plan_context(shot_lengths: Sequence[int], slots: int = 6) -> ContextPlan:
    """Plan the context of the next shot given the decoded frame counts of all previous shots."""
    if not shot_lengths:
        flags = (0,) * slots
        return ContextPlan(frames=(), flags=flags, shot_flag=flags[-1] + 1)
    frames: list[tuple[int, int]] = []
    flags_list: list[int] = []
    for shot, (length, count) in enumerate(zip(shot_lengths, context_counts(len(shot_lengths), slots))):
        for idx in frame_indices(length, count):
            frames.append((shot, idx))
            flags_list.append(shot)
    return ContextPlan(frames=tuple(frames), flags=tuple(flags_list), shot_flag=flags_list[-1] + 1)


def frames_to_keep(shot: int, num_frames: int, slots: int = 6) -> set[int]:
    """Every frame index of ``shot`` that any later shot's plan can select (at most ~10)."""
    keep: set[int] = set()
    for later in range(shot + 1, shot + slots + 2):
        keep.update(frame_indices(num_frames, context_counts(later, slots)[shot]))
    return keep
