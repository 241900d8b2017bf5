"""The GPU worker's scheduling: fresh cues first, one DiT forward per turn, round-robin, and admission by
measured throughput.

The worker tests drive the real :class:`service.worker.GpuWorker` with fake sessions whose units only log
themselves (the engine is not needed to check who runs when); a real server checks admission.
"""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from engine_core import TINY, ShotStreamEngine
from service.capacity import Capacity
from service.protocol import PROTOCOL_VERSION, pb
from service.scheduler import Scheduler, Unit
from service.worker import GpuWorker
from service_helpers import TIMEOUT, Direct, serving


class Stub:
    """What the scheduler sees of a session: the unit it could run and since when."""

    def __init__(self, unit: Unit | None = None, since: float = 0.0):
        self.unit, self.since = unit, since

    def next_unit(self):
        return None if self.unit is None else (self.unit, self.since)


def test_a_due_cue_goes_first_oldest_first():
    a, b, c = Stub(Unit.FORWARD), Stub(Unit.START_SHOT, since=5.0), Stub(Unit.START_SHOT, since=2.0)
    assert Scheduler().pick([a, b, c]) == (c, Unit.START_SHOT)


def test_forwards_take_turns_and_prepares_come_last():
    a, b, p = Stub(Unit.FORWARD), Stub(Unit.FORWARD), Stub(Unit.PREPARE)
    sched = Scheduler()
    picks = [sched.pick([a, p, b])[0] for _ in range(4)]
    assert picks == [a, b, a, b]  # the session waiting to prepare never displaces a forward
    a.unit = b.unit = None
    assert sched.pick([a, p, b]) == (p, Unit.PREPARE)
    p.unit = None
    assert sched.pick([a, p, b]) is None


class FakeSession:
    """A session for the worker: ``forwards`` units of work, then idle; every unit is logged."""

    def __init__(self, name: str, log: list, forwards: int = 0):
        self.id, self.log, self.forwards = name, log, forwards
        self.cue_since: float | None = None
        self.closing = False
        self.frames_pending = False
        self.on_forward = None  # called with the forward's number, inside the unit
        self.done = threading.Event()

    def next_unit(self):
        if self.closing:
            return None
        if self.cue_since is not None:
            return Unit.START_SHOT, self.cue_since
        return (Unit.FORWARD, 0.0) if self.forwards else None

    def run(self, unit: Unit) -> int:
        self.log.append((self.id, unit))
        if unit is Unit.START_SHOT:
            self.cue_since = None
            self.forwards += 3
        else:
            self.forwards -= 1
            if self.on_forward is not None:
                self.on_forward(sum(1 for name, u in self.log if name == self.id and u is Unit.FORWARD))
        if not self.forwards:
            self.done.set()
        return 1

    def poll_frames(self) -> int:
        return 0

    def release(self) -> None:
        pass

    def fail(self, exc: BaseException) -> None:
        raise AssertionError(f"unexpected failure: {exc!r}")


def test_a_cue_during_another_storys_chunk_waits_for_one_forward_only():
    log: list = []
    busy = FakeSession("busy", log, forwards=20)  # a long shot, mid-chunk
    newcomer = FakeSession("new", log)
    worker = GpuWorker()

    def cue_arrives(n: int) -> None:
        if n == 3:  # a game event while the busy story's 3rd forward runs
            newcomer.cue_since = 0.0
            worker.notify()

    busy.on_forward = cue_arrives
    try:
        worker.add(newcomer)
        worker.add(busy)
        assert newcomer.done.wait(TIMEOUT) and busy.done.wait(TIMEOUT)
    finally:
        worker.stop()
    third = log.index(("busy", Unit.FORWARD), 2)  # the forward during which the cue arrived
    assert log[third + 1] == ("new", Unit.START_SHOT)  # served next, not after the busy chunk's other forwards
    # then both stories share the GPU forward by forward until the newcomer's shot is done
    shared = [name for name, unit in log[third + 2:third + 8]]
    assert sorted(shared) == ["busy"] * 3 + ["new"] * 3 and all(x != y for x, y in zip(shared, shared[1:]))
    assert log.count(("busy", Unit.FORWARD)) == 20


def test_capacity_measures_frames_per_busy_second_over_a_window():
    cap = Capacity(window_s=10.0, min_busy_s=1.0)
    assert cap.fps() is None and cap.refuse_reason(3, 16) is None  # nothing measured: admit
    cap.record(0.5, 40)
    assert cap.fps() is None  # under min_busy_s
    cap.record(1.5, 40)
    assert cap.fps() == pytest.approx(40.0)
    assert cap.refuse_reason(1, 16) is None  # 2 sessions x 16 fps = 32 <= 40
    reason = cap.refuse_reason(2, 16)
    assert "40.0 frames/s" in reason and "3 sessions" in reason and "48" in reason
    for _ in range(20):  # old spans leave the window: only the recent rate counts
        cap.record(1.0, 100)
    assert cap.fps() == pytest.approx(100.0)


@pytest.fixture(scope="module")
def engine():
    return ShotStreamEngine.random(TINY, device="cpu", seed=0)


def test_admission_refuses_a_session_the_gpu_cannot_keep_at_real_time(engine):
    async def body():
        async with serving(engine, realtime_admission=True) as (server, stub, _):
            first = Direct(stub)
            await first.open()
            server.worker.capacity.record(10.0, 200)  # as if measured: 20 frames/s, room for one 16 fps stream
            second = Direct(stub)
            await second.send(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, global_caption="x"))
            await second.fails(grpc.StatusCode.RESOURCE_EXHAUSTED, "20.0 frames/s of generation")
            server.worker.capacity.record(10.0, 2000)  # a faster measurement admits a second stream
            third = Direct(stub)
            await third.open()
            await first.close()
            await third.close()

    asyncio.run(asyncio.wait_for(body(), 4 * TIMEOUT))


def _hold_mid_chunk(monkeypatch, chunks_sent: int) -> tuple[threading.Event, threading.Event]:
    """Hold the GPU worker after the first forward of the chunk that follows ``chunks_sent`` sent chunks:
    ``held`` is set once it waits there, setting ``hold`` lets it go on."""
    from service.session import Session

    real_run, hold, held = Session.run, threading.Event(), threading.Event()

    def run(self, unit):
        out = real_run(self, unit)
        if unit is Unit.FORWARD and self.story.denoising and self.counters.chunks == chunks_sent and not held.is_set():
            held.set()
            assert hold.wait(TIMEOUT)
        return out

    monkeypatch.setattr(Session, "run", run)
    return hold, held


def test_a_cut_frees_the_credit_of_the_chunk_it_drops(engine, monkeypatch):
    """One credit, held by a chunk part-way through its forwards: a cut drops that chunk, so it may start."""
    hold, held = _hold_mid_chunk(monkeypatch, chunks_sent=1)  # the second chunk, part-way

    async def body():
        async with serving(engine) as (_, stub, _c):
            d = Direct(stub)
            await d.open(max_chunks_in_flight=1)
            await d.cue("long", "A long walk down the pier.", 7)
            await d.expect("shot_started")
            await d.ack(await d.expect("chunk"))
            assert await asyncio.to_thread(held.wait, TIMEOUT)
            await d.cue("cut", "The boss bursts in.", 1, pb.CUE_MODE_CUT)
            hold.set()
            finished = await d.expect("shot_finished")
            assert (finished.event_id, finished.chunks, finished.cut) == ("long", 1, True)
            assert (await d.expect("shot_started")).event_id == "cut"
            assert (await d.expect("chunk")).event_id == "cut"
            assert (await d.expect("shot_finished")).event_id == "cut"
            await d.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 4 * TIMEOUT))
    finally:
        hold.set()


def test_a_cut_never_drops_a_started_shots_first_chunk(engine, monkeypatch):
    """A cut cued while a shot's first chunk is part-way through its forwards lands after that chunk."""
    hold, held = _hold_mid_chunk(monkeypatch, chunks_sent=0)  # the first chunk, part-way

    async def body():
        async with serving(engine) as (_, stub, _c):
            d = Direct(stub)
            await d.open(max_chunks_in_flight=1)
            await d.cue("walk", "The keeper climbs the stairs.", 3)
            await d.expect("shot_started")
            assert await asyncio.to_thread(held.wait, TIMEOUT)
            await d.cue("boom", "A wave hits the rocks.", 1, pb.CUE_MODE_CUT)
            hold.set()
            first = await d.expect("chunk")
            assert (first.event_id, first.chunk_index) == ("walk", 0)
            await d.ack(first)
            finished = await d.expect("shot_finished")
            assert (finished.event_id, finished.chunks, finished.cut) == ("walk", 1, True)
            assert (await d.expect("shot_started")).event_id == "boom"
            assert (await d.expect("chunk")).event_id == "boom"
            assert (await d.expect("shot_finished")).event_id == "boom"
            await d.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 4 * TIMEOUT))
    finally:
        hold.set()
