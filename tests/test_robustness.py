"""Robustness of the service as a whole: killed clients and servers, fairness and isolation between
sessions, fuzzed input on both doors, and the WebSocket gateway against gRPC on one server.

Real processes where a crash matters (``tests/robustness_helper.py``: a server or an SDK client that
is SIGKILLed), otherwise a real server in this process over the tiny random engine. Every wait is
bounded: state is polled against a deadline (:func:`wait_until`), blocking SDK calls run under
:func:`bounded`, awaited messages under ``asyncio.wait_for``; a hang fails the test, not the suite.
pytest-asyncio is not used: async bodies run under ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import struct
import subprocess
import sys
import threading
import uuid
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from engine_core import TINY, ShotStreamEngine
from service.background import BackgroundServer
from service.gateway import decode_chunk_frame
from service.protocol import PROTOCOL_VERSION, pb, pb_grpc
from service.ring import FrameRing
from service.sdk import Chunk, ShotFinished, ShotStreamClient, ShotStreamError
from service.server import ShotStreamServer
from service.scheduler import Unit
from service.session import Session
from service.settings import ServerSettings
from service_helpers import Direct as BaseDirect
from service_helpers import engine_chunks, serving

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HELPER = HERE / "robustness_helper.py"
CAPTION, SEED = "A lighthouse on a stormy coast.", 5  # the helper's too
H, W = TINY.stream.height, TINY.stream.width
TIMEOUT = 20.0  # per awaited message / blocking call
OK, INVALID, FAILED_PRECONDITION = (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                                    grpc.StatusCode.FAILED_PRECONDITION)
DEFAULTS = ServerSettings()


@pytest.fixture(scope="module")
def engine():
    return ShotStreamEngine.random(TINY, device="cpu", seed=0)


# -- bounded waiting ------------------------------------------------------------------------------


def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting until {what}"
        time.sleep(0.01)


async def await_until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting until {what}"
        await asyncio.sleep(0.01)


def bounded(fn, timeout: float = TIMEOUT):
    """``fn()`` on a daemon thread: its result (or exception), or a failure if it has not returned in time."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} did not return within {timeout:.0f} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def track(registry) -> list[Session]:
    """Every session ``registry`` opens from now on (to check that each one was released)."""
    opened: list[Session] = []
    admit = registry.open
    registry.open = lambda msg, peer: opened.append(admit(msg, peer)) or opened[-1]
    return opened


def pending_outbox_reads(srv: BackgroundServer) -> int:
    """Tasks on the server's loop still waiting on a session's outbox (``Queue.get``): a session loop that
    ended must not leave one behind (it would be destroyed pending, or read a message nobody sends)."""
    async def count() -> int:
        return sum(not t.done() and getattr(t.get_coro(), "__qualname__", "") == "Queue.get"
                   for t in asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), srv._loop).result(TIMEOUT)


def released(server: ShotStreamServer, sessions=()) -> bool:
    """No session open or scheduled, and every one of ``sessions`` freed: story caches and ring file."""
    return (not server.registry.sessions and server.worker.sessions == 0
            and all(s.story.closed and (s.ring is None or s.ring.closed) for s in sessions))


# -- child processes ------------------------------------------------------------------------------


@contextlib.contextmanager
def child(*args: str):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.Popen([sys.executable, str(HELPER), *args], cwd=REPO, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()


def first_line(proc: subprocess.Popen, timeout: float) -> dict:
    """The JSON line a helper prints once it is ready (bounded: readline runs on a daemon thread)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"helper {proc.args[2:]} printed nothing within {timeout:.0f} s") from None
    assert line, f"helper {proc.args[2:]} exited with {proc.wait(10)} before it was ready"
    return json.loads(line)


def killed(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL


# -- gRPC Direct, step by step --------------------------------------------------------------------


class Direct(BaseDirect):
    open_defaults = {"client_name": "robust", "global_caption": CAPTION, "seed": SEED}
    close_skips_to_closed = True


def frames_of(chunk: pb.FrameChunk, pixels: bytes | None = None) -> np.ndarray:
    channels = 4 if chunk.frame_format == pb.FRAME_FORMAT_RGBA8 else 3
    data = chunk.pixels if pixels is None else pixels
    return np.frombuffer(data, np.uint8).reshape(chunk.num_frames, chunk.height, chunk.width, channels)


def record_units(monkeypatch, gate: threading.Event | None = None) -> tuple[list[str], list[tuple[str, Unit]]]:
    """The session id of every chunk the GPU worker sends, in order, and every unit it runs
    (``Session._send_chunk`` and ``Session.run`` wrapped); with ``gate``, units wait until it is set."""
    order: list[str] = []
    units: list[tuple[str, Unit]] = []
    run, send_chunk = Session.run, Session._send_chunk

    def recorded_run(self, unit):
        units.append((self.id, unit))
        if gate is not None:
            assert gate.wait(TIMEOUT), "the test never opened the gate"
        return run(self, unit)

    def recorded_send(self, chunk):
        order.append(self.id)
        return send_chunk(self, chunk)

    monkeypatch.setattr(Session, "run", recorded_run)
    monkeypatch.setattr(Session, "_send_chunk", recorded_send)
    return order, units


# -- 1. a killed client ---------------------------------------------------------------------------


def test_client_killed_mid_stream_frees_its_session_ring_and_story(engine, tmp_path):
    settings_ = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, ring_dir=tmp_path)
    with BackgroundServer(engine, settings_, grace=2.0) as srv:
        server = srv.server
        opened = track(server.registry)
        with child("client", srv.address, str(tmp_path)) as proc:
            hello = first_line(proc, 30)
            session = server.registry.sessions[hello["session_id"]]
            ring = Path(hello["ring_path"])
            assert hello["chunk_seq"] == 1 and ring.parent == tmp_path and ring.exists()
            assert session.transport == pb.TRANSPORT_SHARED_MEMORY and session.client_name == "doomed"
            # The client took (and acked) chunk 1; the server fills both credits: chunks 2 and 3 sit unacked.
            wait_until(lambda: session.counters.chunks == 3 and session.stats().chunks_in_flight == 2,
                       "chunks 2 and 3 are in flight", timeout=20)
            assert session.next_unit() is None and not session.story.closed and not session.ring.closed
            killed(proc)
        wait_until(lambda: released(server, opened), "the killed client's session is freed")
        assert opened == [session]
        assert not hasattr(session.story, "cache")  # the KV cache went with the story
        assert not ring.exists() and not any(tmp_path.iterdir())
        wait_until(lambda: pending_outbox_reads(srv) == 0, "the session loop has left nothing pending")

        # The server goes on serving: a new shared-memory session gets the right frames.
        shots = [("A wave hits the rocks.", 2)]
        expected = sum(engine_chunks(engine, shots, CAPTION, SEED), [])

        def play():
            with ShotStreamClient(srv.address) as client:
                assert client.server_info().open_sessions == 0
                with client.open_session(CAPTION, seed=SEED, transport="shared_memory") as session2:
                    session2.cue(*shots[0])
                    chunks = []
                    for event in session2:
                        if isinstance(event, Chunk):
                            chunks.append(event.frames)
                        elif isinstance(event, ShotFinished):
                            return chunks

        chunks = bounded(play)
        assert len(chunks) == 2 and all(np.array_equal(a, b) for a, b in zip(chunks, expected))
        wait_until(lambda: released(server, opened) and not any(tmp_path.iterdir()), "the new session is freed")
        assert len(opened) == 2


# -- 2. a killed server ---------------------------------------------------------------------------


def test_killed_server_leaves_its_ring_and_the_next_server_removes_it(engine, tmp_path):
    with child("server", str(tmp_path)) as proc:
        hello = first_line(proc, 60)
        assert hello["pid"] == proc.pid
        client = ShotStreamClient(f"127.0.0.1:{hello['grpc_port']}")
        try:
            def open_and_take_one():
                session = client.open_session(CAPTION, seed=SEED, transport="shared_memory")
                session.cue("The keeper climbs the endless stairs.", num_chunks=7)
                for event in session:
                    if isinstance(event, Chunk):
                        return session, event

            session, chunk = bounded(open_and_take_one, 30)
            ring = Path(session.info.ring_path)
            assert ring.parent == tmp_path and ring.name.startswith(f"shotstream-{proc.pid}-") and ring.exists()
            want = engine_chunks(engine, [("The keeper climbs the endless stairs.", 1)], CAPTION, SEED)[0][0]
            assert np.array_equal(chunk.frames, want)
            killed(proc)

            def rest_of_session():
                with pytest.raises(ShotStreamError) as err:
                    for _ in session:  # chunks already on the way may still come (their ring file is intact)
                        pass
                return err.value

            err = bounded(rest_of_session)
            assert err.code == grpc.StatusCode.UNAVAILABLE, err
            session.close()
        finally:
            client.close()

    assert ring.exists()  # a killed server cannot clean up after itself
    header = ring.read_bytes()[:40]
    assert header[:8] == b"SSRING01" and struct.unpack_from("<I", header, 32)[0] == proc.pid
    bystander = FrameRing("bystander", 1, 64, directory=tmp_path)  # a live ring of a live process
    try:
        settings_ = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, ring_dir=tmp_path)
        with BackgroundServer(engine, settings_, grace=2.0) as srv:
            assert not ring.exists()  # stale ring cleanup at start
            assert bystander.path.exists()

            def new_session():  # and the directory is in normal use again
                with ShotStreamClient(srv.address) as c, c.open_session(CAPTION, transport="shared_memory") as s:
                    path = Path(s.info.ring_path)
                    assert path.parent == tmp_path and path.exists()
                    return path

            path = bounded(new_session)
            wait_until(lambda: released(srv.server) and not path.exists(), "the new session's ring is removed")
        assert {p.name for p in tmp_path.iterdir()} == {bystander.path.name}
    finally:
        bystander.close()
    assert not any(tmp_path.iterdir())


# -- 3. fairness ----------------------------------------------------------------------------------


def test_four_ready_sessions_take_turns_round_robin(engine, monkeypatch):
    gate = threading.Event()
    order, units = record_units(monkeypatch, gate)
    shots = [("The keeper climbs the stairs.", 4), ("A wave hits the rocks.", 3)]  # 7 chunks per session
    seeds = [1, 2, 3, 4]
    expected = {seed: sum(engine_chunks(engine, shots, CAPTION, seed), []) for seed in seeds}

    async def body():
        async with serving(engine) as (server, stub, _):
            clients, ids = [], []
            try:
                for i, seed in enumerate(seeds):
                    d = Direct(stub)
                    # 8 credits for 7 chunks: a session is never short of credits, so all four stay ready
                    opened = await d.open(client_name=f"player{i}", seed=seed, max_chunks_in_flight=8)
                    clients.append(d)
                    ids.append(opened.session_id)
                for i, d in enumerate(clients):
                    for j, (prompt, n) in enumerate(shots):
                        await d.cue(f"p{i}s{j}", prompt, n)
                # The worker is held in the first session's first unit; now every session has queued work.
                await await_until(lambda: len(units) == 1, "the worker has picked a session")
                assert units == [(ids[0], Unit.START_SHOT)]
                assert all(server.registry.sessions[i].next_unit() is not None for i in ids)
                gate.set()
                results = await asyncio.wait_for(asyncio.gather(*(d.play(len(shots)) for d in clients)), 4 * TIMEOUT)
            finally:
                gate.set()
            for d in clients:
                await d.close()
            return ids, results

    ids, results = asyncio.run(body())
    # Fresh cues first: every session's shot started before any forward ran ...
    assert units[:4] == [(i, Unit.START_SHOT) for i in ids]
    forwards = [i for i, unit in units if unit is Unit.FORWARD]
    assert forwards[:8] == ids * 2  # ... then one forward each, in turn
    # While all four were ready no session got ahead of another by more than one chunk ...
    for k in range(1, len(order) + 1):
        counts = Counter(order[:k])
        assert max(counts[i] for i in ids) - min(counts[i] for i in ids) <= 1, (k, order)
    # ... in fact they took strict turns, in the order they were opened, and all finished.
    assert order == ids * 7
    for seed, chunks in zip(seeds, results):
        assert [c.chunk_seq for c in chunks] == list(range(1, 8))
        assert [(c.shot_index, c.chunk_index) for c in chunks] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)]
        assert all(np.array_equal(frames_of(c), e) for c, e in zip(chunks, expected[seed]))  # interleaving is harmless


# -- 4. a slow client -----------------------------------------------------------------------------


def test_a_client_that_stops_acking_stalls_only_itself(engine, monkeypatch):
    order, _ = record_units(monkeypatch)
    slow_shot = ("A slow pan across the harbour.", 3)
    fast_shots = [("The keeper climbs the stairs.", 3), ("A wave hits the rocks.", 2)]
    (slow_expected,) = engine_chunks(engine, [slow_shot], CAPTION, SEED)

    async def body():
        async with serving(engine) as (server, stub, _):
            slow = Direct(stub)
            slow_id = (await slow.open(client_name="slow", max_chunks_in_flight=1)).session_id
            await slow.cue("slow", *slow_shot)
            await slow.expect("shot_started")
            first = await slow.expect("chunk")  # not acked for now
            assert first.chunk_seq == 1

            fast = [Direct(stub) for _ in range(3)]
            fast_ids = [(await d.open(client_name=f"fast{i}")).session_id for i, d in enumerate(fast)]
            for i, d in enumerate(fast):
                for j, (prompt, n) in enumerate(fast_shots):  # (a shot may start before the next cue is accepted)
                    await d.send(cue=pb.Cue(event_id=f"f{i}s{j}", prompt=prompt, num_chunks=n))
            results = await asyncio.wait_for(asyncio.gather(*(d.play(len(fast_shots)) for d in fast)), 4 * TIMEOUT)
            for chunks in results:  # the three others got every chunk of both their shots
                assert [(c.shot_index, c.chunk_index) for c in chunks] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]

            # Meanwhile the slow session had exactly one chunk generated, and has no more on the way.
            await slow.barrier()
            session = server.registry.sessions[slow_id]
            assert session.counters.chunks == 1 and session.stats().chunks_in_flight == 1 and session.next_unit() is None
            assert Counter(order) == {slow_id: 1, **{i: 5 for i in fast_ids}}
            for d in fast:
                await d.close()

            # It continues where it stopped once it acks.
            chunks = [first]
            await slow.ack(first)
            for _ in range(2):
                chunks.append(await slow.expect("chunk"))
                await slow.ack(chunks[-1])
            finished = await slow.expect("shot_finished")
            assert (finished.event_id, finished.chunks, finished.cut) == ("slow", 3, False)
            assert [(c.chunk_seq, c.chunk_index) for c in chunks] == [(1, 0), (2, 1), (3, 2)]
            assert all(np.array_equal(frames_of(c), e) for c, e in zip(chunks, slow_expected))
            assert Counter(order)[slow_id] == 3
            await slow.close()

    asyncio.run(body())


# -- 5. fuzzing both doors ------------------------------------------------------------------------

_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)
_enum = st.one_of(st.integers(0, 3), st.integers(-2**31, 2**31 - 1))  # proto3 enums are open: any int32
_odd_text = st.sampled_from(["", " ", "\t\n\u3000", "\x00", "\u200b", "é🎬 ✓ 文字", "shot9999:", "\ufeff"])
_small_text = st.one_of(st.text(max_size=24), _odd_text)
# Up to 10,001 characters of up to 4 UTF-8 bytes: every message stays under the 64 KiB control-message limit
# (what is over it is test_grpc_service's business), so the server's own checks decide.
_big_text = st.one_of(_small_text, st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "é", "€", "🎬", " "]),
                                             st.sampled_from([1999, 2000, 2001, 9990, 9991, 10_000, 10_001])))
_opens = st.builds(pb.OpenSession, protocol_version=st.one_of(st.just(PROTOCOL_VERSION), _u32),
                   client_name=_small_text, global_caption=_big_text, seed=_u64, frame_format=_enum, transport=_enum,
                   max_chunks_in_flight=st.one_of(st.integers(0, 9), _u32))
_good_opens = st.builds(pb.OpenSession, protocol_version=st.just(PROTOCOL_VERSION), client_name=st.just("fuzz"),
                        global_caption=st.one_of(st.just(CAPTION), _big_text), seed=_u64,
                        frame_format=st.integers(0, 2), transport=st.integers(0, 2),
                        max_chunks_in_flight=st.integers(0, 8))
_cues = st.builds(pb.Cue, event_id=_small_text, prompt=st.one_of(st.just("a quiet street"), _big_text),
                  tags=st.lists(_small_text, max_size=3), num_chunks=st.one_of(st.integers(0, 8), _u32), mode=_enum)
FRESH = "fresh-name"  # replaced by a new uuid when sent: a take name is taken for good once its file exists
_take_names = st.sampled_from([FRESH, "", "../x", ".hidden", "x" * 65, "a b", "caf\u00e9"])
_client_messages = st.one_of(
    _cues.map(lambda c: pb.ClientMessage(cue=c)),
    _take_names.map(lambda n: pb.ClientMessage(start_take=pb.StartTake(name=n))),
    st.just(pb.ClientMessage(stop_take=pb.StopTake())),
    st.one_of(st.integers(0, 6), _u64).map(lambda s: pb.ClientMessage(ack=pb.Ack(chunk_seq=s))),
    st.sampled_from([pb.ClientMessage(pause=pb.Pause()), pb.ClientMessage(resume=pb.Resume()),
                     pb.ClientMessage(close=pb.Close()), pb.ClientMessage()]),
    _opens.map(lambda o: pb.ClientMessage(open=o)),
)
_sequences = st.one_of(
    st.tuples(_good_opens, st.lists(_client_messages, max_size=8)).map(lambda t: [pb.ClientMessage(open=t[0]), *t[1]]),
    st.lists(_client_messages, max_size=6),
)


def with_fresh_name(m: pb.ClientMessage) -> pb.ClientMessage:
    """``m``, or a copy of a ``start_take`` named FRESH with a name never used before."""
    if m.WhichOneof("kind") != "start_take" or m.start_take.name != FRESH:
        return m
    return pb.ClientMessage(start_take=pb.StartTake(name=f"fuzz-{uuid.uuid4()}"))


def open_verdict(o: pb.OpenSession) -> grpc.StatusCode:
    """What the server must answer to ``open`` (the documented limits, in the documented order)."""
    if o.protocol_version != PROTOCOL_VERSION:
        return FAILED_PRECONDITION
    if (len(o.global_caption) > DEFAULTS.max_caption_chars or o.frame_format not in (0, 1, 2)
            or o.transport not in (0, 1, 2) or o.max_chunks_in_flight > DEFAULTS.max_chunks_in_flight):
        return INVALID
    return OK


def cue_verdict(c: pb.Cue, caption: str, model_prompt_chars: int) -> grpc.StatusCode:
    full = len(caption) + len("shot9999:") + len(c.prompt)
    valid = (c.prompt.strip() and len(c.prompt) <= DEFAULTS.max_prompt_chars and full <= model_prompt_chars
             and c.num_chunks <= TINY.stream.chunks_per_shot and c.mode in (0, 1, 2))
    return OK if valid else INVALID


def session_answers(messages: list[pb.ClientMessage], caption: str,
                    model_prompt_chars: int) -> tuple[list, str, int, int]:
    """The answers an open session owes to ``messages`` (cue_accepted, take_started, or an error, in order; acks
    aside), why it ends, how many acks it reads and how many takes it saves (one per take started: stopped, or
    finished by the session's end)."""
    answers, acks, takes, recording = [], 0, 0, False
    for m in messages:
        kind = m.WhichOneof("kind")
        if kind == "close":
            return answers, "client", acks, takes
        if kind == "start_take":
            if recording:
                answers.append(("error", "", FAILED_PRECONDITION.value[0]))
            elif not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}", m.start_take.name or "default"):
                answers.append(("error", "", INVALID.value[0]))
            else:
                answers.append(("take_started", "", 0))
                recording, takes = True, takes + 1
        elif kind == "stop_take":
            if not recording:
                answers.append(("error", "", FAILED_PRECONDITION.value[0]))
            recording = False
        elif kind == "cue":
            verdict = cue_verdict(m.cue, caption, model_prompt_chars)
            answers.append(("cue_accepted", m.cue.event_id, 0) if verdict == OK
                           else ("error", m.cue.event_id, verdict.value[0]))
        elif kind == "open":
            answers.append(("error", "", FAILED_PRECONDITION.value[0]))
        elif kind is None:
            answers.append(("error", "", INVALID.value[0]))
        elif kind == "ack":
            acks += 1
    return answers, "client disconnected", acks, takes


def answers_in(responses: list[pb.ServerMessage]) -> list:
    out = []
    for r in responses:
        kind = r.WhichOneof("kind")
        if kind == "cue_accepted":
            out.append(("cue_accepted", r.cue_accepted.event_id, 0))
        elif kind == "take_started":
            out.append(("take_started", "", 0))
        elif kind == "error" and not r.error.message.startswith("ack for chunk"):
            out.append(("error", r.error.event_id, r.error.code))
    return out


def check_session_replies(responses, first: pb.OpenSession, rest, model_prompt_chars: int) -> None:
    """The replies of a session that opened: opened, one answer per cue/open/empty message, chunks within
    credits, closed last."""
    kinds = [r.WhichOneof("kind") for r in responses]
    assert kinds[0] == "opened" and kinds[-1] == "closed" and kinds.count("opened") == kinds.count("closed") == 1
    answers, reason, acks, takes = session_answers(rest, first.global_caption, model_prompt_chars)
    assert answers_in(responses) == answers
    assert kinds.count("take_saved") == takes
    assert responses[-1].closed.reason == reason
    errors = [r.error for r in responses if r.WhichOneof("kind") == "error"]
    assert all(not e.fatal and e.message for e in errors)
    assert all(e.code == INVALID.value[0] for e in errors if e.message.startswith("ack for chunk"))
    chunks = [r.chunk for r in responses if r.WhichOneof("kind") == "chunk"]
    credits = first.max_chunks_in_flight or DEFAULTS.default_chunks_in_flight
    assert [c.chunk_seq for c in chunks] == list(range(1, len(chunks) + 1))
    assert len(chunks) <= credits + acks  # never more than the credits ahead of the acks
    shm = first.transport == pb.TRANSPORT_SHARED_MEMORY
    for c in chunks:
        assert c.WhichOneof("payload") == ("ring_slot" if shm else "pixels")
        assert c.frame_format == (first.frame_format or pb.FRAME_FORMAT_RGB8)
        if not shm:
            frames_of(c)  # the right number of bytes


def fuzz_server(engine, tmp_path, gateway: bool):
    """A server whose ring files go to ``tmp_path`` (checked empty between examples) and takes next to it."""
    takes = tmp_path.with_name(tmp_path.name + "-takes")
    return BackgroundServer(engine, ServerSettings(grpc_port=0, gateway_port=0 if gateway else -1, metrics_port=-1,
                                                   ring_dir=tmp_path, takes_dir=takes), grace=2.0)


def check_nothing_leaked(srv: BackgroundServer, opened, stub, tmp_path) -> None:
    wait_until(lambda: released(srv.server, opened) and not any(tmp_path.iterdir()), "every session is freed")
    assert stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10).open_sessions == 0


def test_fuzzed_direct_messages_never_break_the_server(engine, tmp_path):
    model_prompt_chars = engine.text.max_prompt_chars
    with fuzz_server(engine, tmp_path, gateway=False) as srv:
        opened = track(srv.server.registry)
        channel = grpc.insecure_channel(srv.address)
        stub = pb_grpc.ShotStreamStub(channel)

        @settings(max_examples=35, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(messages=_sequences)
        @example(messages=[  # every take answer, then a cue recorded by a take that the close finishes
            pb.ClientMessage(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, client_name="fuzz")),
            pb.ClientMessage(stop_take=pb.StopTake()),
            pb.ClientMessage(start_take=pb.StartTake(name="../x")),
            pb.ClientMessage(start_take=pb.StartTake(name="")),
            pb.ClientMessage(start_take=pb.StartTake(name="again")),
            pb.ClientMessage(stop_take=pb.StopTake()),
            pb.ClientMessage(start_take=pb.StartTake(name=FRESH)),
            pb.ClientMessage(cue=pb.Cue(prompt="a quiet street", num_chunks=1)),
            pb.ClientMessage(close=pb.Close())])
        def check(messages):
            messages = [with_fresh_name(m) for m in messages]
            call = stub.Direct(iter(messages), timeout=TIMEOUT)
            responses = []
            try:
                for r in call:
                    responses.append(r)
                code = call.code()
            except grpc.RpcError as exc:
                code = exc.code()
            assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED)
            if not messages:
                assert (code, responses) == (OK, [])
            elif messages[0].WhichOneof("kind") != "open" or open_verdict(messages[0].open) != OK:
                is_open = messages[0].WhichOneof("kind") == "open"
                want = open_verdict(messages[0].open) if is_open else FAILED_PRECONDITION
                assert code == want and len(responses) == 1 and responses[0].error.fatal, (code, responses)
                assert responses[0].error.code == want.value[0]
            else:
                assert code == OK, (code, responses[-1:])
                check_session_replies(responses, messages[0].open, messages[1:], model_prompt_chars)
            check_nothing_leaked(srv, opened, stub, tmp_path)

        try:
            check()
        finally:
            channel.close()
        assert opened  # the sequences did open sessions


def _raw_message(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payload < 128 bytes)."""
    assert len(payload) < 128
    return bytes([field << 3 | 2, len(payload)]) + payload


def test_non_utf8_strings_on_the_wire_are_refused_not_crashed(engine, tmp_path):
    """Protobuf ``string`` fields must be UTF-8. Raw wire bytes (the stub would refuse to build them) with
    bad UTF-8 in a prompt / client name, or a truncated message: the Direct error convention (a fatal
    INVALID_ARGUMENT Error, then the same status), the session freed, the server fine."""
    good_open = pb.ClientMessage(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, client_name="raw")
                                 ).SerializeToString()
    bad_cue = _raw_message(2, _raw_message(1, b"e1") + _raw_message(2, b"caf\xe9 \xff\xfe") + b"\x20\x01")
    bad_open = _raw_message(1, b"\x08\x01" + _raw_message(2, b"\xc3\x28"))
    assert pb.ClientMessage.FromString(good_open).open.client_name == "raw"
    for data in (bad_cue, bad_open):
        with pytest.raises(Exception, match="UTF-8"):
            pb.ClientMessage.FromString(data)

    with fuzz_server(engine, tmp_path, gateway=False) as srv:
        opened = track(srv.server.registry)
        channel = grpc.insecure_channel(srv.address)
        stub = pb_grpc.ShotStreamStub(channel)
        direct = channel.stream_stream("/shotstream.v1.ShotStream/Direct", request_serializer=bytes,
                                       response_deserializer=pb.ServerMessage.FromString)
        try:
            for wire, opens in (([good_open, bad_cue], True), ([bad_open], False), ([good_open, b"\x12\x05ab"], True)):
                call = direct(iter(wire), timeout=TIMEOUT)
                responses = []
                with pytest.raises(grpc.RpcError) as err:
                    for r in call:
                        responses.append(r)
                assert err.value.code() == INVALID, err.value  # a client mistake, as the error convention says
                kinds = [r.WhichOneof("kind") for r in responses]
                assert kinds == (["opened", "error"] if opens else ["error"])
                error = responses[-1].error
                assert error.fatal and error.code == INVALID.value[0] and error.message == err.value.details()
                check_nothing_leaked(srv, opened, stub, tmp_path)
            assert len(opened) == 2
            # Unary calls: grpc itself decodes the request before any service code runs; still only an error status.
            render = channel.unary_stream("/shotstream.v1.ShotStream/RenderStory", request_serializer=bytes,
                                          response_deserializer=pb.RenderStoryEvent.FromString)
            request = b"\x08\x01" + _raw_message(4, _raw_message(1, b"\xff\xfe") + b"\x10\x01")
            with pytest.raises(grpc.RpcError) as err:
                list(render(request, timeout=TIMEOUT))
            assert err.value.code() != OK
            check_nothing_leaked(srv, opened, stub, tmp_path)
        finally:
            channel.close()


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=10)
_plausible = st.one_of(_json, st.sampled_from([1, "1", 0, -1, 2**64, "2", 1.5, "FRAME_FORMAT_RGBA8",
                                               "TRANSPORT_SHARED_MEMORY", "CUE_MODE_CUT", "NOPE", "", "a quiet street",
                                               "🎬 ✓", [], {}, None, True]))
_shaped = st.dictionaries(
    st.sampled_from(["open", "cue", "ack", "pause", "resume", "close", "bogus"]),
    st.one_of(_json, st.dictionaries(st.sampled_from(
        ["protocolVersion", "protocol_version", "clientName", "globalCaption", "seed", "frameFormat", "transport",
         "maxChunksInFlight", "eventId", "prompt", "tags", "numChunks", "num_chunks", "mode", "chunkSeq", "extra"]),
        _plausible, max_size=4)),
    min_size=1, max_size=2)
_good_open_json = st.builds(
    lambda seed, credits, transport: json.dumps({"open": {"protocolVersion": 1, "clientName": "fuzz/ws",
                                                          "globalCaption": CAPTION, "seed": str(seed),
                                                          "maxChunksInFlight": credits, "transport": transport}}),
    _u64, st.integers(0, 8), st.sampled_from(["TRANSPORT_INLINE", "TRANSPORT_SHARED_MEMORY"]))
_good_cue_json = st.builds(lambda eid, n: json.dumps({"cue": {"eventId": eid, "prompt": "a quiet street",
                                                              "numChunks": n}}), _small_text, st.integers(0, 8))
_frames = st.one_of(
    st.tuples(st.just("binary"), st.binary(max_size=48)),
    st.tuples(st.just("raw-text"), st.binary(max_size=24)),  # a text frame whose bytes may not be UTF-8
    st.tuples(st.just("text"), st.one_of(st.text(max_size=40), _json.map(json.dumps), _shaped.map(json.dumps),
                                         _good_cue_json, _good_open_json,
                                         st.sampled_from(['{"ack": {"chunkSeq": "1"}}', '{"pause": {}}',
                                                          '{"resume": {}}', '{"close": {}}', "{}", "null"]))),
)
_DEEP = "[" * 2000  # deeper than the JSON parsers recurse, and still under 64 KiB


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _client_message(text: str) -> pb.ClientMessage | None:
    try:
        return json_format.Parse(text, pb.ClientMessage(), ignore_unknown_fields=False)
    except Exception:  # noqa: BLE001 - anything the parser refuses
        return None


def gateway_expectation(frames) -> tuple[int, list, list | None, int, int]:
    """What the gateway owes ``frames`` (ending with close): (parse-error replies, the fatal reply if the session
    never opened, the messages the open session reads (open first) or None, the WebSocket close code, the index
    of the frame that ends the connection)."""
    parse_errors, replies, session_msgs = 0, [], None
    for i, (kind, data) in enumerate(frames):
        if kind == "raw-text":
            if not _utf8(data):
                return parse_errors, replies, session_msgs, 1007, i  # the WebSocket layer fails the connection
            data = data.decode("utf-8")
        msg = None if kind == "binary" else _client_message(data)
        if msg is None:
            parse_errors += 1
        elif session_msgs is None:
            if msg.WhichOneof("kind") != "open":
                replies.append(("fatal", FAILED_PRECONDITION.value[0]))
                return parse_errors, replies, session_msgs, 1000, i
            verdict = open_verdict(msg.open)
            if verdict != OK:
                replies.append(("fatal", verdict.value[0]))
                return parse_errors, replies, session_msgs, 1000, i
            session_msgs = [msg]
        else:
            session_msgs.append(msg)
            if msg.WhichOneof("kind") == "close":
                return parse_errors, replies, session_msgs, 1000, i
    raise AssertionError("the frames end with close or with a text frame that is not UTF-8")


def ends_session(msg: dict) -> bool:
    """Whether a gateway text frame (proto3 JSON) is the end of the session: ``closed`` or a fatal ``error``."""
    return "closed" in msg or bool(msg.get("error", {}).get("fatal"))


@settings(max_examples=35, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(frames=st.lists(_frames, max_size=6), open_first=st.booleans())
@example(frames=[("text", _DEEP)], open_first=True)
@example(frames=[("text", '{"cue": ' * 3000)], open_first=False)
def _gateway_example(frames, open_first, *, srv, opened, stub, tmp_path, model_prompt_chars):
    if open_first:
        frames = [("text", json.dumps({"open": {"protocolVersion": 1, "clientName": "fuzz/ws", "seed": "3"}})),
                  *frames]
    frames = [*frames, ("text", '{"close": {}}')]
    parse_errors, fatal, session_msgs, close_code, end = gateway_expectation(frames)
    # The server ignores whatever follows the frame that ends the connection, so it is not sent: with 4 or more
    # frames (the gateway's max_queue) unread in its queue, websockets (17.4) stops reading the socket, cannot
    # see the client's side of the closing handshake, and holds the connection (after a 1007, the session too)
    # for its close timeout, 10 s.
    frames = frames[:end + 1]

    async def talk():
        received = []
        async with connect(srv.gateway_url, max_size=None, open_timeout=TIMEOUT, close_timeout=5) as ws:
            with contextlib.suppress(ConnectionClosed):  # the server may end the session before all are sent
                for kind, data in frames:
                    await ws.send(data, text=True) if kind == "raw-text" else await ws.send(data)
            with contextlib.suppress(ConnectionClosed):
                while True:
                    received.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    if isinstance(received[-1], str) and ends_session(json.loads(received[-1])):
                        await ws.close()  # as clients should: the server would wait for it before closing
            ws.transport.abort()  # our socket is closed now, whatever state the closing handshake is in
        return received, ws.close_code

    received, code = asyncio.run(asyncio.wait_for(talk(), 3 * TIMEOUT))
    assert code == close_code, (code, received[-2:])
    responses = []
    for data in received:  # every frame the server sends follows the framing contract
        if isinstance(data, bytes):
            header, pixels = decode_chunk_frame(data)
            frames_of(header, pixels)
            responses.append(pb.ServerMessage(chunk=header))
        else:
            responses.append(json_format.Parse(data, pb.ServerMessage()))
    if close_code == 1000:
        parse_replies = [r for r in responses if r.WhichOneof("kind") == "error"
                         and r.error.message.startswith(("could not parse the text frame", "binary frames are not"))]
        assert len(parse_replies) == parse_errors
        assert all(r.error.code == INVALID.value[0] and not r.error.fatal for r in parse_replies)
        rest = [r for r in responses if all(r is not p for p in parse_replies)]
        if session_msgs is None:
            assert [(r.WhichOneof("kind"), r.error.code, r.error.fatal) for r in rest] == [("error", fatal[0][1], True)]
        else:
            check_session_replies([r for r in rest if r.WhichOneof("kind") != "stats"], session_msgs[0].open,
                                  session_msgs[1:], model_prompt_chars)
    check_nothing_leaked(srv, opened, stub, tmp_path)


def test_fuzzed_websocket_frames_never_break_the_gateway(engine, tmp_path):
    with fuzz_server(engine, tmp_path, gateway=True) as srv:
        opened = track(srv.server.registry)
        with grpc.insecure_channel(srv.address) as channel:
            _gateway_example(srv=srv, opened=opened, stub=pb_grpc.ShotStreamStub(channel), tmp_path=tmp_path,
                             model_prompt_chars=engine.text.max_prompt_chars)
        assert opened


# -- 6. the gateway equals gRPC -------------------------------------------------------------------

_CUES = [("arrive", "The keeper climbs the stairs.", 2, ["act1"]), ("wave", "A wave hits the rocks.", 1, [])]


def _comparable(msg: pb.ServerMessage) -> tuple[str, dict, bytes | None]:
    """(kind, fields, pixels) without what legitimately differs between two runs (timings, queue positions)."""
    kind = msg.WhichOneof("kind")
    body = type(getattr(msg, kind))()
    body.CopyFrom(getattr(msg, kind))
    pixels = None
    if kind == "chunk":
        pixels = bytes(body.pixels)
        body.ClearField("pixels")
        body.ClearField("timing")
    elif kind == "shot_started":
        body.setup_ms = 0
    elif kind == "cue_accepted":
        body.queue_position = 0  # depends on whether the worker took the previous cue yet
    return kind, json_format.MessageToDict(body), pixels


async def _via_grpc(address: str, fmt: int) -> list:
    channel = grpc.aio.insecure_channel(address)
    try:
        d = Direct(pb_grpc.ShotStreamStub(channel))
        await d.open(client_name="same/grpc", frame_format=fmt)
        for eid, prompt, n, tags in _CUES:
            await d.send(cue=pb.Cue(event_id=eid, prompt=prompt, num_chunks=n, tags=tags))
        events, finished = [], 0
        while finished < len(_CUES):
            msg = await d.recv()
            assert msg is not None
            events.append(_comparable(msg))
            if msg.WhichOneof("kind") == "chunk":
                await d.ack(msg.chunk)
            finished += msg.WhichOneof("kind") == "shot_finished"
        await d.close()
        return events
    finally:
        await channel.close()


async def _via_gateway(url: str, fmt: int) -> list:
    async with connect(url, max_size=None, open_timeout=TIMEOUT) as ws:
        async def recv() -> pb.ServerMessage:
            while True:
                data = await asyncio.wait_for(ws.recv(), TIMEOUT)
                if isinstance(data, bytes):
                    header, pixels = decode_chunk_frame(data)
                    header.pixels = pixels
                    return pb.ServerMessage(chunk=header)
                msg = json_format.Parse(data, pb.ServerMessage())
                if msg.WhichOneof("kind") != "stats":
                    return msg

        await ws.send(json.dumps({"open": {"protocolVersion": 1, "clientName": "same/ws", "globalCaption": CAPTION,
                                           "seed": str(SEED), "frameFormat": pb.FrameFormat.Name(fmt)}}))
        assert (await recv()).WhichOneof("kind") == "opened"
        for eid, prompt, n, tags in _CUES:
            await ws.send(json.dumps({"cue": {"eventId": eid, "prompt": prompt, "numChunks": n, "tags": tags}}))
        events, finished = [], 0
        while finished < len(_CUES):
            msg = await recv()
            events.append(_comparable(msg))
            if msg.WhichOneof("kind") == "chunk":
                await ws.send(json.dumps({"ack": {"chunkSeq": str(msg.chunk.chunk_seq)}}))
            finished += msg.WhichOneof("kind") == "shot_finished"
        await ws.send(json.dumps({"close": {}}))
        while True:
            msg = await recv()
            if msg.WhichOneof("kind") == "closed":
                assert msg.closed.reason == "client"
                break
        return events


@pytest.mark.parametrize("fmt", [pb.FRAME_FORMAT_RGB8, pb.FRAME_FORMAT_RGBA8], ids=["rgb8", "rgba8"])
def test_gateway_session_equals_grpc_session(engine, fmt):
    expected = sum(engine_chunks(engine, [(prompt, n) for _, prompt, n, _ in _CUES], CAPTION, SEED), [])
    settings_ = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1)
    with BackgroundServer(engine, settings_, grace=2.0) as srv:
        opened = track(srv.server.registry)

        async def both():  # at the same time, on one server
            both_ = asyncio.gather(_via_grpc(srv.address, fmt), _via_gateway(srv.gateway_url, fmt))
            return await asyncio.wait_for(both_, 4 * TIMEOUT)

        grpc_events, ws_events = asyncio.run(both())
        wait_until(lambda: released(srv.server, opened), "both sessions are freed")
    assert len(opened) == 2
    # Same messages, same indices, same pixels byte for byte. (Only where a cue's acceptance falls among the
    # generated messages depends on timing: the worker may start the first shot before the second cue arrives.)
    def accepted(events):
        return [e for e in events if e[0] == "cue_accepted"]

    def generated(events):
        return [e for e in events if e[0] != "cue_accepted"]

    assert accepted(grpc_events) == accepted(ws_events) == [("cue_accepted", {"eventId": e}, None) for e, *_ in _CUES]
    assert generated(grpc_events) == generated(ws_events)
    chunks = [(fields, pixels) for kind, fields, pixels in grpc_events if kind == "chunk"]
    assert [(f.get("shotIndex", 0), f.get("chunkIndex", 0)) for f, _ in chunks] == [(0, 0), (0, 1), (1, 0)]
    channels = 4 if fmt == pb.FRAME_FORMAT_RGBA8 else 3
    for (fields, pixels), want in zip(chunks, expected):
        got = np.frombuffer(pixels, np.uint8).reshape(fields["numFrames"], H, W, channels)
        assert np.array_equal(got[..., :3], want)
