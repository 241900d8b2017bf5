"""The Python SDK (sync and asyncio), ``shotstream demo``, ``story --server`` and ``bench``, end to end
against a real in-process server (127.0.0.1, free ports) running the tiny random engine.

pytest-asyncio is not used: async tests run under ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
import pytest

from engine_core import TINY, ShotStreamEngine
from service.background import BackgroundServer
from service.cli import main
from service.protocol import pb
from service.report import SCHEMA, ChunkTimings
from service.sdk import (AsyncShotStreamClient, Chunk, CueAccepted, Progress, ServerError, ShotFinished, ShotStarted,
                         ShotStreamClient, ShotStreamError, SnapshotReady, SnapshotRestored, Stats, TakeSaved,
                         TakeStarted)
from service.sdk.codec import SessionDecoder, server_info
from service.settings import ServerSettings
from service.story_file import load_story
from service_helpers import engine_chunks, events_until, read_mp4

ROOT = Path(__file__).resolve().parents[1]
STORY_01 = ROOT / "examples" / "stories" / "01.json"
CAPTION, SEED = "A lighthouse on a stormy coast.", 5
SHOTS = [("The keeper climbs the stairs.", 2), ("A wave hits the rocks.", 1)]
T = TypeVar("T")


@pytest.fixture(scope="module")
def engine():
    return ShotStreamEngine.random(TINY, device="cpu", seed=0, tae=True)  # both decoders: "wan" and "tae"


@pytest.fixture(scope="module")
def server(engine):
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1)
    with BackgroundServer(engine, settings, grace=2.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def takes_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("takes")


@pytest.fixture(scope="module")
def take_server(engine, takes_dir):
    """The full-quality take tests' own server: one that stops answering fails only those tests."""
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, takes_dir=takes_dir)
    with BackgroundServer(engine, settings, grace=2.0) as srv:
        yield srv


def reference(engine, shots=SHOTS, caption=CAPTION, seed=SEED) -> list[np.ndarray]:
    """Every chunk's RGB frames as the engine itself produces them."""
    return sum(engine_chunks(engine, shots, caption, seed), [])


def play(session, shots=SHOTS) -> tuple[list[Chunk], list]:
    for i, (prompt, n) in enumerate(shots):
        assert session.cue(prompt, num_chunks=n, event_id=f"e{i}", tags=("t",)) == f"e{i}"
    chunks, events, finished = [], [], 0
    for ev in session:
        events.append(ev)
        if isinstance(ev, Chunk):
            chunks.append(ev)
        elif isinstance(ev, ShotFinished):
            finished += 1
            if finished == len(shots):
                break
    return chunks, events


def check_chunks(chunks: list[Chunk], expected: list[np.ndarray], fmt: str) -> None:
    assert len(chunks) == len(expected)
    for got, want in zip(chunks, expected):
        assert got.frames.dtype == np.uint8
        if fmt == "rgba8":
            assert got.frames.shape == (*want.shape[:3], 4)
            assert (got.frames[..., 3] == 255).all()
            np.testing.assert_array_equal(got.frames[..., :3], want)
        else:
            np.testing.assert_array_equal(got.frames, want)
    assert [c.chunk_seq for c in chunks] == list(range(1, len(chunks) + 1))
    assert [(c.shot_index, c.chunk_index, c.first_frame, c.last_in_shot) for c in chunks] == \
        [(0, 0, 0, False), (0, 1, 9, True), (1, 0, 0, True)]
    assert [c.story_frame for c in chunks] == [0, 9, 21]
    assert all(c.timing is not None and c.timing.denoise_ms > 0 for c in chunks)


# -- sync client ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport, fmt", [("shared_memory", "rgb8"), ("inline", "rgba8"),
                                            ("shared_memory", "rgba8"), ("inline", "rgb8")])
def test_sync_session_frames_equal_the_engine(engine, server, transport, fmt):
    expected = reference(engine)
    with ShotStreamClient(server.address) as client:
        with client.open_session(CAPTION, seed=SEED, transport=transport, frame_format=fmt,
                                 client_name="test/sync") as session:
            info = session.info
            assert (info.width, info.height, info.fps) == (48, 32, 16)
            assert (info.frames_first_chunk, info.frames_per_chunk, info.max_chunks_per_shot) == (9, 12, 7)
            assert info.transport == transport and info.frame_format == fmt
            assert info.model == "tiny" and info.random_weights
            ring = info.ring_path
            assert (ring is not None) == (transport == "shared_memory")
            if ring:
                assert os.path.exists(ring)
            chunks, events = play(session)
        assert session.closed and session.close_reason == "client"
    check_chunks(chunks, expected, fmt)
    assert all(c.transport == transport and c.frame_format == fmt for c in chunks)
    kinds = [type(e) for e in events]
    assert kinds.count(CueAccepted) == 2 and kinds.count(ShotStarted) == 2 and kinds.count(ShotFinished) == 2
    started = [e for e in events if isinstance(e, ShotStarted)]
    assert [(s.event_id, s.tags, s.shot_index, s.num_chunks, s.num_frames) for s in started] == \
        [("e0", ("t",), 0, 2, 21), ("e1", ("t",), 1, 1, 9)]
    finished = [e for e in events if isinstance(e, ShotFinished)]
    assert [(f.event_id, f.chunks, f.frames, f.cut) for f in finished] == [("e0", 2, 21, False), ("e1", 1, 9, False)]
    # frames are the caller's: still intact after the session (and its ring) are gone
    check_chunks(chunks, expected, fmt)
    if ring:  # the server removes the ring file once the session has ended
        deadline = time.monotonic() + 5
        while os.path.exists(ring) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not os.path.exists(ring)


def test_server_info_and_render_story(engine, server):
    spec = load_story(STORY_01)
    shots = [(s.prompt, 1) for s in spec.shots]
    expected = reference(engine, shots, spec.global_caption, 3)
    with ShotStreamClient(server.address) as client:
        info = client.server_info()
        assert info.model == "tiny" and info.random_weights and info.protocol_version == 1
        assert (info.width, info.height, info.max_chunks_per_shot) == (48, 32, 7)
        # how the engine runs, as chosen at startup (CPU: exact SDPA, the eager path, no fp8)
        assert info.attention == engine.attention.describe() and info.attention.startswith("math")
        assert (info.fast_path, info.fp8) == ("eager", False)
        events = list(client.render_story(spec.global_caption, shots, seed=3))
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert len(chunks) == len(spec.shots) == 6
    for got, want in zip(chunks, expected):
        np.testing.assert_array_equal(got.frames, want)
    assert [e.shot_index for e in events if isinstance(e, ShotStarted)] == list(range(6))
    assert [e.frames for e in events if isinstance(e, ShotFinished)] == [9] * 6
    last = [e for e in events if isinstance(e, Progress)][-1]
    assert (last.shots_done, last.shots_total, last.frames_done, last.frames_total) == (6, 6, 54, 54)


def test_render_story_bad_request_raises(server):
    with ShotStreamClient(server.address) as client:
        with pytest.raises(ShotStreamError) as exc:
            list(client.render_story("g", [("", 1)]))
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "empty" in exc.value.message


def test_bad_cue_is_a_non_fatal_event_and_cut_works(server):
    with ShotStreamClient(server.address) as client, \
            client.open_session(CAPTION, transport="inline", chunks_in_flight=1) as session:
        with pytest.raises(ShotStreamError, match=r"num_chunks 99 is out of range 1\.\.7"):  # checked here first
            session.cue("too many chunks", num_chunks=99, event_id="bad")
        session.cue(" ", num_chunks=1, event_id="bad")  # only the server checks prompts
        session.cue("a long shot", num_chunks=7, event_id="long")
        errors, started, cut_sent = [], [], False
        for ev in session:
            if isinstance(ev, ServerError):
                errors.append(ev)
            elif isinstance(ev, ShotStarted):
                started.append(ev.event_id)
            elif isinstance(ev, Chunk) and not cut_sent:
                session.cue("cut to this", num_chunks=1, mode="cut", event_id="cut")
                cut_sent = True
            elif isinstance(ev, ShotFinished) and ev.event_id == "long":
                assert ev.cut and ev.chunks < 7
            elif isinstance(ev, ShotFinished) and ev.event_id == "cut":
                break
    assert [(e.event_id, e.code) for e in errors] == [("bad", grpc.StatusCode.INVALID_ARGUMENT)]
    assert "the prompt is empty" in errors[0].message
    assert started == ["long", "cut"]
    with pytest.raises(ShotStreamError, match="closed"):
        session.cue("after close")


def test_open_refused_raises_with_status(server):
    with ShotStreamClient(server.address) as client:
        with pytest.raises(ShotStreamError) as exc:
            client.open_session("x" * 20_000)
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "caption" in exc.value.message
    with ShotStreamClient("127.0.0.1:1") as client:  # nothing listens there
        with pytest.raises(ShotStreamError) as exc:
            client.server_info(timeout=5)
    assert exc.value.code == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ValueError, match="transport"):
        ShotStreamClient(server.address).open_session("g", transport="carrier-pigeon")


def test_shared_memory_on_another_host_says_use_inline():
    opened = pb.SessionOpened(session_id="s", transport=pb.TRANSPORT_SHARED_MEMORY,
                              ring=pb.RingLayout(path="/nonexistent/shotstream-1-s.ring", layout_version=1))
    with pytest.raises(ShotStreamError) as exc:
        SessionDecoder(opened, "gpu-box:50051")
    assert exc.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "transport='inline'" in exc.value.message and "same host" in exc.value.message


def test_close_from_another_thread_ends_iteration(server):
    with ShotStreamClient(server.address) as client:
        session = client.open_session(CAPTION, transport="shared_memory")
        session.cue("shot", num_chunks=7)
        got = []

        def consume():
            for ev in session:
                if isinstance(ev, Chunk):
                    got.append(ev)
                    if len(got) == 1:
                        threading.Thread(target=session.close).start()

        t = threading.Thread(target=consume)
        t.start()
        t.join(20)
        assert not t.is_alive()
        assert session.closed and session.close_reason == "client" and got


def test_token_is_sent_and_required(engine):
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, token="s3cret")
    with BackgroundServer(engine, settings, grace=1.0) as srv:
        with ShotStreamClient(srv.address) as client:
            with pytest.raises(ShotStreamError) as exc:
                client.server_info()
            assert exc.value.code == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(ShotStreamError) as exc:
                client.open_session("g")
            assert exc.value.code == grpc.StatusCode.UNAUTHENTICATED
        with ShotStreamClient(srv.address, token="s3cret") as client:
            assert client.server_info().model == "tiny"
            with client.open_session("g", transport="inline") as session:
                session.cue("one chunk", num_chunks=1)
                assert any(isinstance(ev, Chunk) for ev in _until_finished(session))


def _until_finished(session):
    for ev in session:
        yield ev
        if isinstance(ev, ShotFinished):
            return


# -- decoders and full-quality takes --------------------------------------------------------------


def decoded(engine, decoder: str, shots=SHOTS, caption=CAPTION, seed=SEED) -> list[np.ndarray]:
    """Every chunk's RGB frames as the engine's own story with ``decoder`` produces them."""
    story = engine.open_story(caption, seed, decoder)
    out = []
    try:
        for prompt, num_chunks in shots:
            story.start_shot(prompt, num_chunks)
            while story.shot_in_progress:
                out.append(story.step().frames.numpy())
    finally:
        story.close()
    return out


def within(seconds: float, fn: Callable[[], T]) -> T:
    """``fn()`` on a daemon thread: a server that stops answering fails the test instead of hanging the suite."""
    result: list = []

    def run() -> None:
        try:
            result.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            result.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"no answer from the server within {seconds:.0f} s; where the server's threads are:\n"
                    + server_stacks())
    ok, value = result[0]
    if not ok:
        raise value
    return value


def server_stacks() -> str:
    """The service's frames of every thread now (what a stuck server is waiting on)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        ours = [f"  {Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_stack(frame)
                if f"{os.sep}service{os.sep}" in f.filename and f"{os.sep}sdk{os.sep}" not in f.filename]
        if ours:
            out.append(f"{names.get(ident, ident)}:\n" + "\n".join(ours))
    return "\n".join(out)


def mean_error(video: np.ndarray, frames: np.ndarray) -> float:
    assert video.shape == frames.shape
    return float(np.abs(video.astype(np.int16) - frames.astype(np.int16)).mean())


def test_server_info_lists_the_decoders(engine, server):
    with ShotStreamClient(server.address) as client:
        info = client.server_info()
    assert info.decoders == ("wan", "tae") and info.default_decoder == "wan"
    assert info.tae == engine.tae_label and "random weights" in info.tae


def test_old_server_messages_mean_the_wan_decoder_and_live_takes():
    """Fields a server from before decoders and take qualities leaves unset."""
    info = server_info(pb.ServerInfo(model="tiny"))
    assert (info.decoders, info.default_decoder, info.tae) == (("wan",), "wan", "")
    decoder = SessionDecoder(pb.SessionOpened(session_id="s", transport=pb.TRANSPORT_INLINE), "old:50051")
    assert decoder.info.decoder == "wan"
    started = decoder.decode(pb.ServerMessage(take_started=pb.TakeStarted(name="t", path="/takes/t.mp4")))
    assert started == TakeStarted("t", "/takes/t.mp4", "live", "")
    saved = decoder.decode(pb.ServerMessage(take_saved=pb.TakeSaved(name="t", path="/takes/t.mp4", frames=9,
                                                                    bytes=100, duration_s=0.5625)))
    assert saved == TakeSaved("t", "/takes/t.mp4", 9, 100, 0.5625, "", 0)


@pytest.mark.parametrize("transport", ["inline", "shared_memory"])
def test_tae_session_frames_equal_the_engines_tae_story(engine, server, transport):
    expected, wan = decoded(engine, "tae"), reference(engine)
    with ShotStreamClient(server.address) as client:
        with client.open_session(CAPTION, seed=SEED, transport=transport, decoder="tae") as session:
            assert session.info.decoder == "tae"
            assert (session.info.frames_first_chunk, session.info.frames_per_chunk) == (9, 12)
            chunks, _ = play(session)
        for decoder, name in ((None, "wan"), ("wan", "wan"), ("TAE", "tae")):
            with client.open_session(CAPTION, transport="inline", decoder=decoder) as session:
                assert session.info.decoder == name, decoder
    check_chunks(chunks, expected, "rgb8")  # 9, 12 then 9 frames, where the engine puts them, equal
    assert [c.num_frames for c in chunks] == [9, 12, 9]
    assert not any(np.array_equal(c.frames, w) for c, w in zip(chunks, wan))  # the other decoder indeed


def test_default_decoder_is_the_servers(engine, tmp_path):
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, takes_dir=tmp_path,
                              default_decoder="tae")
    with BackgroundServer(engine, settings, grace=1.0) as srv, ShotStreamClient(srv.address) as client:
        assert client.server_info().default_decoder == "tae"
        with client.open_session(CAPTION, transport="inline") as session:
            assert session.info.decoder == "tae"
        with client.open_session(CAPTION, transport="inline", decoder="wan") as session:
            assert session.info.decoder == "wan"


def test_tae_on_a_server_without_it_is_refused(tmp_path):
    wan_only = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, takes_dir=tmp_path)
    with BackgroundServer(wan_only, settings, grace=1.0) as srv, ShotStreamClient(srv.address) as client:
        info = client.server_info()
        assert (info.decoders, info.default_decoder, info.tae) == (("wan",), "wan", "")
        with pytest.raises(ShotStreamError) as exc:
            client.open_session(CAPTION, transport="inline", decoder="tae")
    assert exc.value.code == grpc.StatusCode.FAILED_PRECONDITION and "'tae'" in exc.value.message


def test_full_take_of_a_tae_session_is_re_decoded_with_wan(engine, take_server, takes_dir):
    prompt, n = SHOTS[0]
    tae_frames, wan_frames = (np.concatenate(decoded(engine, d, [SHOTS[0]])) for d in ("tae", "wan"))

    def scenario():
        with ShotStreamClient(take_server.address) as client:
            with client.open_session(CAPTION, seed=SEED, transport="inline", decoder="tae") as session:
                session.start_take("tae-full", quality="full")
                started = events_until(session, TakeStarted)[-1]
                session.cue(prompt, num_chunks=n)
                got = [ev.frames for ev in events_until(session, ShotFinished) if isinstance(ev, Chunk)]
                session.stop_take()
                return started, got, events_until(session, TakeSaved)[-1]

    started, got, saved = within(60, scenario)
    folder = takes_dir.resolve()
    assert started == TakeStarted("tae-full", str(folder / "tae-full.mp4"), "full", str(folder / "tae-full.full.mp4"))
    sent = np.concatenate(got)
    np.testing.assert_array_equal(sent, tae_frames)
    assert (saved.name, saved.path, saved.full_path) == ("tae-full", started.path, started.full_path)
    assert saved.full_path.endswith(".full.mp4") and saved.path != saved.full_path
    assert saved.frames == len(sent) == 21
    assert saved.bytes == Path(saved.path).stat().st_size > 0
    assert saved.full_bytes == Path(saved.full_path).stat().st_size > 0
    live, full = read_mp4(saved.path), read_mp4(saved.full_path)
    assert live.shape == full.shape == sent.shape
    # H.264 is lossy: each file is far closer to its own decoder's frames than to the other's
    assert mean_error(full, wan_frames) < 20 < mean_error(full, tae_frames)
    assert mean_error(live, tae_frames) < mean_error(live, wan_frames)


def test_full_take_of_a_wan_session_is_its_live_take(engine, take_server, takes_dir):
    def scenario():
        with ShotStreamClient(take_server.address) as client:
            with client.open_session(CAPTION, seed=SEED, transport="inline", decoder="wan") as session:
                session.start_take("wan-full", quality="FULL")
                started = events_until(session, TakeStarted)[-1]
                session.cue("A wave hits the rocks.", num_chunks=1)
                events_until(session, ShotFinished)
                session.stop_take()
                saved = events_until(session, TakeSaved)[-1]
                session.start_take("wan-live")  # quality="live" by default: no full file
                live_started = events_until(session, TakeStarted)[-1]
                session.stop_take()
                return started, saved, live_started, events_until(session, TakeSaved)[-1]

    started, saved, live_started, live_saved = within(60, scenario)
    path = str(takes_dir.resolve() / "wan-full.mp4")
    assert started == TakeStarted("wan-full", path, "full", path)
    assert (saved.path, saved.full_path, saved.frames) == (path, path, 9)
    assert saved.full_bytes == saved.bytes == Path(path).stat().st_size > 0
    assert not (takes_dir / "wan-full.full.mp4").exists()
    assert (live_started.quality, live_started.full_path) == ("live", "")
    assert (live_saved.full_path, live_saved.full_bytes) == ("", 0)


def test_render_story_with_the_tae_decoder_and_a_full_take(engine, take_server, takes_dir):
    expected, wan = decoded(engine, "tae"), np.concatenate(decoded(engine, "wan", [SHOTS[0]]))

    def scenario():
        with ShotStreamClient(take_server.address) as client:
            events = list(client.render_story(CAPTION, SHOTS, seed=SEED, decoder="tae", take="story-full",
                                              take_quality="full", timeout=60))
            return events, list(client.render_story(CAPTION, SHOTS[:1], seed=SEED, decoder="tae", timeout=60))

    events, plain = within(60, scenario)
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert len(chunks) == len(expected) == 3
    for got, want in zip(chunks, expected):
        np.testing.assert_array_equal(got.frames, want)
    saved = events[-1]
    assert isinstance(saved, TakeSaved) and sum(isinstance(e, TakeSaved) for e in events) == 1
    assert (saved.name, saved.path) == ("story-full", str(takes_dir.resolve() / "story-full.mp4"))
    assert saved.full_path == str(takes_dir.resolve() / "story-full.full.mp4")
    assert saved.frames == 30 and saved.full_bytes == Path(saved.full_path).stat().st_size > 0
    full = read_mp4(saved.full_path)
    assert full.shape == (30, 32, 48, 3)
    # shot 0 has no history, so its latents are the Wan story's: the full file shows the Wan frames
    assert mean_error(full[:21], wan) < 20
    assert not any(isinstance(e, TakeSaved) for e in plain)
    assert len([e for e in plain if isinstance(e, Chunk)]) == 2


def test_bad_decoder_and_quality_raise_value_error(server):
    with ShotStreamClient(server.address) as client:
        with pytest.raises(ValueError, match=r"decoder must be one of \['tae', 'wan'\], got 'vae'"):
            client.open_session(CAPTION, decoder="vae")
        with pytest.raises(ValueError, match=r"decoder must be one of \['tae', 'wan'\]"):
            client.render_story(CAPTION, SHOTS, decoder="taew2_1")  # at the call, before iterating
        with pytest.raises(ValueError, match=r"quality must be one of \['full', 'live'\], got 'best'"):
            client.render_story(CAPTION, SHOTS, take="t", take_quality="best")
        with client.open_session(CAPTION, transport="inline") as session:
            with pytest.raises(ValueError, match=r"quality must be one of \['full', 'live'\], got 'high'"):
                session.start_take("t", quality="high")
            session.cue("still fine", num_chunks=1)  # nothing was sent: the session goes on
            assert any(isinstance(ev, Chunk) for ev in _until_finished(session))

    async def scenario():
        async with AsyncShotStreamClient(server.address) as client:
            with pytest.raises(ValueError, match="decoder must be one of"):
                await client.open_session(CAPTION, decoder=3.5)
            with pytest.raises(ValueError, match="quality must be one of"):
                client.render_story(CAPTION, SHOTS, take="", take_quality=None)
            async with await client.open_session(CAPTION, transport="inline") as session:
                with pytest.raises(ValueError, match="quality must be one of"):
                    await session.start_take(quality="lossless")

    asyncio.run(asyncio.wait_for(scenario(), 30))


# -- asyncio client -------------------------------------------------------------------------------


def test_async_client_both_transports(engine, server):
    expected = reference(engine)

    async def scenario(transport: str, fmt: str):
        async with AsyncShotStreamClient(server.address) as client:
            info = await client.server_info()
            assert info.model == "tiny"
            async with await client.open_session(CAPTION, seed=SEED, transport=transport, frame_format=fmt) as session:
                assert session.info.transport == transport
                for i, (prompt, n) in enumerate(SHOTS):
                    await session.cue(prompt, num_chunks=n, event_id=f"e{i}", tags=["t"])
                chunks, finished = [], 0
                async for ev in session:
                    if isinstance(ev, Chunk):
                        chunks.append(ev)
                    elif isinstance(ev, ShotFinished):
                        finished += 1
                        if finished == len(SHOTS):
                            break
            assert session.closed and session.close_reason == "client"
            story = [ev async for ev in client.render_story(CAPTION, SHOTS, seed=SEED, frame_format=fmt)]
            return chunks, [e for e in story if isinstance(e, Chunk)]

    for transport, fmt in [("shared_memory", "rgba8"), ("inline", "rgb8")]:
        chunks, story_chunks = asyncio.run(asyncio.wait_for(scenario(transport, fmt), 60))
        check_chunks(chunks, expected, fmt)
        assert len(story_chunks) == 3
        for got, want in zip(story_chunks, expected):
            np.testing.assert_array_equal(got.frames[..., :3], want)


def test_async_fatal_error_raises(server):
    async def scenario():
        async with AsyncShotStreamClient(server.address) as client:
            with pytest.raises(ShotStreamError) as exc:
                await client.open_session("g", chunks_in_flight=1000)
            return exc.value

    err = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "max_chunks_in_flight" in err.message


def test_async_tae_session_full_take_and_story_take(engine, take_server, takes_dir):
    expected = decoded(engine, "tae")

    async def scenario():
        async with AsyncShotStreamClient(take_server.address) as client:
            assert (await client.server_info()).decoders == ("wan", "tae")
            async with await client.open_session(CAPTION, seed=SEED, transport="shared_memory",
                                                 decoder="tae") as session:
                assert session.info.decoder == "tae"
                await session.start_take("async-full", quality="full")
                await session.cue(*SHOTS[0])
                events = []
                async for ev in session:
                    events.append(ev)
                    if isinstance(ev, ShotFinished):
                        await session.stop_take()
                    elif isinstance(ev, TakeSaved):
                        break
            story = [ev async for ev in client.render_story(CAPTION, SHOTS, seed=SEED, decoder="tae",
                                                            take="", take_quality="full")]
            return events, story

    events, story = asyncio.run(asyncio.wait_for(scenario(), 60))
    started = next(e for e in events if isinstance(e, TakeStarted))
    assert (started.quality, started.full_path) == ("full", str(takes_dir.resolve() / "async-full.full.mp4"))
    chunks = [e for e in events if isinstance(e, Chunk)]
    for got, want in zip(chunks, expected[:2], strict=True):
        np.testing.assert_array_equal(got.frames, want)
    saved = events[-1]
    assert saved.full_path == started.full_path != saved.path and saved.frames == 21
    assert saved.full_bytes == Path(saved.full_path).stat().st_size > 0
    story_saved = story[-1]
    assert isinstance(story_saved, TakeSaved) and story_saved.name  # "" = the server named it
    assert story_saved.full_path.endswith(f"{story_saved.name}.full.mp4") and story_saved.frames == 30
    assert Path(story_saved.full_path).stat().st_size == story_saved.full_bytes > 0


# -- CLI: demo, story --server, bench -------------------------------------------------------------


def _mp4_frames(path: Path) -> tuple[tuple[int, int], int]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return tuple(meta["size"]), sum(1 for _ in reader)


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert _mp4_frames(out / "story.mp4") == ((48, 32), 3 * 81)
    report = json.loads((out / "timings.json").read_text())
    assert report["transport"] == "shared_memory" and report["random_weights"] is True
    assert report["frames"] == 243 and report["model"] == "tiny"
    assert report["delivered_fps"] > 0 and report["transport_ms_mean"] is not None
    assert report["schema"] == SCHEMA and report["story_file"] and report["video"] == str(out / "story.mp4")
    assert [s["index"] for s in report["shots"]] == [0, 1, 2]
    for shot in report["shots"]:
        assert shot["frames"] == 81 and sum(c["shot"] == shot["index"] for c in report["chunks"]) == 7
        assert shot["first_frame_ms"] > 0 and shot["server_first_frame_ms"] > 0
    for c in report["chunks"]:
        assert set(c) == set(ChunkTimings.__annotations__)
        assert c["denoise_ms"] > 0 and c["queue_ms"] >= 0 and c["copy_ms"] >= 0
    assert "random weights" in err and "noise-like" in err
    assert "service stopped" in err and "Traceback" not in err


@pytest.mark.parametrize("transport", ["inline", "shm"])
def test_story_through_a_server(engine, server, tmp_path, capsys, transport):
    story = tmp_path / "story.json"
    story.write_text(json.dumps({"global_caption": CAPTION, "seed": SEED,
                                 "shots": [{"prompt": p, "chunks": n} for p, n in SHOTS] + ["never played"]}))
    out, report_path = tmp_path / "s.mp4", tmp_path / "r.json"
    rc = main(["story", str(story), "--out", str(out), "--server", server.address, "--transport", transport,
               "--report", str(report_path), "--shots", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert _mp4_frames(out) == ((48, 32), 30)
    report = json.loads(report_path.read_text())
    assert report["transport"] == {"shm": "shared_memory"}.get(transport, transport)
    assert report["seed"] == SEED and report["frames"] == 30 and report["video"] == str(out)
    assert [c["shot"] for c in report["chunks"]] == [0, 0, 1]
    assert "shot 0 chunk 1: 12 frames" in captured.err  # the progress line (one per chunk when not a terminal)
    assert "30/30 frames" in captured.err
    assert "random weights" in captured.err
    assert captured.out == ""


def test_story_against_nothing_fails_cleanly(tmp_path, capsys):
    story = tmp_path / "story.json"
    story.write_text(json.dumps({"global_caption": "g", "shot1": "a"}))
    rc = main(["story", str(story), "--out", str(tmp_path / "x.mp4"), "--server", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: UNAVAILABLE") and "Traceback" not in err


def test_bench_prints_ratios(capsys):
    rc = main(["bench", "--frames", "12", "--in-process"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads(captured.out)
    assert result["frame_shape"] == [480, 832, 4]
    for name in ("inline", "shared_memory", "websocket"):
        assert result[f"{name}_fps"] > 0, result["transports"][name]
        assert 0 < result[f"{name}_vs_memcpy"]
        assert result["transports"][name]["frames"] >= 12
    assert result["numpy_memcpy_fps"] > 0


# -- story snapshots, fork, cue logs: client side (no server) --------------------------------------


def a_snapshot(engine, shots=SHOTS, caption=CAPTION, seed=SEED, decoder="wan") -> bytes:
    """A real snapshot of the engine's story after ``shots``."""
    story = engine.open_story(caption, seed, decoder)
    try:
        for prompt, n in shots:
            story.start_shot(prompt, n)
            while story.shot_in_progress:
                story.step()
        return story.snapshot().to_bytes()
    finally:
        story.close()


def _longer(data: bytes, extra: int) -> bytes:
    """``data`` with ``extra`` zero bytes of payload more, its header saying so (its checksum no longer matches)."""
    import struct

    end = 20 + struct.unpack_from("<Q", data, 12)[0]
    header = json.loads(data[20:end])
    header["payload_bytes"] += extra
    text = json.dumps(header).encode()
    return data[:12] + struct.pack("<Q", len(text)) + text + data[end:] + bytes(extra)


def test_the_sdk_does_not_import_torch_or_the_engine():
    code = ("import sys, service.sdk; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'engine_core', 'safetensors')); print(bad); sys.exit(1 if bad else 0)")
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_snapshot_info_reads_what_the_engine_wrote(engine):
    from engine_core.snapshot import SnapshotHeader

    from service.sdk import snapshot_info

    for decoder in ("wan", "tae"):
        data = a_snapshot(engine, decoder=decoder)
        info, header = snapshot_info(data), SnapshotHeader.read(data)
        assert (info.global_caption, info.seed, info.shot_lengths, info.total_bytes) == \
            (header.global_caption, header.seed, header.shot_lengths, header.total_bytes) == \
            (CAPTION, SEED, (21, 9), len(data))
        assert (info.decoder, info.model, info.version) == (decoder, "tiny", 1)
        assert (info.next_shot_index, info.story_frames) == (2, 30)
    for bad, needle in [(b"", "does not start with SHOTSNAP"), (b"PNG\x89" + data[4:], "does not start with SHOTSNAP"),
                        (data[:30], "truncated"), (data[:-1], "truncated or padded"), (data + b"\0", "padded")]:
        with pytest.raises(ShotStreamError, match=needle) as exc:
            snapshot_info(bad)
        assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    broken = bytearray(data)
    broken[22:26] = b"{{{{"  # inside the JSON header
    with pytest.raises(ShotStreamError, match="header .* cannot be read"):
        snapshot_info(bytes(broken))


def test_open_messages_carry_a_snapshot_in_parts(engine):
    import base64

    from service.sdk.codec import open_messages
    from service.sdk.story_state import SNAPSHOT_PART_BYTES

    data = a_snapshot(engine, decoder="tae")
    assert SNAPSHOT_PART_BYTES == 32 * 1024
    assert len(open_messages(None, None, "inline", "rgba8", 3, "test", snapshot=data)) == 1  # tiny: one part
    big = _longer(data, 3 * SNAPSHOT_PART_BYTES)  # as long as a real model's, for the splitting only
    msgs = open_messages(None, None, "inline", "rgba8", 3, "test", snapshot=big)
    assert len(msgs) == 4
    first = msgs[0].open
    assert (first.global_caption, first.seed, first.decoder) == (CAPTION, SEED, pb.DECODER_TAE)
    assert (first.transport, first.frame_format, first.max_chunks_in_flight) == (pb.TRANSPORT_INLINE,
                                                                                 pb.FRAME_FORMAT_RGBA8, 3)
    parts = [first.snapshot] + [m.snapshot_part for m in msgs[1:]]
    assert all(m.WhichOneof("kind") == "snapshot_part" for m in msgs[1:])
    assert b"".join(p.data for p in parts) == big
    assert [p.index for p in parts] == list(range(len(parts)))
    assert {p.count for p in parts} == {len(parts)} and {p.total_bytes for p in parts} == {len(big)}
    assert max(len(p.data) for p in parts) == SNAPSHOT_PART_BYTES
    for m in msgs:  # within max_control_message_bytes, on gRPC and as the gateway's JSON (base64 bytes)
        assert m.ByteSize() < 64 * 1024
        from google.protobuf import json_format
        assert len(json_format.MessageToJson(m, indent=None).encode()) < 64 * 1024
    assert len(base64.b64encode(parts[0].data)) < 64 * 1024
    # the user's own caption / seed / decoder: the same ones are fine, others are mistakes
    same = open_messages(CAPTION, SEED, "inline", "rgb8", 2, "t", "wan", snapshot=data)
    assert same[0].open.decoder == pb.DECODER_WAN  # asked for: the server refuses the mismatch by name
    with pytest.raises(ValueError, match="another global caption"):
        open_messages("Another story.", None, "inline", "rgb8", 2, "t", snapshot=data)
    with pytest.raises(ValueError, match=f"seed {SEED}"):
        open_messages(None, SEED + 1, "inline", "rgb8", 2, "t", snapshot=data)
    with pytest.raises(ShotStreamError, match="truncated"):
        open_messages(None, None, "inline", "rgb8", 2, "t", snapshot=data[:-10])
    with pytest.raises(TypeError, match="needs a global_caption"):
        open_messages(None, None, "inline", "rgb8", 2, "t")
    fork = open_messages(None, None, "inline", "rgb8", 2, "t", fork=("abc", False))[0].open
    assert (fork.fork.session_id, fork.fork.wait_for_boundary, fork.global_caption) == ("abc", False, "")
    assert not fork.HasField("snapshot")
    with pytest.raises(ValueError, match="not both"):
        open_messages(None, None, "inline", "rgb8", 2, "t", snapshot=data, fork=("abc", True))
    with pytest.raises(ValueError, match="caption and seed are that session's"):
        open_messages("g", None, "inline", "rgb8", 2, "t", fork=("abc", True))


def test_cue_at_chunk_and_cue_log_requests():
    from service.sdk.codec import cue_message, story_request

    _, msg = cue_message("cut here", 2, "cut", "c", (), 7, at_chunk=3)
    assert (msg.cue.mode, msg.cue.at_chunk, msg.cue.num_chunks) == (pb.CUE_MODE_CUT, 3, 2)
    assert cue_message("wait", 0, "wait", "w", ())[1].cue.at_chunk == 0
    with pytest.raises(ValueError, match="needs mode='cut'"):
        cue_message("wait", 0, "wait", "w", (), at_chunk=2)
    with pytest.raises(ValueError, match="at_chunk"):
        cue_message("cut", 0, "cut", "w", (), at_chunk=-1)
    log = pb.CueLog(global_caption=CAPTION, seed=SEED, decoder=pb.DECODER_TAE, entries=[
        pb.CueLogEntry(cue=pb.Cue(prompt="a", num_chunks=2), shot_index=0, chunks=2, finished=True)])
    request = story_request(None, None, None, "rgb8", cue_log=log)
    assert request.cue_log == log and not request.shots
    assert (request.global_caption, request.seed, request.decoder) == (CAPTION, SEED, pb.DECODER_UNSPECIFIED)
    assert story_request(CAPTION, (), SEED, "rgb8", decoder="wan", cue_log=log).decoder == pb.DECODER_WAN
    with pytest.raises(ValueError, match="not both"):
        story_request(None, SHOTS, None, "rgb8", cue_log=log)
    with pytest.raises(ValueError, match="its own seed"):
        story_request(None, None, SEED + 1, "rgb8", cue_log=log)
    with pytest.raises(TypeError, match="must be a CueLog"):
        story_request(None, None, None, "rgb8", cue_log={"entries": []})
    with pytest.raises(TypeError, match="needs a global_caption and shots"):
        story_request(None, None, None, "rgb8")
    assert story_request(CAPTION, SHOTS, None, "rgb8").seed == 0


def test_cue_logs_merge_save_load_and_become_shots(tmp_path):
    from service.sdk import load_cue_log, save_cue_log
    from service.sdk.story_state import cue_log_shots, merge_cue_log

    def entry(i, chunks, finished=True, cut=False):
        return pb.CueLogEntry(cue=pb.Cue(event_id=f"e{i}", prompt=f"shot {i}", num_chunks=7 if cut else chunks,
                                         mode=pb.CUE_MODE_CUT if i == 2 else pb.CUE_MODE_WAIT, at_chunk=0),
                              shot_index=i, chunks=chunks, cut=cut, finished=finished)

    head = dict(global_caption=CAPTION, seed=2**40, decoder=pb.DECODER_TAE, first_shot_index=3)
    pages = [pb.CueLog(**head, entries=[entry(3, 2), entry(4, 3, cut=True)], next_shot=5),
             pb.CueLog(**head, entries=[entry(4, 3, cut=True), entry(5, 1), entry(6, 1, finished=False)])]
    log = merge_cue_log(pages)
    assert [e.shot_index for e in log.entries] == [3, 4, 5, 6] and log.next_shot == 0
    assert (log.global_caption, log.seed, log.first_shot_index) == (CAPTION, 2**40, 3)
    assert cue_log_shots(log) == [("shot 3", 2), ("shot 4", 3), ("shot 5", 1)]  # the unfinished shot is left out
    path = tmp_path / "logs" / "session.json"
    save_cue_log(log, path)
    text = json.loads(path.read_text())
    assert text["global_caption"] == CAPTION and text["entries"][1]["cut"] is True  # the proto's names
    assert load_cue_log(path) == log
    path.write_text('{"entries": [{"shot_index": "x"}]}')
    with pytest.raises(ValueError, match="not a cue log"):
        load_cue_log(path)
    gap = pb.CueLog(entries=[entry(0, 1), entry(2, 1)])
    with pytest.raises(ValueError, match="shot 2 where shot 1 was due"):
        cue_log_shots(gap)
    with pytest.raises(ValueError, match="lost its oldest 4 shot"):
        cue_log_shots(pb.CueLog(dropped_shots=4, entries=[entry(4, 1)]))


def test_snapshot_parts_are_assembled_in_order():
    decoder = SessionDecoder(pb.SessionOpened(session_id="s", transport=pb.TRANSPORT_INLINE), "fake")
    data = bytes(range(256)) * 5

    def part(i, size=500, total=len(data)):
        return pb.ServerMessage(snapshot=pb.SnapshotPart(data=data[i * size:(i + 1) * size], total_bytes=total,
                                                         index=i, count=3, next_shot_index=4))

    assert decoder.decode(part(0)) is None and decoder.decode(part(1)) is None
    ready = decoder.decode(part(2))
    assert ready == SnapshotReady(data, 4) and ready.size == 1280
    assert decoder.decode(part(0)) is None  # a second snapshot starts over
    with pytest.raises(ShotStreamError) as exc:
        decoder.decode(part(2))
    assert exc.value.code == grpc.StatusCode.DATA_LOSS and "part 2" in exc.value.message
    restored = decoder.decode(pb.ServerMessage(restored=pb.SnapshotRestored(next_shot_index=2, story_frames=30)))
    assert restored == SnapshotRestored(2, 30)


class FakeDirect:
    """A scripted ``Direct`` call for the sync Session: ``respond(msg)`` lists the ServerMessages that answer each
    client message; everything the client sent is in ``received``."""

    def __init__(self, respond):
        self.respond, self.received = respond, []
        self.out: queue.Queue = queue.Queue()
        self.address, self._metadata = "fake:1", ()
        self._stub = self

    def Direct(self, requests, metadata=None):  # noqa: N802 - the stub's name
        def consume():
            for msg in requests:
                self.received.append(msg)
                for reply in self.respond(msg):
                    self.out.put(reply)
                if msg.WhichOneof("kind") == "close":
                    self.out.put(pb.ServerMessage(closed=pb.SessionClosed(reason="client")))
            self.out.put(None)

        threading.Thread(target=consume, daemon=True).start()
        return self

    def __iter__(self):
        return self

    def __next__(self):
        msg = self.out.get(timeout=10)
        if msg is None:
            self.out.put(None)
            raise StopIteration
        return msg

    def cancel(self):
        self.out.put(None)

    def sent(self, kind: str, at_least: int = 0) -> list:
        """The messages of ``kind`` the client sent (waiting a little for ``at_least`` of them: the call's
        request thread takes them from the session's queue)."""
        deadline = time.monotonic() + 5
        while True:
            out = [getattr(m, kind) for m in list(self.received) if m.WhichOneof("kind") == kind]
            if len(out) >= at_least or time.monotonic() > deadline:
                return out
            time.sleep(0.01)


def fake_chunk(seq: int, shot: int) -> pb.ServerMessage:
    return pb.ServerMessage(chunk=pb.FrameChunk(chunk_seq=seq, shot_index=shot, num_frames=1, width=2, height=2,
                                                frame_format=pb.FRAME_FORMAT_RGB8, pixels=bytes([seq]) * 12))


def scripted_server(snapshot: bytes, log_pages: dict[int, pb.CueLog]):
    def respond(msg):
        kind = msg.WhichOneof("kind")
        if kind == "open":
            return [pb.ServerMessage(opened=pb.SessionOpened(session_id="s1", transport=pb.TRANSPORT_INLINE))]
        if kind == "snapshot":
            if not msg.snapshot.wait_for_boundary:  # as the server answers mid-shot
                return [pb.ServerMessage(error=pb.Error(code=grpc.StatusCode.FAILED_PRECONDITION.value[0],
                                                        message="a shot is in progress: no snapshot now"))]
            half = len(snapshot) // 2  # the shot in progress ends first, then the parts, then the next shot
            return [fake_chunk(1, 0), pb.ServerMessage(shot_finished=pb.ShotFinished(event_id="a", shot_index=0)),
                    pb.ServerMessage(snapshot=pb.SnapshotPart(data=snapshot[:half], total_bytes=len(snapshot),
                                                              index=0, count=2, next_shot_index=1)),
                    pb.ServerMessage(stats=pb.Stats(chunks_sent=1)),
                    pb.ServerMessage(snapshot=pb.SnapshotPart(data=snapshot[half:], total_bytes=len(snapshot),
                                                              index=1, count=2, next_shot_index=1)),
                    pb.ServerMessage(shot_started=pb.ShotStarted(event_id="b", shot_index=1)), fake_chunk(2, 1)]
        if kind == "cue_log":
            return [pb.ServerMessage(cue_log=log_pages.get(msg.cue_log.from_shot, pb.CueLog()))]
        return []

    return respond


def test_snapshot_and_cue_log_keep_the_events_they_read():
    from service.sdk import Session

    data = b"snapshot bytes" * 100
    entries = [pb.CueLogEntry(cue=pb.Cue(prompt=f"p{i}"), shot_index=i, chunks=1, finished=True) for i in range(3)]
    pages = {0: pb.CueLog(global_caption="g", entries=entries[:2], next_shot=2),
             2: pb.CueLog(global_caption="g", entries=entries[2:])}
    fake = FakeDirect(scripted_server(data, pages))
    session = Session(fake, codec_open("g"))
    assert session.session_id == "s1"
    with pytest.raises(ShotStreamError) as exc:  # refused mid-shot: raised, not kept
        session.snapshot(wait_for_boundary=False, timeout=5)
    assert exc.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert session.snapshot(timeout=5) == data
    assert [m.chunk_seq for m in fake.sent("ack", 1)] == [1]  # acknowledged while waiting: the shot could end
    log = session.cue_log(timeout=5)
    assert [e.cue.prompt for e in log.entries] == ["p0", "p1", "p2"] and log.next_shot == 0
    assert [m.from_shot for m in fake.sent("cue_log")] == [0, 2]
    events = [session.next_event() for _ in range(5)]
    assert [type(e) for e in events] == [Chunk, ShotFinished, Stats, ShotStarted, Chunk]
    assert [e.chunk_seq for e in events if isinstance(e, Chunk)] == [1, 2]
    assert [m.chunk_seq for m in fake.sent("ack", 2)] == [1, 2]
    # nothing answers this request: the wait ends at its timeout (a cue-log ping wakes the read) ...
    fake.respond = lambda msg: [] if msg.WhichOneof("kind") == "snapshot" else scripted_server(data, pages)(msg)
    t0 = time.monotonic()
    with pytest.raises(ShotStreamError) as exc:
        session.snapshot(timeout=0.3)
    assert exc.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and 0.3 <= time.monotonic() - t0 < 5
    assert fake.sent("cue_log")[-1].from_shot == 2**32 - 1
    # ... and the session goes on
    fake.out.put(pb.ServerMessage(cue_accepted=pb.CueAccepted(event_id="late")))
    assert session.next_event() == CueAccepted("late", 0)
    session.close()
    assert session.closed and session.close_reason == "client"


def codec_open(caption: str) -> list:
    from service.sdk.codec import open_messages

    return open_messages(caption, None, "inline", "rgb8", 2, "test")


def test_async_snapshot_and_cue_log_keep_the_events_they_read():
    from service.sdk import AsyncSession

    data = b"async snapshot" * 100
    pages = {0: pb.CueLog(global_caption="g", entries=[pb.CueLogEntry(shot_index=0, chunks=1, finished=True)])}
    respond = scripted_server(data, pages)
    silent: set[str] = set()  # kinds of message the fake server stops answering

    class FakeAsyncCall:
        def __init__(self):
            self.out: asyncio.Queue = asyncio.Queue()
            self.received: list = []

        async def write(self, msg):
            self.received.append(msg)
            for reply in ([] if msg.WhichOneof("kind") in silent else respond(msg)):
                self.out.put_nowait(reply)
            if msg.WhichOneof("kind") == "close":
                self.out.put_nowait(pb.ServerMessage(closed=pb.SessionClosed(reason="client")))

        async def read(self):
            return await asyncio.wait_for(self.out.get(), 10)

        async def done_writing(self):
            self.out.put_nowait(grpc.aio.EOF)

        def cancel(self):
            return True

    async def scenario():
        call = FakeAsyncCall()

        class Client:
            address, _metadata = "fake:1", ()

            class _stub:  # noqa: N801
                @staticmethod
                def Direct(metadata=None):  # noqa: N802
                    return call

        session = AsyncSession(Client(), codec_open("g"))
        await session._open()
        assert await session.snapshot(timeout=5) == data
        log = await session.cue_log(timeout=5)
        events = [await session.next_event() for _ in range(5)]
        with pytest.raises(ShotStreamError) as exc:
            await session.snapshot(wait_for_boundary=False)
        silent.add("snapshot")  # nothing answers: the wait ends at its timeout, woken by a cue-log ping
        with pytest.raises(ShotStreamError) as late:
            await session.snapshot(timeout=0.2)
        call.out.put_nowait(pb.ServerMessage(cue_accepted=pb.CueAccepted(event_id="late")))
        after = await session.next_event()  # the session goes on
        await session.close()
        return call, log, events, exc.value, late.value, after

    call, log, events, refused, late, after = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert late.code == grpc.StatusCode.DEADLINE_EXCEEDED and after == CueAccepted("late", 0)
    assert call.received[-2].cue_log.from_shot == 2**32 - 1 and call.received[-1].WhichOneof("kind") == "close"
    assert len(log.entries) == 1
    assert [type(e) for e in events] == [Chunk, ShotFinished, Stats, ShotStarted, Chunk]
    assert [m.ack.chunk_seq for m in call.received if m.WhichOneof("kind") == "ack"] == [1, 2]
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION


# -- story snapshots, fork, cue logs: live, against the real server ---------------------------------

PART = 4096  # the server's snapshot parts: a tiny story's snapshot (~13 KB) comes in several
TAIL = [("The lamp flares on.", 2), ("A ship turns away.", 1)]


@pytest.fixture(scope="module")
def snap_server(engine):
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, snapshot_part_bytes=PART,
                              max_sessions=4, max_sessions_per_peer=4)
    with BackgroundServer(engine, settings, grace=2.0) as srv:
        yield srv


def chunks_of(events) -> list[Chunk]:
    return [e for e in events if isinstance(e, Chunk)]


def play_shots(session, shots, first_id: int = 0) -> list:
    """Cue ``shots`` (WAIT) and read until the last one's ShotFinished; returns the events."""
    for i, (prompt, n) in enumerate(shots):
        session.cue(prompt, num_chunks=n, event_id=f"e{first_id + i}")
    events = []
    for _ in shots:
        events += events_until(session, ShotFinished)
    return events


def test_snapshot_then_restore_continues_like_an_uninterrupted_session(engine, snap_server, monkeypatch):
    from service.sdk import codec, snapshot_info

    monkeypatch.setattr(codec, "SNAPSHOT_PART_BYTES", 1000)  # the upload in many parts too
    expected = np.concatenate(reference(engine, SHOTS + TAIL))  # first, while the server is idle

    def scenario():
        with ShotStreamClient(snap_server.address) as client:
            with client.open_session(CAPTION, seed=SEED, transport="inline") as whole:
                uninterrupted = chunks_of(play_shots(whole, SHOTS + TAIL))
            # credits 1: shot 0 cannot end before the request is in, so the snapshot is at its end exactly
            with client.open_session(CAPTION, seed=SEED, transport="inline", chunks_in_flight=1) as first:
                for i, (prompt, n) in enumerate(SHOTS):
                    first.cue(prompt, num_chunks=n, event_id=f"e{i}")
                before = events_until(first, ShotStarted)
                data = first.snapshot(wait_for_boundary=True, timeout=60)
                after = events_until(first, ShotFinished) + events_until(first, ShotFinished)
            with client.open_session(snapshot=data, transport="shared_memory") as second:
                restored = events_until(second, SnapshotRestored)
                tail = play_shots(second, SHOTS[1:] + TAIL, first_id=1)
            return uninterrupted, before + after, data, restored, tail

    uninterrupted, first, data, restored, tail = within(90, scenario)
    np.testing.assert_array_equal(np.concatenate([c.frames for c in uninterrupted]), expected)
    # what snapshot() read while it waited came back through iteration, in order: shot 0's end, then shot 1
    kinds = [(type(e).__name__, getattr(e, "event_id", None)) for e in first
             if isinstance(e, (ShotStarted, ShotFinished))]
    assert kinds == [("ShotStarted", "e0"), ("ShotFinished", "e0"), ("ShotStarted", "e1"), ("ShotFinished", "e1")]
    assert [c.chunk_seq for c in chunks_of(first)] == [1, 2, 3]
    info = snapshot_info(data)
    assert (info.next_shot_index, info.shot_lengths, info.global_caption, info.seed) == (1, (21,), CAPTION, SEED)
    assert len(codec.open_messages(None, None, "inline", "rgb8", 2, "t", snapshot=data)) == -(-len(data) // 1000)
    assert restored == [SnapshotRestored(next_shot_index=1, story_frames=21)]  # before any other event
    got = chunks_of(tail)
    assert [(c.shot_index, c.story_frame) for c in got] == [(c.shot_index, c.story_frame) for c in uninterrupted[2:]]
    for a, b in zip(got, uninterrupted[2:], strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
    for a, b in zip(chunks_of(first), uninterrupted[:3], strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)


def test_request_snapshot_is_an_event_and_refusals_are_clear(engine, snap_server):
    good = a_snapshot(engine, SHOTS[:1])

    def scenario():
        with ShotStreamClient(snap_server.address) as client:
            with client.open_session(CAPTION, seed=SEED, transport="inline", chunks_in_flight=1) as session:
                session.cue(*SHOTS[0], event_id="long")
                events_until(session, ShotStarted)
                with pytest.raises(ShotStreamError) as refused:  # a shot in progress, and no waiting asked for
                    session.snapshot(wait_for_boundary=False)
                session.request_snapshot()
                events = events_until(session, SnapshotReady)
            with pytest.raises(ShotStreamError) as truncated:  # checked here, before anything is sent
                client.open_session(snapshot=good[:-5], transport="inline")
            with pytest.raises(ShotStreamError) as other_decoder:
                client.open_session(snapshot=good, transport="inline", decoder="tae")
            tampered = bytearray(good)
            tampered[-3] ^= 0xFF
            with client.open_session(snapshot=bytes(tampered), transport="inline") as session:
                with pytest.raises(ShotStreamError) as damaged:
                    events_until(session, SnapshotRestored)
            return refused.value, events, truncated.value, other_decoder.value, damaged.value

    refused, events, truncated, other_decoder, damaged = within(60, scenario)
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION and "wait_for_boundary" in refused.message
    ready = events[-1]
    assert ready.next_shot_index == 1 and ready.data[:8] == b"SHOTSNAP"
    assert [type(e) for e in events if not isinstance(e, (Chunk, Stats))] == [ShotFinished, SnapshotReady]
    assert ready.data == good  # the same story as the engine's own snapshot of it
    assert truncated.code == grpc.StatusCode.INVALID_ARGUMENT and "truncated" in truncated.message
    assert other_decoder.code == grpc.StatusCode.FAILED_PRECONDITION and "'wan'" in other_decoder.message
    assert damaged.code == grpc.StatusCode.INVALID_ARGUMENT


def test_fork_continues_another_session_at_its_boundary(engine, snap_server):
    ending_a, ending_b = TAIL[0], ("Fog rolls over the rocks.", 1)
    want_a, want_b = reference(engine, [SHOTS[0], ending_a]), reference(engine, [SHOTS[0], ending_b])

    def scenario():
        with ShotStreamClient(snap_server.address) as client:
            with client.open_session(CAPTION, seed=SEED, transport="inline", chunks_in_flight=1) as a:
                a.cue(*SHOTS[0], event_id="e0")
                events_until(a, ShotStarted)
                with pytest.raises(ShotStreamError) as refused:
                    client.fork(a, wait_for_boundary=False, transport="inline")
                with client.fork(a.session_id, transport="inline") as b:  # waits for a's shot to end
                    prefix = chunks_of(events_until(a, ShotFinished))
                    restored = events_until(b, SnapshotRestored)
                    a_end = chunks_of(play_shots(a, [ending_a], first_id=1))
                    b_end = chunks_of(play_shots(b, [ending_b], first_id=1))
                    assert b.info.decoder == a.info.decoder == "wan"
            return refused.value, prefix, restored, a_end, b_end

    refused, prefix, restored, a_end, b_end = within(60, scenario)
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
    assert restored == [SnapshotRestored(1, 21)]
    for i, (got, want) in enumerate(zip(prefix + a_end, want_a, strict=True)):
        np.testing.assert_array_equal(got.frames, want, err_msg=f"chunk {i}")
    for got, want in zip(b_end, want_b[2:], strict=True):
        np.testing.assert_array_equal(got.frames, want)
    assert [c.story_frame for c in b_end] == [21]


def test_cue_log_with_a_scripted_cut_replays_exactly(engine, snap_server, tmp_path):
    from service.sdk import load_cue_log, save_cue_log

    def scenario():
        with ShotStreamClient(snap_server.address) as client:
            with client.open_session(CAPTION, seed=SEED, transport="shared_memory", chunks_in_flight=1) as session:
                session.cue("The keeper climbs the stairs.", num_chunks=5, event_id="walk")
                events = events_until(session, ShotStarted)
                session.cue("A wave hits the rocks.", num_chunks=2, mode="cut", event_id="boss", at_chunk=2)
                session.cue("Gulls scatter.", num_chunks=1, event_id="after")
                events += events_until(session, ShotFinished)
                log = session.cue_log()  # between shots: what was read meanwhile comes back next
                events += events_until(session, ShotFinished) + events_until(session, ShotFinished)
                final = session.cue_log()
            save_cue_log(final, tmp_path / "log.json")
            replay = list(client.render_story(cue_log=load_cue_log(tmp_path / "log.json"), timeout=60))
            return events, log, final, replay

    events, log, final, replay = within(60, scenario)
    finished = [(e.event_id, e.chunks, e.cut) for e in events if isinstance(e, ShotFinished)]
    assert finished == [("walk", 2, True), ("boss", 2, False), ("after", 1, False)]
    assert [(e.cue.event_id, e.chunks, e.cut, e.finished) for e in final.entries] == [
        ("walk", 2, True, True), ("boss", 2, False, True), ("after", 1, False, True)]
    assert final.entries[1].cue.at_chunk == 2 and final.entries[1].cue.mode == pb.CUE_MODE_CUT
    assert (final.global_caption, final.seed, final.decoder, final.first_shot_index, final.next_shot) == \
        (CAPTION, SEED, pb.DECODER_WAN, 0, 0)
    assert [e.cue.event_id for e in log.entries][:1] == ["walk"] and len(log.entries) <= 3
    live, replayed = chunks_of(events), chunks_of(replay)
    assert len(live) == len(replayed) == 5
    for a, b in zip(live, replayed, strict=True):
        assert (a.shot_index, a.chunk_index, a.story_frame) == (b.shot_index, b.chunk_index, b.story_frame)
        np.testing.assert_array_equal(a.frames, b.frames)


def test_cue_log_pages_are_merged(engine):
    long_prompt = "The keeper climbs the long spiral stairs of the lighthouse. " * 10  # ~600 bytes per entry
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, max_outbox_bytes=8192)

    def scenario():
        with BackgroundServer(engine, settings, grace=1.0) as srv, ShotStreamClient(srv.address) as client:
            with client.open_session(CAPTION, seed=SEED, transport="inline") as session:
                play_shots(session, [(f"{long_prompt}{i}", 1) for i in range(6)])
                log = session.cue_log()
                session._ask_cue_log("page", 0)  # one page by hand, to see that there are several
                page = session._wait(session._pick_page, "a page", 10)
            return log, page

    log, page = within(60, scenario)
    assert 0 < page.next_shot < 6 and len(page.entries) == page.next_shot
    assert [e.shot_index for e in log.entries] == list(range(6)) and log.next_shot == 0
    assert [e.cue.prompt for e in log.entries] == [f"{long_prompt}{i}" for i in range(6)]


def test_async_snapshot_restore_fork_and_cue_log(engine, snap_server):
    expected = reference(engine, SHOTS + TAIL)

    async def scenario():
        async with AsyncShotStreamClient(snap_server.address) as client:
            async with await client.open_session(CAPTION, seed=SEED, transport="inline") as a:
                for i, (prompt, n) in enumerate(SHOTS):
                    await a.cue(prompt, num_chunks=n, event_id=f"e{i}")
                first = []
                async for ev in a:
                    first.append(ev)
                    if isinstance(ev, ShotFinished) and ev.event_id == "e1":
                        break
                data = await a.snapshot()
                log = await a.cue_log()
                b = await client.fork(a, transport="inline")
                restored_b = await b.next_event()
                await b.close()
            async with await client.open_session(snapshot=data, transport="shared_memory") as c:
                restored_c = await c.next_event()
                for i, (prompt, n) in enumerate(TAIL):
                    await c.cue(prompt, num_chunks=n, event_id=f"t{i}")
                tail = []
                async for ev in c:
                    tail.append(ev)
                    if isinstance(ev, ShotFinished) and ev.event_id == "t1":
                        break
            replay = [ev async for ev in client.render_story(cue_log=log)]
            return first, data, log, restored_b, restored_c, tail, replay

    first, data, log, restored_b, restored_c, tail, replay = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert restored_b == restored_c == SnapshotRestored(2, 30)
    got = chunks_of(first) + chunks_of(tail)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.frames, b)
    assert [e.chunks for e in log.entries] == [2, 1]
    for a, b in zip(chunks_of(replay), expected[:3], strict=True):
        np.testing.assert_array_equal(a.frames, b)


# -- CLI: story --cue-log, snapshots through a server ----------------------------------------------


def as_mp4(frames: np.ndarray, path: Path) -> np.ndarray:
    """``frames`` as they come back from an MP4 that the CLI's writer made of them."""
    from service.video_io import Mp4Writer

    with Mp4Writer(path, frames.shape[2], frames.shape[1], 16) as writer:
        writer.write(frames)
    return read_mp4(path)


def _live_session_with_a_cut(address: str, tmp_path: Path, snapshot: bytes | None = None):
    """A session (from ``snapshot`` when given) with a scripted cut; returns its frames, its log (saved as JSON)
    and its snapshot at the end."""
    from service.sdk import save_cue_log

    with ShotStreamClient(address) as client:
        story = {"snapshot": snapshot} if snapshot else {"global_caption": CAPTION, "seed": SEED}
        with client.open_session(transport="inline", chunks_in_flight=1, **story) as session:
            session.cue("The keeper climbs the stairs.", num_chunks=4, event_id="walk")
            events = events_until(session, ShotStarted)
            session.cue("A wave hits the rocks.", num_chunks=1, mode="cut", event_id="boss", at_chunk=1)
            session.cue("Gulls scatter.", num_chunks=2, event_id="after")
            for _ in range(3):
                events += events_until(session, ShotFinished)
            log = session.cue_log()
            end = session.snapshot()
    path = tmp_path / "log.json"
    save_cue_log(log, path)
    return np.concatenate([c.frames for c in chunks_of(events)]), log, path, end


def test_story_cue_log_replays_locally_and_through_a_server(snap_server, tmp_path, capsys):
    live, log, path, _ = within(60, lambda: _live_session_with_a_cut(snap_server.address, tmp_path))
    assert [(e.chunks, e.cut) for e in log.entries] == [(1, True), (1, False), (2, False)]
    common = ["story", "--cue-log", str(path), "--quiet"]
    assert main([*common, "--out", str(tmp_path / "local.mp4"), "--report", str(tmp_path / "local.json"),
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "remote.mp4"), "--report", str(tmp_path / "remote.json"),
                 "--server", snap_server.address, "--transport", "inline"]) == 0, capsys.readouterr().err
    for name in ("local", "remote"):
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["seed"] == SEED and report["frames"] == len(live) == 9 + 9 + 21
        assert [(s["index"], s["chunks"], s["frames"], s["prompt"]) for s in report["shots"]] == [
            (0, 1, 9, "The keeper climbs the stairs."), (1, 1, 9, "A wave hits the rocks."),
            (2, 2, 21, "Gulls scatter.")]
        # the same frames through the same encoder: the same video (H.264 is lossy, but deterministic)
        np.testing.assert_array_equal(read_mp4(tmp_path / f"{name}.mp4"), as_mp4(live, tmp_path / "live.mp4"))


def test_story_cue_log_from_a_snapshot(snap_server, tmp_path, capsys):
    from service.sdk import snapshot_info

    def scenario():
        with ShotStreamClient(snap_server.address) as client:
            with client.open_session(CAPTION, seed=SEED, transport="inline") as session:
                play_shots(session, SHOTS[:1])
                first = session.snapshot()
                play_shots(session, SHOTS[1:], first_id=1)
                later = session.snapshot()
        return first, later, _live_session_with_a_cut(snap_server.address, tmp_path, snapshot=first)

    first, later, (live, log, path, _) = within(90, scenario)
    assert log.first_shot_index == snapshot_info(first).next_shot_index == 1
    assert [e.shot_index for e in log.entries] == [1, 2, 3]
    snap, other = tmp_path / "act1.snap", tmp_path / "act2.snap"
    snap.write_bytes(first)
    other.write_bytes(later)
    common = ["story", "--cue-log", str(path), "--quiet"]
    for where in (["--device", "cpu"], ["--server", snap_server.address, "--transport", "shm"]):
        out, report = tmp_path / "replay.mp4", tmp_path / "replay.json"
        assert main([*common, "--from-snapshot", str(snap), "--out", str(out), "--report", str(report),
                     *where]) == 0, capsys.readouterr().err
        shots = json.loads(report.read_text())["shots"]
        assert [(s["index"], s["chunks"]) for s in shots] == [(1, 1), (2, 1), (3, 2)]
        np.testing.assert_array_equal(read_mp4(out), as_mp4(live, tmp_path / "live.mp4"), err_msg=str(where))
    capsys.readouterr()
    for args, needle in [
            ([], "starts at shot 1: its session continued a snapshot"),
            (["--from-snapshot", str(other)], "starts at shot 1, but"),
            (["--from-snapshot", str(snap), "--seed", str(SEED + 1)], f"played with seed {SEED}"),
            (["--from-snapshot", str(tmp_path / "none.snap")], "cannot read the snapshot")]:
        assert main([*common, *args, "--out", str(tmp_path / "x.mp4"), "--device", "cpu"]) == 2, args
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err
    story = tmp_path / "story.json"
    story.write_text(json.dumps({"global_caption": CAPTION, "shots": ["a"]}))
    for args, needle in [([str(story)], "not both"), ([], "give a story file, or --cue-log"),
                         (["--cue-log", str(tmp_path / "missing.json")], "no such cue log"),
                         (["--cue-log", str(story)], "not a cue log")]:
        rc = main(["story", *([str(story), "--cue-log", str(path)] if args == [str(story)] else args),
                   "--out", str(tmp_path / "x.mp4")])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and "Traceback" not in err, (args, err)


def test_story_through_a_server_saves_and_continues_a_snapshot(engine, snap_server, tmp_path, capsys):
    from service.sdk import snapshot_info

    whole = np.concatenate(reference(engine, SHOTS + TAIL)[3:])  # first, while the server is idle

    def story_file(name: str, shots, caption: str = CAPTION) -> str:
        path = tmp_path / name
        path.write_text(json.dumps({"global_caption": caption, "seed": SEED,
                                    "shots": [{"prompt": p, "chunks": n} for p, n in shots]}))
        return str(path)

    snap = tmp_path / "saves" / "act1.snap"
    remote = ["--server", snap_server.address, "--transport", "inline", "--quiet"]
    assert main(["story", story_file("a.json", SHOTS), "--out", str(tmp_path / "a.mp4"), "--report",
                 str(tmp_path / "a.r"), "--save-snapshot", str(snap), *remote]) == 0
    assert "saved a snapshot after shot 1" in capsys.readouterr().err
    info = snapshot_info(snap.read_bytes())
    assert (info.next_shot_index, info.shot_lengths, info.seed) == (2, (21, 9), SEED)
    report = tmp_path / "b.r"
    assert main(["story", story_file("b.json", TAIL), "--out", str(tmp_path / "b.mp4"), "--report", str(report),
                 "--from-snapshot", str(snap), *remote]) == 0, capsys.readouterr().err
    shots = json.loads(report.read_text())["shots"]
    assert [(s["index"], s["chunks"]) for s in shots] == [(2, 2), (3, 1)]
    np.testing.assert_array_equal(read_mp4(tmp_path / "b.mp4"), as_mp4(whole, tmp_path / "whole.mp4"))
    assert main(["story", story_file("c.json", TAIL, "Another story."), "--out", str(tmp_path / "c.mp4"),
                 "--from-snapshot", str(snap), *remote]) == 2
    assert "global caption differs" in capsys.readouterr().err
