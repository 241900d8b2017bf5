"""A session that survives its server: :class:`ResumingSession` (``client.open_resuming_session``).

Behind a proxy (``deploy/haproxy.cfg``) a session lives on one server. When that server goes away
(killed, crashed, drained, shut down), the session opens a new one through the same address, which
the proxy places on a server that has room, and continues the story from the snapshot of its last
shot boundary: it asks for one (``wait_for_boundary``) as every shot starts, so the server takes it
when that shot ends. Then it cues again, in order, what the new server must play: the shot that was
in progress (its frames come again from its first chunk: the story loses at most that shot's
progress), and the cues still queued. A story is deterministic, so the frames after the restore are
those an uninterrupted session would have shown. Without a snapshot yet (the first shot), it opens a
new story with the same caption and seed and says so. A :class:`Resumed` event marks each move.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from .events import Event, SessionInfo, ShotFinished, ShotStarted, ShotStreamError, SnapshotReady

if TYPE_CHECKING:
    from .client import Session, ShotStreamClient

# How a session ends when its server (not the client) went away: worth a new session elsewhere.
SERVER_GONE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
                               grpc.StatusCode.INTERNAL})
SERVER_GONE_REASONS = frozenset({"server draining", "server shutdown", "stream ended"})
RETRY_DELAYS_S = (0.0, 0.5, 1.0, 2.0, 4.0)  # between attempts to open the new session


@dataclass(frozen=True)
class Resumed:
    """The story moved to a new session (``session_id``), probably on another server."""

    session_id: str
    reason: str  # why the old session ended, e.g. "server draining" or "UNAVAILABLE: ..."
    from_snapshot: bool  # False: there was no snapshot yet, so this is a new story (same caption and seed)
    next_shot_index: int  # the shot the story continues with (the first cue sent again)
    recued: tuple[str, ...]  # the event ids cued again, in order


@dataclass
class _Cue:
    event_id: str
    prompt: str
    num_chunks: int
    mode: str
    tags: tuple[str, ...]
    at_chunk: int
    shot_index: int | None = None  # set once it became a shot
    chunks: int | None = None  # set once that shot finished: the chunks it made
    dropped: bool = False  # a later cut dropped it before it started
    replay: bool = False  # sent again as the replay of a shot that had started, and not started since

    def send_again(self) -> dict[str, Any]:
        """The cue to send to a new session, which becomes this record: a shot that already ended is replayed
        as a shot of the chunks it made (a cut after k chunks makes exactly a k-chunk shot's frames); one that
        had started plays from its start; one still queued goes as it was."""
        if self.chunks is not None:
            self.num_chunks = self.chunks
        if self.shot_index is not None:
            self.mode, self.at_chunk, self.replay = "wait", 0, True
        self.shot_index = self.chunks = None
        return dict(prompt=self.prompt, num_chunks=self.num_chunks, mode=self.mode, event_id=self.event_id,
                    tags=self.tags, at_chunk=self.at_chunk)


@dataclass
class _Story:
    """What the client knows of its story: the cues, and its last snapshot."""

    cues: list[_Cue] = field(default_factory=list)
    snapshot: bytes | None = None
    snapshot_next: int = 0  # the shot the snapshot continues with

    def to_recue(self) -> list[_Cue]:
        """The cues a new session must get, in order."""
        first = self.snapshot_next if self.snapshot is not None else None
        out = []
        for cue in self.cues:
            if cue.dropped:
                continue
            if cue.shot_index is None:
                out.append(cue)
            elif first is not None and cue.shot_index >= first:
                out.append(cue)
            elif first is None and cue.chunks is None:  # no snapshot: a new story from the shot in progress
                out.append(cue)
        return out


class ResumingSession:
    """An interactive session that moves to a new server when its own goes away (see the module docstring).

    Use it like :class:`~service.sdk.Session` (``cue``, iteration, ``close``); iterate from one thread.
    ``max_resumes``: moves in a row that may fail before the error is raised (a move that plays a chunk
    counts as a success). Pause state is not carried over: a moved session plays.
    """

    def __init__(self, client: ShotStreamClient, open_args: dict[str, Any], max_resumes: int = 3):
        self._client = client
        self._open_args = open_args
        self._story = _Story(snapshot=open_args.pop("snapshot", None))
        self._max_resumes = max_resumes
        self._failures = 0
        self._closing = False
        self._held: list[_Cue] = []  # cues sent once the last replayed shot has started (see _resume)
        self._release_on: str | None = None  # that shot's event id
        self.resumes = 0
        self._session: Session = self._open()

    def _open(self) -> Session:
        if self._story.snapshot is not None:
            args = {k: v for k, v in self._open_args.items() if k not in ("global_caption", "seed")}
            return self._client.open_session(snapshot=self._story.snapshot, **args)
        return self._client.open_session(**self._open_args)

    @property
    def info(self) -> SessionInfo:
        return self._session.info

    @property
    def session_id(self) -> str:
        return self._session.session_id

    def cue(self, prompt: str, num_chunks: int = 0, mode: str = "wait", event_id: str | None = None,
            tags: tuple[str, ...] | list[str] = (), at_chunk: int = 0) -> str:
        """As :meth:`Session.cue`; the cue is remembered until its shot has a snapshot after it. A cue given
        while the server is gone (before iteration has noticed) is sent to the next session."""
        event_id = event_id if event_id is not None else uuid.uuid4().hex[:12]
        cue = _Cue(event_id, prompt, num_chunks, mode, tuple(tags), at_chunk)
        replaying = any(c.replay for c in self._story.cues)
        if self._held or (mode == "cut" and replaying):  # a cut must not drop a replay that has not started
            self._held.append(cue)
        else:
            try:
                self._session.cue(prompt, num_chunks, mode, event_id, tags, at_chunk)
            except ShotStreamError:
                if not self._session.closed or self._closing:
                    raise
        if mode == "cut":
            for queued in self._story.cues:
                if queued.shot_index is None and not queued.replay:
                    queued.dropped = True  # the server drops queued cues on a cut
        self._story.cues.append(cue)
        return event_id

    def pause(self) -> None:
        self._session.pause()

    def resume(self) -> None:
        self._session.resume()

    def __iter__(self):
        while True:
            ev = self.next_event()
            if ev is None:
                return
            yield ev

    def next_event(self) -> Event | Resumed | None:
        """The next event (a :class:`Resumed` when the story moved); None once the session has closed."""
        try:
            ev = self._session.next_event()
        except ShotStreamError as exc:
            if self._closing or exc.code not in SERVER_GONE_CODES:
                raise
            return self._resume(f"{exc.code.name}: {exc.message}")
        if ev is None:
            reason = self._session.close_reason or "stream ended"
            if self._closing or reason not in SERVER_GONE_REASONS:
                return None
            return self._resume(reason)
        self._track(ev)
        return ev

    def _track(self, ev: Event) -> None:
        story = self._story
        if isinstance(ev, ShotStarted):
            self._failures = 0
            for cue in story.cues:
                if cue.event_id == ev.event_id and cue.chunks is None and not cue.dropped:
                    cue.shot_index, cue.replay = ev.shot_index, False
                    break
            if self._held and ev.event_id == self._release_on:
                held, self._held = self._held, []
                for cue in held:
                    self._session.cue(**cue.send_again())
            # the state at this shot's end, before the next starts: where a move continues from
            self._session.request_snapshot(wait_for_boundary=True)
        elif isinstance(ev, ShotFinished):
            for cue in story.cues:
                if cue.event_id == ev.event_id and cue.shot_index == ev.shot_index:
                    cue.chunks = ev.chunks
        elif isinstance(ev, SnapshotReady):
            story.snapshot, story.snapshot_next = ev.data, ev.next_shot_index

    def _resume(self, reason: str) -> Resumed:
        """Open a new session through the same address and cue again what it must play."""
        self._session.close(timeout=1.0)
        last: ShotStreamError | None = None
        for delay in RETRY_DELAYS_S:
            self._failures += 1
            if self._failures > self._max_resumes:
                break
            time.sleep(delay)  # give the proxy's health checks time to take the dead server out
            try:
                self._session = self._open()
                break
            except ShotStreamError as exc:
                if exc.code not in SERVER_GONE_CODES and exc.code != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                last = exc
        else:
            raise last or ShotStreamError(grpc.StatusCode.UNAVAILABLE, f"could not resume the story: {reason}")
        if self._session.closed or self._failures > self._max_resumes:
            raise ShotStreamError(grpc.StatusCode.UNAVAILABLE, f"the story could not move after {reason}: "
                                                               f"{last.message if last else 'no server'}")
        self.resumes += 1
        story = self._story
        recue = story.to_recue()
        # A cue sent again that had not started yet keeps its mode; a cut among them would drop the replayed
        # shot before it starts on the new server, so it and what follows wait for that shot's ShotStarted.
        # (a replay sent by an earlier move that has not started yet is still one: a second move keeps the cut back)
        replayed = [c for c in recue if c.shot_index is not None or c.replay]
        self._release_on = replayed[-1].event_id if replayed else None
        self._held = []
        for cue in recue:
            if replayed and cue not in replayed and (self._held or cue.mode == "cut"):
                self._held.append(cue)
            else:
                self._session.cue(**cue.send_again())
        if story.snapshot is None:  # a new story: its shots count from 0 again
            for cue in story.cues:
                if cue not in recue:
                    cue.dropped = True
        return Resumed(session_id=self._session.session_id, reason=reason, from_snapshot=story.snapshot is not None,
                       next_shot_index=story.snapshot_next if story.snapshot is not None else 0,
                       recued=tuple(c.event_id for c in recue))

    def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        self._session.close(timeout)

    @property
    def closed(self) -> bool:
        return self._session.closed

    def __enter__(self) -> ResumingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
