"""What the GPU worker runs next, across sessions: the policy half of the worker (vLLM's scheduler/worker split).

The unit of work is one DiT forward, not a chunk, so a fresh cue waits for at most one forward of
another story, never a whole chunk (5 forwards plus a decode). Priorities:

1. ``START_SHOT``: a cue is due (the session is idle, or it cut its shot): oldest cue first. It
   pays only the prompt's text encode; the shot's history and context were prepared ahead.
2. ``FORWARD``: the next forward of some session's chunk, round-robin across sessions.
3. ``PREPARE``: a session whose shot has finished denoising runs the next shot's
   prompt-independent setup (history encode, context fill), so its next cue starts at once.

``RESTORE`` (a story continued from a snapshot or a fork) and ``SNAPSHOT`` (a story's state at its
boundary, for its client or a fork) change a session's story between shots; they rank with
``START_SHOT`` (oldest first), and a session offers them before its next shot.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol


class Unit(enum.Enum):
    RESTORE = "restore"
    SNAPSHOT = "snapshot"
    START_SHOT = "start_shot"
    FORWARD = "forward"
    PREPARE = "prepare"


_BETWEEN_SHOTS = (Unit.RESTORE, Unit.SNAPSHOT, Unit.START_SHOT)


class Schedulable(Protocol):
    def next_unit(self) -> tuple[Unit, float] | None:
        """The unit this session can run now and since when it has been waiting (monotonic seconds)."""


class Scheduler:
    def __init__(self) -> None:
        self._next = 0  # round-robin position

    def pick(self, sessions: Sequence[Schedulable]) -> tuple[Schedulable, Unit] | None:
        units = [s.next_unit() for s in sessions]
        starts = [(u[1], i) for i, u in enumerate(units) if u is not None and u[0] in _BETWEEN_SHOTS]
        if starts:
            i = min(starts)[1]
            return sessions[i], units[i][0]
        n = len(sessions)
        for kind in (Unit.FORWARD, Unit.PREPARE):
            for i in range(n):
                j = (self._next + i) % n
                if units[j] is not None and units[j][0] is kind:
                    self._next = (j + 1) % n
                    return sessions[j], kind
        return None
