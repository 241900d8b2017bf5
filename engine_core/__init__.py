"""ShotStream causal multi-shot text-to-video inference: pure compute, no networking.

Typical use::

    engine = ShotStreamEngine.load()              # tiny random default; pass weights= for the real model
    story = engine.open_story("A rainy neon city at night.", seed=7)
    story.start_shot("A detective steps out of a taxi.", num_chunks=7)
    while story.shot_in_progress:
        chunk = story.step()                      # chunk.frames: uint8 [n, H, W, 3]

Names are imported lazily, so ``import engine_core.config`` stays free of torch/diffusers imports
for callers (the service's control plane, tests) that only need the configuration.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TINY": "config", "WAN_1_3B": "config", "ModelConfig": "config", "get_config": "config",
    "RANDOM_LABEL": "engine", "ShotStreamEngine": "engine",
    "ChunkResult": "story", "ShotInfo": "story", "ShotNoise": "story", "Story": "story",
    "SnapshotError": "snapshot", "StorySnapshot": "snapshot",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'engine_core' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
