"""Takes (``StartTake`` / ``StopTake``): a session's frames recorded into an MP4 on the server's host.

A real in-process server over the tiny engine; the MP4s are read back with imageio-ffmpeg and compared
with the frames the client received (H.264 is lossy, so within a tolerance).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from engine_core import TINY, ShotStreamEngine
from service.protocol import pb
from service.sdk import Chunk, ServerError, ShotFinished, ShotStreamClient, TakeSaved, TakeStarted
from service.settings import ServerSettings
from service.background import BackgroundServer
from service_helpers import Direct as BaseDirect
from service_helpers import events_until, read_mp4, serving

CAPTION, SEED = "A lighthouse on a stormy coast.", 3


@pytest.fixture(scope="module")
def engine():
    return ShotStreamEngine.random(TINY, device="cpu", seed=0)


class Direct(BaseDirect):
    open_defaults = {"client_name": "takes", "global_caption": CAPTION, "seed": SEED}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_take_records_every_frame_sent(engine, tmp_path):
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, takes_dir=tmp_path / "takes")
    with BackgroundServer(engine, settings, grace=2.0) as server, ShotStreamClient(server.address) as client:
        with client.open_session(CAPTION, seed=SEED, transport="inline", frame_format="rgb8") as session:
            session.cue("The keeper climbs the stairs.", num_chunks=1, event_id="before")
            events_until(session, ShotFinished)  # not recorded: the take starts later
            session.start_take("storm-1")
            started = events_until(session, TakeStarted)[-1]
            assert started == TakeStarted("storm-1", str((tmp_path / "takes" / "storm-1.mp4").resolve()))
            session.cue("A wave hits the rocks.", num_chunks=2, event_id="wave")
            got = [ev.frames for ev in events_until(session, ShotFinished) if isinstance(ev, Chunk)]
            session.stop_take()
            saved = events_until(session, TakeSaved)[-1]
    sent = np.concatenate(got)
    path = Path(saved.path)
    assert (saved.name, path, saved.frames) == ("storm-1", tmp_path / "takes" / "storm-1.mp4", len(sent))
    assert saved.bytes == path.stat().st_size > 0
    assert saved.duration_s == pytest.approx(len(sent) / TINY.stream.fps)
    video = read_mp4(path)
    assert video.shape == sent.shape
    # lossy, but the same pictures in the same order: each frame is closer to its own source than to any other
    err = np.abs(video.astype(np.int16) - sent.astype(np.int16)).mean(axis=(1, 2, 3))
    assert err.max() < 40, err
    shifted = np.abs(video[1:].astype(np.int16) - sent[:-1].astype(np.int16)).mean(axis=(1, 2, 3))
    assert (err[1:] < shifted).all()


def test_bad_take_requests_are_non_fatal(engine, tmp_path):
    takes = tmp_path / "takes"
    takes.mkdir()
    (takes / "exists.mp4").write_bytes(b"keep me")
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, takes_dir=takes)
    with BackgroundServer(engine, settings, grace=2.0) as server, ShotStreamClient(server.address) as client:
        with client.open_session(CAPTION, seed=SEED, transport="inline") as session:
            cases = [(session.stop_take, (), grpc.StatusCode.FAILED_PRECONDITION, "no take is recording"),
                     (session.start_take, ("../escape",), grpc.StatusCode.INVALID_ARGUMENT, "not allowed"),
                     (session.start_take, (".hidden",), grpc.StatusCode.INVALID_ARGUMENT, "not allowed"),
                     (session.start_take, ("x" * 65,), grpc.StatusCode.INVALID_ARGUMENT, "not allowed"),
                     (session.start_take, ("exists",), grpc.StatusCode.ALREADY_EXISTS, "already exists")]
            for call, args, code, needle in cases:
                call(*args)
                error = events_until(session, ServerError)[-1]
                assert error.code == code and needle in error.message, (args, error)
            session.start_take()  # the server names it
            first = events_until(session, TakeStarted)[-1]
            assert first.name == f"{session.session_id}-take1"
            session.start_take("second")
            error = events_until(session, ServerError)[-1]
            assert error.code == grpc.StatusCode.FAILED_PRECONDITION and repr(first.name) in error.message
            session.stop_take()
            empty = events_until(session, TakeSaved)[-1]
            assert (empty.frames, empty.bytes) == (0, 0) and not Path(empty.path).exists()  # no unplayable file
            session.start_take("after")
            events_until(session, TakeStarted)
            session.cue("Still working.", num_chunks=1)
            assert any(isinstance(ev, Chunk) for ev in events_until(session, ShotFinished))
            session.stop_take()
            assert events_until(session, TakeSaved)[-1].frames == TINY.pixel_frames(1)
    assert (takes / "exists.mp4").read_bytes() == b"keep me"
    assert sorted(p.name for p in takes.iterdir()) == ["after.mp4", "exists.mp4"]


async def recording(stub, name: str, num_chunks: int) -> tuple[Direct, pb.TakeStarted, pb.FrameChunk]:
    """A session (one credit) recording take ``name`` whose first chunk has arrived."""
    d = Direct(stub)
    await d.open(max_chunks_in_flight=1)
    await d.send(start_take=pb.StartTake(name=name))
    started = await d.expect("take_started")
    await d.cue("walk", "The keeper climbs the stairs.", num_chunks)
    await d.expect("shot_started")
    return d, started, await d.expect("chunk")


async def kinds_until_end(d: Direct) -> tuple[list[str], pb.TakeSaved | None]:
    kinds, saved = [], None
    while (msg := await d.recv()) is not None:
        kinds.append(msg.WhichOneof("kind"))
        if kinds[-1] == "take_saved":
            saved = msg.take_saved
    return kinds, saved


def test_closing_while_recording_saves_the_take_first(engine, tmp_path):
    async def scenario():
        async with serving(engine, takes_dir=tmp_path) as (_, stub, _channel):
            d, started, chunk = await recording(stub, "cut-short", 2)
            await d.send(close=pb.Close())
            return (started, chunk, *await kinds_until_end(d))

    started, chunk, kinds, saved = run(scenario())
    assert kinds[-2:] == ["take_saved", "closed"], kinds
    assert saved.path == started.path and saved.frames >= chunk.num_frames
    assert len(read_mp4(Path(saved.path))) == saved.frames


def test_server_shutdown_saves_the_take(engine, tmp_path):
    async def scenario():
        async with serving(engine, takes_dir=tmp_path) as (server, stub, _channel):
            d, _, _ = await recording(stub, "shutdown", 1)
            stop = asyncio.create_task(server.stop(grace=5.0))
            kinds, _ = await kinds_until_end(d)
            await stop
            return kinds

    kinds = run(scenario())
    assert kinds[-2:] == ["take_saved", "closed"], kinds
    assert len(read_mp4(tmp_path / "shutdown.mp4")) == TINY.pixel_frames(1)


def test_client_vanishing_still_finishes_the_file(engine, tmp_path):
    async def scenario():
        async with serving(engine, takes_dir=tmp_path) as (server, stub, _channel):
            d, _, _ = await recording(stub, "gone", 1)
            d.call.cancel()
            for _ in range(500):  # the session is freed once its take is finished
                if not server.registry.sessions:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the session was not freed")

    run(scenario())
    assert len(read_mp4(tmp_path / "gone.mp4")) == TINY.pixel_frames(1)


def test_a_take_stopped_just_before_close_is_still_reported(engine, tmp_path):
    async def scenario():
        async with serving(engine, takes_dir=tmp_path) as (_, stub, _channel):
            d, _, _ = await recording(stub, "first", 1)
            await d.send(stop_take=pb.StopTake())  # still encoding when the session closes
            await d.send(start_take=pb.StartTake(name="second"))
            await d.send(close=pb.Close())
            return await kinds_until_end(d)

    kinds, _ = run(scenario())
    assert kinds.count("take_saved") == 2 and kinds[-1] == "closed", kinds
    assert len(read_mp4(tmp_path / "first.mp4")) == TINY.pixel_frames(1)
