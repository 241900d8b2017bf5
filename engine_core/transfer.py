"""Host-to-device copies that never stall the host.

A plain ``tensor.to("cuda")`` from pageable memory waits for the GPU's queue to drain before it
copies; on the cue path (prompt tokens, RoPE tables, caller-supplied noise) that stalls the
worker behind other stories' forwards. Staging through pinned memory makes the copy one more
queued operation (torch's caching host allocator keeps the staging buffer alive until it is done).
"""

from __future__ import annotations

import torch


def upload(t: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t`` on ``device`` (and ``dtype``) without a host sync; CPU targets and device tensors copy as usual."""
    if device.type == "cuda" and t.device.type == "cpu":
        t = t if t.is_pinned() else t.pin_memory()
        return t.to(device, dtype, non_blocking=True)
    return t.to(device, dtype)
