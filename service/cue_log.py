"""A session's cue log: every cue that became a shot, with the chunks that shot made.

A cut after k chunks makes exactly the frames of a k-chunk shot (same noise, same cache passes), so
the log is all a replay needs: RenderStory (``RenderStoryRequest.cue_log``) or ``shotstream story
--cue-log`` renders each finished entry as a shot of ``chunks`` chunks and gets the live session's
frames, whatever the timing of the cuts was. The log keeps the last ``max_cue_log_shots`` shots
(older entries are dropped and counted) and is read in pages that fit the session's outbox.
"""

from __future__ import annotations

from collections import deque

from .protocol import pb


class CueLogBook:
    """Kept by the session; written on the GPU worker thread, read on the loop thread (the session's lock)."""

    def __init__(self, global_caption: str, seed: int, decoder: int, max_shots: int):
        self._head = pb.CueLog(global_caption=global_caption, seed=seed, decoder=decoder)
        self._entries: deque[pb.CueLogEntry] = deque()
        self._max = max_shots

    def restored(self, next_shot_index: int) -> None:
        """The session continues a snapshot: its log starts at that story's next shot."""
        self._head.first_shot_index = next_shot_index

    def started(self, cue: pb.Cue, shot_index: int) -> pb.CueLogEntry:
        """A cue became shot ``shot_index``; the returned entry is updated as the shot goes on."""
        entry = pb.CueLogEntry(cue=cue, shot_index=shot_index)
        self._entries.append(entry)
        if len(self._entries) > self._max:
            self._entries.popleft()
            self._head.dropped_shots += 1
        return entry

    def page(self, from_shot: int, max_bytes: int) -> pb.CueLog:
        """The entries from shot ``from_shot`` on, as many as fit in ``max_bytes`` (at least one);
        ``next_shot`` says where the next page starts (0: this is the last)."""
        page = pb.CueLog()
        page.CopyFrom(self._head)
        size = page.ByteSize()
        for entry in self._entries:
            if entry.shot_index < from_shot:
                continue
            size += entry.ByteSize() + 8
            if size > max_bytes and page.entries:
                page.next_shot = entry.shot_index
                break
            page.entries.append(entry)
        return page


def replay_shots(log: pb.CueLog) -> list[tuple[str, int]]:
    """``(prompt, chunks)`` of each finished shot of ``log``: the story a replay renders."""
    return [(e.cue.prompt, e.chunks) for e in log.entries if e.finished and e.chunks > 0]
