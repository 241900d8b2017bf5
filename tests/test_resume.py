"""What a resuming SDK session (service/sdk/resume.py) sends to the next server, with scripted sessions standing
in for servers that go away at chosen moments (the real move through HAProxy, with frames compared, is
tests/test_scaleout.py::test_a_killed_servers_story_moves_to_another_from_its_snapshot)."""

from __future__ import annotations

import grpc
import pytest

from service.sdk import Resumed, ShotFinished, ShotStarted, ShotStreamError, SnapshotReady
from service.sdk.resume import ResumingSession

GONE = ShotStreamError(grpc.StatusCode.UNAVAILABLE, "connection reset")


def started(event_id: str, index: int) -> ShotStarted:
    return ShotStarted(event_id, (), index, 3, 33, 5, 0, 1.0, 0.0)


def finished(event_id: str, index: int, chunks: int, cut: bool = False) -> ShotFinished:
    return ShotFinished(event_id, index, chunks, 9 + 12 * (chunks - 1), cut, 0.0)


class ScriptedSession:
    """A session whose events are a script; an exception in the script is raised (the server went away)."""

    def __init__(self, script: list, opened_with: dict):
        self.script, self.opened_with = list(script), opened_with
        # ("cue", event_id, mode, num_chunks, at_chunk) | ("snapshot",) | ("started", event_id): what went out,
        # and when the client saw each shot start
        self.sent: list[tuple] = []
        self.closed = False
        self.close_reason = None
        self.session_id = f"s{id(self) % 1000}"

    def cue(self, prompt, num_chunks=0, mode="wait", event_id=None, tags=(), at_chunk=0):
        if self.closed:
            raise ShotStreamError(grpc.StatusCode.FAILED_PRECONDITION, "the session is closed")
        self.sent.append(("cue", event_id, mode, num_chunks, at_chunk))
        return event_id

    def request_snapshot(self, wait_for_boundary=True):
        self.sent.append(("snapshot",))

    def next_event(self):
        if not self.script:
            self.closed, self.close_reason = True, "client"
            return None
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            self.closed = True
            raise item
        if isinstance(item, str):  # the server closed the session with this reason
            self.closed, self.close_reason = True, item
            return None
        if isinstance(item, ShotStarted):
            self.sent.append(("started", item.event_id))
        return item

    def close(self, timeout=10.0):
        self.closed = True


class ScriptedClient:
    """Hands out one scripted session per open, in order."""

    def __init__(self, *scripts: list):
        self.scripts = list(scripts)
        self.sessions: list[ScriptedSession] = []

    def open_session(self, **kwargs):
        session = ScriptedSession(self.scripts.pop(0), kwargs)
        self.sessions.append(session)
        return session


def resuming(client: ScriptedClient) -> ResumingSession:
    return ResumingSession(client, dict(global_caption="A harbour.", seed=5, transport="inline"), max_resumes=3)


def drain(session: ResumingSession, on_start: dict | None = None) -> list:
    """Every event; ``on_start[event_id]`` is cued (once) when that shot first starts, as a game would."""
    on_start, events = dict(on_start or {}), []
    for ev in session:
        events.append(ev)
        if isinstance(ev, ShotStarted) and ev.event_id in on_start:
            session.cue(**on_start.pop(ev.event_id))
    return events


def cues(session: ScriptedSession) -> list[tuple]:
    return [s[1:] for s in session.sent if s[0] == "cue"]


def test_a_move_continues_from_the_snapshot_and_replays_the_shot_in_progress(monkeypatch):
    monkeypatch.setattr("service.sdk.resume.RETRY_DELAYS_S", (0.0,) * 5)
    first = [started("a", 0), finished("a", 0, 1), SnapshotReady(b"SNAP1", 1), started("b", 1), GONE]
    second = [started("b", 1), started("d", 2)]
    client = ScriptedClient(first, second)
    s = resuming(client)
    s.cue("shot a", 1, event_id="a")
    s.cue("shot b", 3, event_id="b")
    s.cue("shot c", 2, event_id="c")
    # once b plays: drops c (queued) and cuts b after 2 chunks
    events = drain(s, {"b": dict(prompt="shot d", num_chunks=1, mode="cut", at_chunk=2, event_id="d")})
    (moved,) = [e for e in events if isinstance(e, Resumed)]
    assert moved.from_snapshot and moved.next_shot_index == 1 and moved.recued == ("b", "d")
    assert client.sessions[1].opened_with["snapshot"] == b"SNAP1"
    assert "global_caption" not in client.sessions[1].opened_with  # the snapshot's caption and seed
    # b from its start as WAIT at once; the cut only once b has started there (a cut clears the queue)
    assert cues(client.sessions[1]) == [("b", "wait", 3, 0), ("d", "cut", 1, 2)]
    assert client.sessions[1].sent.index(("cue", "d", "cut", 1, 2)) > client.sessions[1].sent.index(("started", "b"))
    assert s.resumes == 1


def test_a_second_move_before_the_replay_starts_still_holds_the_cut_back(monkeypatch):
    monkeypatch.setattr("service.sdk.resume.RETRY_DELAYS_S", (0.0,) * 5)
    first = [started("a", 0), finished("a", 0, 2), SnapshotReady(b"SNAP1", 1), started("b", 1), GONE]
    second = ["server draining"]  # gone again before b started there
    third = [started("b", 1)]
    client = ScriptedClient(first, second, third)
    s = resuming(client)
    s.cue("shot a", 2, event_id="a")
    s.cue("shot b", 3, event_id="b")
    events = drain(s, {"b": dict(prompt="shot x", num_chunks=1, mode="cut", event_id="x")})
    assert [e.reason for e in events if isinstance(e, Resumed)] == ["UNAVAILABLE: connection reset",
                                                                   "server draining"]
    assert cues(client.sessions[1]) == [("b", "wait", 3, 0)]
    assert cues(client.sessions[2]) == [("b", "wait", 3, 0), ("x", "cut", 1, 0)]
    assert client.sessions[2].sent.index(("cue", "x", "cut", 1, 0)) > client.sessions[2].sent.index(("started", "b"))


def test_a_shot_that_ended_after_the_snapshot_is_replayed_with_the_chunks_it_made(monkeypatch):
    monkeypatch.setattr("service.sdk.resume.RETRY_DELAYS_S", (0.0,) * 5)
    # b was cut after 2 chunks and c started, but the snapshot at b's end never arrived
    first = [started("a", 0), finished("a", 0, 1), SnapshotReady(b"SNAP1", 1), started("b", 1),
             finished("b", 1, 2, cut=True), started("c", 2), GONE]
    client = ScriptedClient(first, [started("b", 1), started("c", 2)])
    s = resuming(client)
    s.cue("shot a", 1, event_id="a")
    s.cue("shot b", 5, event_id="b")
    drain(s, {"b": dict(prompt="shot c", num_chunks=2, mode="cut", event_id="c")})
    assert cues(client.sessions[1]) == [("b", "wait", 2, 0), ("c", "wait", 2, 0)]


def test_without_a_snapshot_a_new_story_starts_and_says_so(monkeypatch):
    monkeypatch.setattr("service.sdk.resume.RETRY_DELAYS_S", (0.0,) * 5)
    client = ScriptedClient([started("a", 0), "server shutdown"], [started("a", 0)])
    s = resuming(client)
    s.cue("shot a", 2, event_id="a")
    s.cue("shot b", 1, event_id="b")
    (moved,) = [e for e in drain(s) if isinstance(e, Resumed)]
    assert not moved.from_snapshot and moved.next_shot_index == 0 and moved.recued == ("a", "b")
    assert client.sessions[1].opened_with["global_caption"] == "A harbour." and client.sessions[1].opened_with["seed"] == 5
    assert cues(client.sessions[1]) == [("a", "wait", 2, 0), ("b", "wait", 1, 0)]


def test_no_move_on_the_clients_own_close_or_its_own_mistake(monkeypatch):
    monkeypatch.setattr("service.sdk.resume.RETRY_DELAYS_S", (0.0,) * 5)
    client = ScriptedClient([started("a", 0)])  # then the session ends with reason "client"
    s = resuming(client)
    s.cue("shot a", 1, event_id="a")
    assert drain(s) == [started("a", 0)] and len(client.sessions) == 1
    bad = ScriptedClient([ShotStreamError(grpc.StatusCode.INVALID_ARGUMENT, "bad")])
    with pytest.raises(ShotStreamError):
        drain(resuming(bad))
    assert len(bad.sessions) == 1


def test_it_gives_up_after_max_resumes(monkeypatch):
    monkeypatch.setattr("service.sdk.resume.RETRY_DELAYS_S", (0.0,) * 5)
    client = ScriptedClient(*[[GONE]] * 5)
    s = resuming(client)
    with pytest.raises(ShotStreamError) as err:
        drain(s)
    assert err.value.code == grpc.StatusCode.UNAVAILABLE and len(client.sessions) <= 4
