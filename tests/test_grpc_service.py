"""The gRPC service end to end: a real ``grpc.aio`` server on 127.0.0.1 (free port) over the tiny engine.

Every test runs its own server inside ``asyncio.run`` (pytest-asyncio is not used). Checks that
"nothing more happened" are made deterministic with a *barrier*: an ack for a chunk that does not
exist draws a non-fatal error, and since a session applies client messages in order, receiving
that error proves every earlier message (pause, ack, cue) has been applied; the session's own
state is then read in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from engine_core import TINY, ShotStreamEngine
from service.protocol import PROTOCOL_VERSION, pb, pb_grpc
from service.ring import RingReader
from service.server import ShotStreamServer
from service.settings import ServerSettings
from service.story_file import load_story
from service_helpers import TIMEOUT, engine_chunks, serving
from service_helpers import Direct as BaseDirect

STORY_02 = Path(__file__).resolve().parents[1] / "examples" / "stories" / "02.json"
CAPTION, SEED = "A rainy neon city at night.", 11
INVALID, FAILED_PRECONDITION, RESOURCE_EXHAUSTED = (grpc.StatusCode.INVALID_ARGUMENT,
                                                     grpc.StatusCode.FAILED_PRECONDITION,
                                                     grpc.StatusCode.RESOURCE_EXHAUSTED)


@pytest.fixture(scope="module")
def engine():
    return ShotStreamEngine.random(TINY, device="cpu", seed=0)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


class Direct(BaseDirect):
    open_defaults = {"client_name": "test", "global_caption": CAPTION, "seed": SEED}


async def assert_healthy(stub):
    """A short valid session still works."""
    d = Direct(stub)
    await d.open(client_name="health-probe")
    await d.cue("probe", "a quiet street", 1)
    await d.expect("shot_started")
    chunk = await d.expect("chunk")
    assert chunk.num_frames == 9 and len(chunk.pixels) == 9 * 32 * 48 * 3
    await d.expect("shot_finished")
    await d.close()


# -- Direct ---------------------------------------------------------------------------------------


async def sessions_freed(server, deadline_s: float = 5.0) -> None:
    """Poll (bounded) until the server has no open session."""
    for _ in range(int(deadline_s / 0.01)):
        if not server.registry.sessions:
            return
        await asyncio.sleep(0.01)
    assert not server.registry.sessions, f"sessions still open: {list(server.registry.sessions)}"


def test_direct_inline_session_matches_the_engine(engine):
    ref = engine_chunks(engine, [("The detective steps out of a taxi.", 2, 2)], CAPTION, SEED)[0]

    async def body():
        async with serving(engine) as (server, stub, _):
            d = Direct(stub)
            opened = await d.open()
            assert (opened.width, opened.height, opened.fps) == (48, 32, 16)
            assert (opened.frames_first_chunk, opened.frames_per_chunk, opened.max_chunks_per_shot) == (9, 12, 7)
            assert opened.protocol_version == PROTOCOL_VERSION and opened.session_id
            assert opened.frame_format == pb.FRAME_FORMAT_RGB8 and opened.transport == pb.TRANSPORT_INLINE
            assert opened.max_chunks_in_flight == 2 and not opened.HasField("ring")
            assert opened.model == "tiny" and opened.random_weights

            assert (await d.cue("taxi", "The detective steps out of a taxi.", 2)).queue_position == 0
            started = await d.expect("shot_started")
            assert (started.event_id, started.shot_index, started.num_chunks, started.num_frames) == ("taxi", 0, 2, 21)
            assert started.prompt_tokens > 0
            story_frame = 0
            for i, (want, n) in enumerate(zip(ref, (9, 12))):
                chunk = await d.expect("chunk")
                assert (chunk.chunk_seq, chunk.event_id, chunk.shot_index, chunk.chunk_index) == (i + 1, "taxi", 0, i)
                assert (chunk.num_frames, chunk.width, chunk.height, chunk.first_frame) == (n, 48, 32, 9 * i)
                assert chunk.story_frame == story_frame and chunk.last_in_shot == (i == 1)
                assert chunk.frame_format == pb.FRAME_FORMAT_RGB8 and chunk.WhichOneof("payload") == "pixels"
                assert chunk.pixels == want.tobytes()
                assert chunk.timing.denoise_ms > 0 and chunk.timing.decode_ms > 0
                story_frame += n
                await d.ack(chunk)
            finished = await d.expect("shot_finished")
            assert (finished.event_id, finished.chunks, finished.frames, finished.cut) == ("taxi", 2, 21, False)
            await d.close()
            assert not server.registry.sessions

    run(body())


def test_rgba8_frames(engine):
    ref = engine_chunks(engine, [("A neon sign flickers.", 1, 1)], CAPTION, SEED)[0][0].tobytes()

    async def body():
        async with serving(engine) as (_, stub, _c):
            d = Direct(stub)
            assert (await d.open(frame_format=pb.FRAME_FORMAT_RGBA8)).frame_format == pb.FRAME_FORMAT_RGBA8
            await d.cue("sign", "A neon sign flickers.", 1)
            await d.expect("shot_started")
            chunk = await d.expect("chunk")
            assert chunk.frame_format == pb.FRAME_FORMAT_RGBA8
            rgba = np.frombuffer(chunk.pixels, np.uint8).reshape(9, 32, 48, 4)
            assert (rgba[..., 3] == 255).all()
            assert rgba[..., :3].tobytes() == ref
            await d.expect("shot_finished")
            await d.close()

    run(body())


def test_cut_and_wait_cues(engine):
    a, b = "A long walk down the pier.", "The boss bursts in."
    # the engine's own cut: shot 1 after 1 chunk of shot 0
    ref = engine_chunks(engine, [(a, 4, 1), (b, 1, 1)], CAPTION, SEED)

    async def body():
        async with serving(engine) as (_, stub, _c):
            d = Direct(stub)
            await d.open(max_chunks_in_flight=1)
            await d.cue("walk", a, 4)
            await d.expect("shot_started")
            c1 = await d.expect("chunk")
            assert c1.pixels == ref[0][0].tobytes()
            # 1 credit, unacked: the worker is held, so queue positions are deterministic
            assert (await d.cue("w1", "never shown 1", 1)).queue_position == 0
            assert (await d.cue("w2", "never shown 2", 1)).queue_position == 1
            assert (await d.cue("boss", b, 1, pb.CUE_MODE_CUT)).queue_position == 0  # the WAIT cues are dropped
            await d.ack(c1)
            finished = await d.expect("shot_finished")
            assert (finished.event_id, finished.chunks, finished.frames, finished.cut) == ("walk", 1, 9, True)
            started = await d.expect("shot_started")
            assert (started.event_id, started.shot_index) == ("boss", 1)
            c2 = await d.expect("chunk")
            assert (c2.chunk_seq, c2.event_id, c2.shot_index, c2.chunk_index, c2.story_frame) == (2, "boss", 1, 0, 9)
            assert c2.pixels == ref[1][0].tobytes()
            assert (await d.expect("shot_finished")).cut is False
            # c2 unacked again: two WAIT cues queue behind each other and then run in order
            assert (await d.cue("e", "first in line", 1)).queue_position == 0
            assert (await d.cue("f", "second in line", 1)).queue_position == 1
            await d.ack(c2)
            order = []
            for _ in range(2):
                order.append((await d.expect("shot_started")).event_id)
                chunk = await d.expect("chunk")
                await d.ack(chunk)
                assert (await d.expect("shot_finished")).event_id == order[-1]
            assert order == ["e", "f"]
            await d.close()

    run(body())


def test_pause_stops_generation_until_resume(engine):
    async def body():
        async with serving(engine) as (server, stub, _c):
            d = Direct(stub)
            opened = await d.open(max_chunks_in_flight=1)
            await d.cue("a", "rain on glass", 3)
            await d.expect("shot_started")
            c1 = await d.expect("chunk")
            # Until the ack below the single credit holds the worker; the pause is applied before the ack.
            await d.send(pause=pb.Pause())
            await d.ack(c1)
            assert (await d.cue("b", "thunder", 1)).queue_position == 0
            await d.barrier()  # the error arrives before any chunk: nothing was generated meanwhile
            session = server.registry.sessions[opened.session_id]
            stats = session.stats()
            assert stats.paused and stats.chunks_sent == 1 and stats.chunks_in_flight == 0 and stats.queued_cues == 1
            assert session.next_unit() is None
            info = await stub.GetServerInfo(pb.GetServerInfoRequest())
            assert info.open_sessions == 1
            await d.send(resume=pb.Resume())
            c2 = await d.expect("chunk")
            assert (c2.chunk_seq, c2.event_id, c2.chunk_index) == (2, "a", 1)
            await d.close()

    run(body())


def test_credits_bound_chunks_in_flight(engine):
    async def body():
        async with serving(engine, stats_every_chunks=1) as (server, stub, _c):
            d = Direct(stub)
            opened = await d.open(max_chunks_in_flight=1)
            assert opened.max_chunks_in_flight == 1
            await d.cue("a", "a long corridor", 3)
            await d.expect("shot_started")
            c1 = await d.expect("chunk")
            stats = await d.expect("stats", stats=True)  # stats_every_chunks=1: one right after each chunk
            assert (stats.chunks_sent, stats.frames_sent, stats.chunks_in_flight, stats.sessions) == (1, 9, 1, 1)
            assert stats.gpu_memory_used_bytes == 0 and stats.chunk_ms_mean > 0 and not stats.paused
            await d.barrier()  # no chunk came before the barrier's answer, and none can come: no credit left
            assert server.registry.sessions[opened.session_id].counters.chunks == 1
            await d.ack(c1)
            c2 = await d.expect("chunk")
            assert c2.chunk_seq == 2
            await d.close()

            d = Direct(stub)  # default credits: 2 chunks, then it waits
            opened = await d.open()
            await d.cue("a", "a long corridor", 3)
            await d.expect("shot_started")
            chunks = [await d.expect("chunk"), await d.expect("chunk")]
            await d.barrier()
            assert server.registry.sessions[opened.session_id].stats().chunks_in_flight == 2
            for c in chunks:
                await d.ack(c)
            assert (await d.expect("chunk")).chunk_seq == 3
            await d.expect("shot_finished")
            await d.close()

    run(body())


# -- RenderStory ------------------------------------------------------------------------------------


def test_render_story_reference_file(engine):
    spec = load_story(STORY_02)
    n = len(spec.shots)
    ref = engine_chunks(engine, [(s.prompt, 1, 1) for s in spec.shots], spec.global_caption, 5)

    async def body():
        async with serving(engine) as (server, stub, _c):
            request = pb.RenderStoryRequest(protocol_version=PROTOCOL_VERSION, global_caption=spec.global_caption,
                                            seed=5, shots=[pb.StoryShot(prompt=s.prompt, num_chunks=1)
                                                           for s in spec.shots])
            events = [e async for e in stub.RenderStory(request)]
            assert [e.WhichOneof("kind") for e in events] == ["shot_started", "chunk", "shot_finished", "progress"] * n
            for i in range(n):
                started, chunk, finished, progress = (getattr(e, e.WhichOneof("kind")) for e in events[4 * i:4 * i + 4])
                assert started.shot_index == i and started.num_chunks == 1
                assert (chunk.shot_index, chunk.chunk_seq, chunk.num_frames, chunk.story_frame) == (i, i + 1, 9, 9 * i)
                assert chunk.pixels == ref[i][0].tobytes()
                assert (finished.shot_index, finished.frames, finished.cut) == (i, 9, False)
                assert (progress.shots_done, progress.shots_total) == (i + 1, n)
                assert (progress.frames_done, progress.frames_total) == (9 * (i + 1), 9 * n)
            assert not server.registry.sessions

    run(body())


def test_render_story_multi_chunk_progress_and_cancel(engine):
    async def body():
        async with serving(engine) as (server, stub, _c):
            request = pb.RenderStoryRequest(protocol_version=PROTOCOL_VERSION, global_caption="g",
                                            frame_format=pb.FRAME_FORMAT_RGBA8,
                                            shots=[pb.StoryShot(prompt="one", num_chunks=2)])
            kinds = []
            async for e in stub.RenderStory(request):
                kinds.append(e.WhichOneof("kind"))
                if e.HasField("chunk"):
                    assert len(e.chunk.pixels) == e.chunk.num_frames * 32 * 48 * 4
                if e.HasField("progress"):
                    last = e.progress
            assert kinds == ["shot_started", "chunk", "progress", "chunk", "shot_finished", "progress"]
            assert (last.shots_done, last.frames_done, last.frames_total) == (1, 21, 21)

            call = stub.RenderStory(pb.RenderStoryRequest(protocol_version=PROTOCOL_VERSION, global_caption="g",
                                                          shots=[pb.StoryShot(prompt="long")] * 3))
            while (await call.read()).WhichOneof("kind") != "chunk":
                pass
            assert len(server.registry.sessions) == 1
            call.cancel()
            await sessions_freed(server)  # the server notices the cancel asynchronously
            await assert_healthy(stub)

    run(body())


# -- info, health, reflection, metrics ------------------------------------------------------------


def test_server_info_health_reflection_metrics(engine):
    async def body():
        async with serving(engine, metrics_port=0, max_sessions=3, max_sessions_per_peer=2) as (server, stub, channel):
            info = await stub.GetServerInfo(pb.GetServerInfoRequest())
            assert info.protocol_version == PROTOCOL_VERSION and info.server_version
            assert (info.model, info.random_weights, info.device) == ("tiny", True, "cpu")
            assert "random weights" in info.weights
            assert not info.HasField("gpu")  # no GPU here
            assert (info.width, info.height, info.fps) == (48, 32, 16)
            assert (info.max_sessions, info.max_sessions_per_client, info.open_sessions) == (3, 2, 0)
            assert (info.max_prompt_chars, info.max_chunks_per_shot, info.max_chunks_in_flight) == (2000, 7, 8)
            assert dict(info.limits) == server.settings.limits()  # every limit, by its setting name
            assert info.limits["max_queued_cues"] == 16 and info.limits["idle_timeout_s"] == 600

            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "shotstream.v1.ShotStream"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING

            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            names = {s.name async for r in call for s in r.list_services_response.service}
            assert {"shotstream.v1.ShotStream", "grpc.health.v1.Health"} <= names

            await assert_healthy(stub)
            assert server.metrics_port > 0
            url = f"http://127.0.0.1:{server.metrics_port}/metrics"
            text = (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())).decode()
            for line in ("shotstream_frames_total 9.0", "shotstream_chunks_total 1.0", "shotstream_sessions 0.0",
                         "shotstream_queue_depth 0.0", "shotstream_chunk_seconds_count 1.0",
                         "shotstream_gpu_memory_used_bytes 0.0"):
                assert line in text, line
            assert "shotstream_generated_fps" in text

    run(body())


def test_gateway_is_composed_on_the_same_registry(engine):
    """The composition root starts the WebSocket gateway (when built) over the same sessions; stop closes it."""
    if importlib.util.find_spec("service.gateway") is None:
        pytest.skip("service.gateway is not in this build")
    from websockets.asyncio.client import connect

    async def body():
        async with serving(engine, gateway_port=0) as (server, stub, _c):
            assert server.gateway_port and server.gateway_port != server.grpc_port
            async with connect(f"ws://127.0.0.1:{server.gateway_port}/v1/direct") as ws:
                await ws.send(json_format.MessageToJson(pb.ClientMessage(open=pb.OpenSession(
                    protocol_version=PROTOCOL_VERSION, client_name="godot/test"))))
                opened = json_format.Parse(await asyncio.wait_for(ws.recv(), TIMEOUT), pb.ServerMessage()).opened
                assert opened.session_id in server.registry.sessions
                assert (await stub.GetServerInfo(pb.GetServerInfoRequest())).open_sessions == 1
                await server.stop(grace=2.0)
                closed = json_format.Parse(await asyncio.wait_for(ws.recv(), TIMEOUT), pb.ServerMessage())
                assert closed.closed.reason == "server shutdown"
            assert not server.registry.sessions
            with pytest.raises(OSError):
                async with connect(f"ws://127.0.0.1:{server.gateway_port}/v1/direct", open_timeout=2):
                    pass

    run(body())


# -- bad input --------------------------------------------------------------------------------------


def test_bad_open_and_first_message(engine):
    async def body():
        async with serving(engine) as (server, stub, _c):
            d = Direct(stub)
            await d.send(open=pb.OpenSession(protocol_version=99, client_name="old"))
            await d.fails(FAILED_PRECONDITION, "protocol version 99 is not supported")
            await assert_healthy(stub)

            d = Direct(stub)
            await d.send(cue=pb.Cue(event_id="x", prompt="too early"))
            await d.fails(FAILED_PRECONDITION, "first message of a session must be `open`")

            d = Direct(stub)
            await d.send(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, global_caption="c" * 10_001))
            await d.fails(INVALID, "global caption has 10001 characters")

            d = Direct(stub)
            await d.send(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, max_chunks_in_flight=9))
            await d.fails(INVALID, "max_chunks_in_flight 9 exceeds the server limit 8")
            assert not server.registry.sessions
            await assert_healthy(stub)

    run(body())


def test_bad_cues_and_acks_are_not_fatal(engine):
    async def body():
        async with serving(engine) as (_, stub, _c):
            d = Direct(stub)
            await d.open()
            cases = [(pb.Cue(event_id="empty", prompt="   "), "prompt is empty"),
                     (pb.Cue(event_id="huge", prompt="x" * 2001), "2001 characters; the limit is 2000"),
                     (pb.Cue(event_id="long", prompt="p", num_chunks=8), "num_chunks 8 is out of range 1..7"),
                     (pb.Cue(event_id="mode", prompt="p", mode=7), "unknown cue mode 7")]
            for cue, needle in cases:
                await d.send(cue=cue)
                error = await d.expect("error")
                assert (error.code, error.event_id, error.fatal) == (INVALID.value[0], cue.event_id, False)
                assert needle in error.message, error.message
            await d.barrier()  # an ack for an unknown chunk
            await d.send(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION))
            error = await d.expect("error")
            assert error.code == FAILED_PRECONDITION.value[0] and not error.fatal and "already open" in error.message
            await d.send()  # an empty ClientMessage
            assert "empty client message" in (await d.expect("error")).message
            # the session is still fine; replies keep the order of the client messages they answer
            await d.send(cue=pb.Cue(event_id="ok", prompt="a valid shot", num_chunks=1))
            await d.send(ack=pb.Ack(chunk_seq=77))
            assert (await d.expect("cue_accepted")).event_id == "ok"
            kinds = []
            while not kinds or kinds[-1] != "shot_finished":
                msg = await d.recv()
                kinds.append(msg.WhichOneof("kind"))
                if kinds[-1] == "chunk":
                    await d.ack(msg.chunk)
            assert sorted(kinds) == ["chunk", "error", "shot_finished", "shot_started"]
            await d.close()

            d = Direct(stub)  # caption and prompt within their own limits, but too long for the model together
            await d.open(global_caption="c" * 9000)
            await d.send(cue=pb.Cue(event_id="sum", prompt="y" * 1500))
            error = await d.expect("error")
            assert (error.code, error.event_id, error.fatal) == (INVALID.value[0], "sum", False)
            assert "the global caption plus this prompt have 10506 characters; the model's limit is 10000" \
                in error.message
            await d.close()

    run(body())


def test_session_limits(engine):
    async def body_limits():
        async with serving(engine, max_sessions=2, max_sessions_per_peer=1) as (server, stub, _c):
            first = Direct(stub)
            await first.open(client_name="unity/Game")
            for name in ("unity/Game", "renamed"):  # the limit is per peer address: a new name does not help
                d = Direct(stub)
                await d.send(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, client_name=name))
                await d.fails(RESOURCE_EXHAUSTED, "127.0.0.1 already has 1 open sessions (limit 1, "
                                                  "max_sessions_per_peer)")
            await first.close()
            assert server.registry._per_peer == {}  # the peer's entry goes with its last session
        async with serving(engine, max_sessions=2, max_sessions_per_peer=2) as (server, stub, _c):
            first = Direct(stub)
            await first.open(client_name="unity/Game")
            second = Direct(stub)
            await second.open(client_name="godot/Game")
            d = Direct(stub)
            await d.send(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, client_name="third"))
            await d.fails(RESOURCE_EXHAUSTED, "the server is full: 2 of 2 sessions are open")
            with pytest.raises(grpc.aio.AioRpcError) as err:  # RenderStory is admitted the same way
                await stub.RenderStory(pb.RenderStoryRequest(protocol_version=PROTOCOL_VERSION,
                                                             shots=[pb.StoryShot(prompt="p")])).read()
            assert err.value.code() == RESOURCE_EXHAUSTED
            await first.close()
            await assert_healthy(stub)  # a slot is free again
            await second.close()

    run(body_limits())


def test_render_story_validation(engine):
    async def body():
        async with serving(engine) as (server, stub, _c):
            cases = [(dict(protocol_version=0, shots=[pb.StoryShot(prompt="p")]), FAILED_PRECONDITION,
                      "protocol version 0 is not supported"),
                     (dict(shots=[]), INVALID, "no shots"),
                     (dict(shots=[pb.StoryShot(prompt="p"), pb.StoryShot(prompt=" ")]), INVALID,
                      "shot 1: the prompt is empty"),
                     (dict(shots=[pb.StoryShot(prompt="p" * 2001)]), INVALID, "2001 characters"),
                     (dict(shots=[pb.StoryShot(prompt="p", num_chunks=8)]), INVALID, "num_chunks 8 is out of range"),
                     (dict(shots=[pb.StoryShot(prompt="p")], frame_format=9), INVALID, "unknown frame format 9"),
                     (dict(global_caption="c" * 9000,
                           shots=[pb.StoryShot(prompt="p"), pb.StoryShot(prompt="q" * 1500)]),
                      INVALID, "shot 1: the global caption plus this prompt have 10506 characters")]
            for fields, code, needle in cases:
                request = pb.RenderStoryRequest(**{"protocol_version": PROTOCOL_VERSION, **fields})
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in stub.RenderStory(request):
                        pass
                assert err.value.code() == code and needle in err.value.details(), err.value
            assert not server.registry.sessions
            await assert_healthy(stub)

    run(body())


def test_oversize_client_message_is_rejected_by_grpc(engine):
    async def body():
        async with serving(engine) as (server, stub, _c):
            d = Direct(stub)
            await d.open()
            await d.send(cue=pb.Cue(event_id="big", prompt="x" * 70_000))  # > max_control_message_bytes (64 KiB)
            assert await d.recv() is None
            assert await d.call.code() == RESOURCE_EXHAUSTED
            await sessions_freed(server)
            await assert_healthy(stub)

    run(body())


def test_bearer_token(engine):
    async def body():
        async with serving(engine, token="s3cret") as (_, stub, channel):
            for metadata, needle in ((None, "missing bearer token"), ((("authorization", "Bearer nope"),),
                                                                      "invalid bearer token")):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and needle in err.value.details()
                d = Direct(stub, metadata=metadata)
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await d.send(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION))
                assert await d.recv() is None
                assert await d.call.code() == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.RenderStory(pb.RenderStoryRequest(), metadata=metadata).read()
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            health = health_pb2_grpc.HealthStub(channel)  # health checks stay open
            reply = await health.Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            good = (("authorization", "Bearer s3cret"),)
            assert (await stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=good)).model == "tiny"
            d = Direct(stub, metadata=good)
            await d.open()
            await d.close()

    run(body())


def test_tls(engine, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)

    async def body():
        settings = ServerSettings(grpc_port=0, gateway_port=-1, tls_cert=cert, tls_key=key, token="t")
        server = await ShotStreamServer(engine, settings).start()
        try:
            credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
            async with grpc.aio.secure_channel(f"localhost:{server.grpc_port}", credentials) as channel:
                stub = pb_grpc.ShotStreamStub(channel)
                info = await stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=(("authorization", "Bearer t"),))
                assert info.model == "tiny"
            async with grpc.aio.insecure_channel(f"localhost:{server.grpc_port}") as plain:  # plaintext is refused
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await pb_grpc.ShotStreamStub(plain).GetServerInfo(pb.GetServerInfoRequest(), timeout=5)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await server.stop(grace=1.0)

    run(body())


def test_busy_port_fails_clearly(engine):
    async def body():
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            server = ShotStreamServer(engine, ServerSettings(grpc_port=busy.getsockname()[1], gateway_port=-1))
            with pytest.raises(OSError, match="could not bind the gRPC server to 127.0.0.1"):
                await server.start()
            assert not server.worker._thread.is_alive()  # nothing left running

    run(body())


# -- shutdown -------------------------------------------------------------------------------------


def test_graceful_shutdown_closes_sessions_and_removes_rings(engine, tmp_path):
    ref = engine_chunks(engine, [("a lighthouse", 1, 1)], CAPTION, SEED)[0][0].tobytes()

    async def body():
        async with serving(engine, ring_dir=tmp_path) as (server, stub, _c):
            d = Direct(stub)
            opened = await d.open(transport=pb.TRANSPORT_SHARED_MEMORY)
            assert opened.transport == pb.TRANSPORT_SHARED_MEMORY and opened.HasField("ring")
            ring = Path(opened.ring.path)
            assert ring.exists() and ring.parent == tmp_path
            await d.cue("light", "a lighthouse", 1)
            await d.expect("shot_started")
            chunk = await d.expect("chunk")
            assert chunk.WhichOneof("payload") == "ring_slot" and chunk.ring_slot.sequence == chunk.chunk_seq
            with open(ring, "rb") as f:
                f.seek(chunk.ring_slot.offset)
                assert f.read(chunk.ring_slot.length) == ref
            with RingReader(opened.ring) as reader:
                assert reader.read(chunk.ring_slot).tobytes() == ref
            await d.expect("shot_finished")
            idle = Direct(stub)  # a second session with nothing going on
            await idle.open(client_name="idle")
            render = stub.RenderStory(pb.RenderStoryRequest(protocol_version=PROTOCOL_VERSION,
                                                            shots=[pb.StoryShot(prompt="long")] * 3))
            while (await render.read()).WhichOneof("kind") != "chunk":
                pass

            stopping = asyncio.ensure_future(server.stop(grace=5.0))
            for session in (d, idle):
                assert (await session.expect("closed")).reason == "server shutdown"
                assert await session.recv() is None
                assert await session.call.code() == grpc.StatusCode.OK
            with pytest.raises(grpc.aio.AioRpcError) as err:
                while (await render.read()) is not grpc.aio.EOF:
                    pass
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "interrupted after" in err.value.details() and "of 3 shots: server shutdown" in err.value.details()
            await stopping
            assert not ring.exists()
            assert not list(tmp_path.iterdir())
            reply = await server.health.Check(health_pb2.HealthCheckRequest(service=""), None)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert not server.registry.sessions

    run(body())
