"""Measured generation throughput, for admitting only the sessions the GPU can keep at real time.

Memory is not the only limit: two stories fit in an H100's memory many times over, but each needs
16 frames a second. The worker records how long it was busy and how many frames it delivered; the
registry refuses a new session when the measured rate cannot cover one more real-time stream.
"""

from __future__ import annotations

import threading
from collections import deque


class Capacity:
    def __init__(self, window_s: float = 30.0, min_busy_s: float = 2.0):
        self.window_s, self.min_busy_s = window_s, min_busy_s
        self._spans: deque[tuple[float, int]] = deque()  # (busy seconds, frames) per worker step
        self._busy = 0.0
        self._frames = 0
        self._lock = threading.Lock()

    def record(self, busy_s: float, frames: int) -> None:
        """The worker was busy ``busy_s`` seconds and delivered ``frames`` frames (worker thread)."""
        with self._lock:
            self._spans.append((busy_s, frames))
            self._busy += busy_s
            self._frames += frames
            while self._spans and self._busy - self._spans[0][0] >= self.window_s:
                old_s, old_f = self._spans.popleft()
                self._busy -= old_s
                self._frames -= old_f

    def fps(self) -> float | None:
        """Frames per busy second over the last ``window_s`` busy seconds; None until ``min_busy_s`` were seen."""
        with self._lock:
            if self._busy < self.min_busy_s or self._frames == 0:
                return None
            return self._frames / self._busy

    def refuse_reason(self, open_sessions: int, playback_fps: float) -> str | None:
        """Why one more session cannot run at real time, or None when it can (or nothing is measured yet)."""
        fps = self.fps()
        need = (open_sessions + 1) * playback_fps
        if fps is None or fps >= need:
            return None
        return (f"the GPU measured {fps:.1f} frames/s of generation; {open_sessions + 1} sessions at "
                f"{playback_fps:g} fps need {need:g}: close a session or add a GPU (realtime_admission)")
