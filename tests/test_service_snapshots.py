"""Issue 12 (service half): story snapshots through Direct (asked for, sent in parts, continued at OpenSession),
forks, deterministic cuts (Cue.at_chunk) and cue logs replayed through RenderStory.

Real in-process servers on 127.0.0.1 with the tiny random engine; every wait is bounded (service_helpers).
"Equal" means byte-equal frames: a restored or forked story must continue exactly like the original.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from engine_core import TINY, ShotStreamEngine
from service.cue_log import CueLogBook, replay_shots
from service.protocol import pb
from service_helpers import Direct as BaseDirect
from service_helpers import serving

CAPTION, SEED = "Sea.", 3  # short: the tiny text encoder keeps 32 tokens
PART = 4096  # small parts both ways, so that a tiny story's snapshot takes several
PRECONDITION, INVALID = grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def engine():
    return ShotStreamEngine.random(TINY, device="cpu", seed=0)


class Direct(BaseDirect):
    open_defaults = {"client_name": "snapshots", "global_caption": CAPTION, "seed": SEED}

    async def snapshot(self, wait_for_boundary: bool = False) -> tuple[bytes, list[pb.ServerMessage]]:
        """Ask for the story's snapshot; returns its bytes and the other messages that came meanwhile (chunks
        acked)."""
        await self.send(snapshot=pb.SnapshotRequest(wait_for_boundary=wait_for_boundary))
        data, others = b"", []
        while True:
            msg = await self.recv()
            assert msg is not None, "the stream ended before the snapshot"
            kind = msg.WhichOneof("kind")
            if kind != "snapshot":
                others.append(msg)
                if kind == "chunk":
                    await self.ack(msg.chunk)
                continue
            part = msg.snapshot
            assert part.index == len(data) // PART and part.total_bytes >= len(data) + len(part.data)
            data += part.data
            if part.index == part.count - 1:
                assert len(data) == part.total_bytes
                return data, others

    async def open_from(self, data: bytes, **fields) -> tuple[pb.SessionOpened, pb.SnapshotRestored]:
        """Open a session that continues ``data``, sent in parts."""
        first = pb.SnapshotPart(data=data[:PART], total_bytes=len(data))
        await self.send(open=pb.OpenSession(protocol_version=1, client_name="restored", snapshot=first, **fields))
        opened = await self.expect("opened")
        for i in range(PART, len(data), PART):
            await self.send(snapshot_part=pb.SnapshotPart(data=data[i:i + PART]))
        return opened, await self.expect("restored")

    async def shots(self, shots, first_id: int = 0) -> list[pb.FrameChunk]:
        for i, (prompt, n) in enumerate(shots):
            await self.cue(f"e{first_id + i}", prompt, n)
        return await self.play(len(shots))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


def pixels(chunks: list[pb.FrameChunk]) -> list[bytes]:
    return [c.pixels for c in chunks]


STORY = [("The keeper climbs the stairs.", 1), ("A wave hits the rocks.", 2), ("Gulls scatter.", 1)]
TAIL = [("The lamp flares on.", 2), ("A ship turns away.", 1)]


@pytest.mark.parametrize("shots", [1, 3])
def test_restored_session_continues_like_the_original(engine, shots):
    async def main():
        async with serving(engine, snapshot_part_bytes=PART) as (server, stub, _):
            a = Direct(stub)
            await a.open()
            await a.shots(STORY[:shots])
            data, others = await a.snapshot()
            assert others == []
            assert data[:8] == b"SHOTSNAP"
            tail_a = await a.shots(TAIL, first_id=shots)
            await a.close()

            b = Direct(stub)
            opened, restored = await b.open_from(data)
            assert restored.next_shot_index == shots
            assert restored.story_frames == tail_a[0].story_frame  # the story's frame count carries on
            tail_b = await b.shots(TAIL, first_id=shots)
            assert [c.shot_index for c in tail_b] == [c.shot_index for c in tail_a]
            assert [c.story_frame for c in tail_b] == [c.story_frame for c in tail_a]
            assert pixels(tail_b) == pixels(tail_a)
            await b.close()
            assert not server.registry.sessions
    run(main())


def test_fork_gives_independent_stories_with_the_same_prefix(engine):
    async def main():
        async with serving(engine) as (server, stub, _):
            a = Direct(stub)
            opened = await a.open()
            await a.shots(STORY[:2])
            b, c = Direct(stub), Direct(stub)
            for fork in (b, c):
                await fork.send(open=pb.OpenSession(protocol_version=1, fork=pb.Fork(session_id=opened.session_id)))
                await fork.expect("opened")
                assert (await fork.expect("restored")).next_shot_index == 2
            ending1, ending2 = [("Waves.", 2)], [("Dark.", 2)]
            a_end = await a.shots(ending1, first_id=2)
            c_end = await c.shots(ending2, first_id=2)
            b_end = await b.shots(ending1, first_id=2)
            assert pixels(b_end) == pixels(a_end)  # same prefix, same cue: the same frames
            assert pixels(c_end) != pixels(b_end)  # the other ending is its own story
            for s in (a, b, c):
                await s.close()
    run(main())


def test_snapshot_mid_shot_is_refused_and_changes_nothing(engine):
    async def main():
        async with serving(engine) as (server, stub, _):
            a = Direct(stub)
            opened = await a.open(max_chunks_in_flight=1)
            await a.cue("long", "The keeper climbs the stairs.", 3)
            assert (await a.expect("shot_started")).shot_index == 0
            await a.send(snapshot=pb.SnapshotRequest())
            error = await a.expect("error")
            assert error.code == PRECONDITION.value[0] and not error.fatal
            assert "shot 0 (long) is in progress" in error.message and "wait_for_boundary" in error.message
            fork = Direct(stub)
            await fork.send(open=pb.OpenSession(protocol_version=1, fork=pb.Fork(session_id=opened.session_id)))
            await fork.fails(PRECONDITION, "in progress")
            chunks = await a.play(1)  # the story goes on untouched
            assert len(chunks) == 3
            reference = Direct(stub)
            await reference.open(max_chunks_in_flight=1)
            assert pixels(await reference.shots([("The keeper climbs the stairs.", 3)])) == pixels(chunks)
            await a.close()
            await reference.close()
    run(main())


def test_snapshot_waits_for_the_boundary_before_the_next_shot(engine):
    async def main():
        async with serving(engine) as (server, stub, _):
            a = Direct(stub)
            await a.open()
            await a.cue("one", "The keeper climbs the stairs.", 2)
            await a.cue("two", "A wave hits the rocks.", 1)
            await a.expect("shot_started")
            data, others = await a.snapshot(wait_for_boundary=True)
            kinds = [m.WhichOneof("kind") for m in others]
            assert "shot_finished" in kinds and "shot_started" not in kinds  # taken between shot 0 and shot 1
            assert [m.chunk.shot_index for m in others if m.WhichOneof("kind") == "chunk"] == [0, 0]
            assert (await a.expect("shot_started")).event_id == "two"
            await a.play(1)
            await a.close()
            b = Direct(stub)
            assert (await b.open_from(data))[1].next_shot_index == 1
            await b.close()
    run(main())


def _tamper(data: bytes) -> bytes:
    return data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:]


def test_damaged_or_foreign_snapshots_are_refused_and_nothing_stays(engine):
    other = ShotStreamEngine.random(TINY, device="cpu", seed=1)  # same config, other weights

    async def snapshot_of(e) -> bytes:
        async with serving(e) as (_, stub, _c):
            a = Direct(stub)
            await a.open()
            await a.shots(STORY[:1])
            data, _ = await a.snapshot()
            await a.close()
            return data

    async def main():
        good, foreign = await snapshot_of(engine), await snapshot_of(other)
        async with serving(engine, max_snapshot_bytes=len(good) + 1) as (server, stub, _):
            s = Direct(stub)
            await s.send(open=pb.OpenSession(protocol_version=1, snapshot=pb.SnapshotPart(data=_tamper(good),
                                                                                          total_bytes=len(good))))
            await s.expect("opened")  # the header is fine: the damage shows once every byte is in
            await s.fails(INVALID, "checksum")

            s = Direct(stub)
            await s.send(open=pb.OpenSession(protocol_version=1, snapshot=pb.SnapshotPart(data=good[:PART],
                                                                                          total_bytes=len(good) - 1)))
            await s.fails(INVALID, "header says it has")  # truncated: the announced size is not the snapshot's

            s = Direct(stub)
            await s.send(open=pb.OpenSession(protocol_version=1, snapshot=pb.SnapshotPart(data=b"not a snapshot",
                                                                                          total_bytes=14)))
            await s.fails(INVALID, "not a ShotStream story snapshot")

            s = Direct(stub)
            await s.send(open=pb.OpenSession(protocol_version=1, snapshot=pb.SnapshotPart(data=foreign,
                                                                                          total_bytes=len(foreign))))
            await s.expect("opened")
            await s.fails(PRECONDITION, "another model: fingerprint")

            s = Direct(stub)
            await s.send(open=pb.OpenSession(protocol_version=1, snapshot=pb.SnapshotPart(data=good[:100],
                                                                                          total_bytes=len(good) + 2)))
            await s.fails(grpc.StatusCode.RESOURCE_EXHAUSTED, "max_snapshot_bytes")

            s = Direct(stub)
            await s.send(open=pb.OpenSession(protocol_version=1, fork=pb.Fork(session_id="nope")))
            await s.fails(grpc.StatusCode.NOT_FOUND, "no open session 'nope'")
            assert not server.registry.sessions

            s = Direct(stub)  # and the good one still restores on the same server
            await s.open_from(good)
            await s.close()
    run(main())


def test_cut_at_chunk_lands_there_and_the_cue_log_replays_exactly(engine):
    async def main():
        async with serving(engine) as (server, stub, _):
            a = Direct(stub)
            await a.open(max_chunks_in_flight=1)
            await a.cue("walk", "The keeper climbs the stairs.", 4)
            await a.expect("shot_started")
            await a.send(cue=pb.Cue(event_id="boss", prompt="A wave hits the rocks.", num_chunks=2,
                                    mode=pb.CUE_MODE_CUT, at_chunk=2))
            live, finished = [], []
            while len(finished) < 2:
                msg = await a.recv()
                kind = msg.WhichOneof("kind")
                if kind == "chunk":
                    live.append(msg.chunk)
                    await a.ack(msg.chunk)
                elif kind == "shot_finished":
                    finished.append(msg.shot_finished)
            assert [(f.event_id, f.chunks, f.cut) for f in finished] == [("walk", 2, True), ("boss", 2, False)]
            await a.send(cue_log=pb.CueLogRequest())
            log = await a.expect("cue_log")
            assert (log.global_caption, log.seed, log.next_shot, log.first_shot_index) == (CAPTION, SEED, 0, 0)
            assert [(e.cue.event_id, e.shot_index, e.chunks, e.cut, e.finished) for e in log.entries] == [
                ("walk", 0, 2, True, True), ("boss", 1, 2, False, True)]
            assert log.entries[1].cue.at_chunk == 2 and log.entries[1].cue.mode == pb.CUE_MODE_CUT
            await a.close()

            replayed = [e.chunk async for e in stub.RenderStory(pb.RenderStoryRequest(
                protocol_version=1, cue_log=log)) if e.WhichOneof("kind") == "chunk"]
            assert pixels(replayed) == pixels(live)
            assert [c.shot_index for c in replayed] == [c.shot_index for c in live]
    run(main())


def test_bad_cut_and_log_requests_are_clear_errors(engine):
    async def main():
        async with serving(engine) as (server, stub, _):
            a = Direct(stub)
            await a.open()
            await a.send(cue=pb.Cue(event_id="w", prompt="p", at_chunk=1))
            assert "at_chunk applies to CUT cues" in (await a.expect("error")).message
            await a.send(cue=pb.Cue(event_id="w", prompt="p", at_chunk=99, mode=pb.CUE_MODE_CUT))
            assert "out of range" in (await a.expect("error")).message
            await a.send(snapshot_part=pb.SnapshotPart(data=b"x"))
            error = await a.expect("error")
            assert error.code == INVALID.value[0] and not error.fatal and "without a snapshot" in error.message
            await a.close()
            for bad, code, needle in (
                    (pb.RenderStoryRequest(protocol_version=1, cue_log=pb.CueLog(global_caption="c")), INVALID,
                     "no finished shot"),
                    (pb.RenderStoryRequest(protocol_version=1, cue_log=pb.CueLog(first_shot_index=3)), PRECONDITION,
                     "--from-snapshot"),
                    (pb.RenderStoryRequest(protocol_version=1, cue_log=pb.CueLog(next_shot=5)), INVALID,
                     "one page"),
                    (pb.RenderStoryRequest(protocol_version=1, cue_log=pb.CueLog(dropped_shots=2)), PRECONDITION,
                     "dropped its first 2 shots")):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in stub.RenderStory(bad):
                        pass
                assert err.value.code() == code and needle in err.value.details()
    run(main())


def test_cue_log_pages_and_drops_the_oldest_shots():
    book = CueLogBook(CAPTION, SEED, pb.DECODER_WAN, max_shots=4)
    for i in range(6):
        entry = book.started(pb.Cue(event_id=f"e{i}", prompt="x" * 100), i)
        entry.chunks, entry.finished = 1, i < 5
    first = book.page(0, max_bytes=300)
    assert first.dropped_shots == 2 and [e.shot_index for e in first.entries] == [2, 3]
    rest = book.page(first.next_shot, max_bytes=300)
    assert [e.shot_index for e in rest.entries] == [4, 5] and rest.next_shot == 0
    merged = pb.CueLog()
    merged.CopyFrom(first)
    merged.entries.extend(rest.entries)
    merged.next_shot = 0
    assert replay_shots(merged) == [("x" * 100, 1)] * 3  # shot 5 is still in progress: not replayed
    assert [e.cue.event_id for e in merged.entries] == [f"e{i}" for i in range(2, 6)]
