"""Stage timings without host stalls: CUDA events on the GPU, the host clock on the CPU.

A mark is recorded on the current stream where a stage ends; durations are read only once the
work is known to be done (a chunk's frames are on the host), so measuring never syncs the GPU.
"""

from __future__ import annotations

import time

import torch



class Clock:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self) -> torch.cuda.Event | float:
        if not self.cuda:
            return time.perf_counter()  # CPU work is synchronous: now is when the stage ended
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def ms(self, start: torch.cuda.Event | float, end: torch.cuda.Event | float) -> float:
        """Milliseconds between two marks; call once ``end`` is done (it then returns at once)."""
        if not self.cuda:
            return 1e3 * (end - start)
        end.synchronize()
        return start.elapsed_time(end)
