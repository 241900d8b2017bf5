"""Issue 14: what a careless or hostile client can make the server hold, and what it cannot hijack.

Real servers on 127.0.0.1 over the tiny engine; every wait is bounded (a hang fails the test).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
import threading
from pathlib import Path

import grpc
import pytest

from engine_core import TINY, ShotStreamEngine
from service.cli import _serve, build_parser
from service.grpc_server import BearerTokenInterceptor
from service.logs import clip
from service.outbox import Outbox
from service.protocol import PROTOCOL_VERSION, error_message, ProtocolError, pb, pb_grpc
from service.sdk import ShotStreamClient, ShotStreamError
from service.background import BackgroundServer
from service.settings import ServerSettings, read_token_file
from service_helpers import Direct as BaseDirect
from service_helpers import serving

CAPTION, SEED = "A harbour at dawn.", 5
EXHAUSTED, INVALID = grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT
DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.fixture(scope="module")
def engine():
    return ShotStreamEngine.random(TINY, device="cpu", seed=0)


class Direct(BaseDirect):
    open_defaults = {"client_name": "hardening", "global_caption": CAPTION, "seed": SEED}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def freed(server, deadline_s: float = 5.0) -> None:
    for _ in range(int(deadline_s / 0.02)):
        if not server.registry.sessions:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"sessions still open: {list(server.registry.sessions)}")


# -- 1. bounded memory per session ----------------------------------------------------------------


def test_cue_queue_is_bounded_then_fatal(engine):
    async def body():
        async with serving(engine, max_queued_cues=3, max_refusals=2) as (server, stub, _c):
            d = Direct(stub)
            await d.open()
            await d.send(pause=pb.Pause())  # nothing starts: every cue stays queued
            for i in range(3):
                assert (await d.cue(f"c{i}", "a boat", 1)).queue_position == i
            for i in range(2):  # refused, not fatal
                await d.send(cue=pb.Cue(event_id=f"x{i}", prompt="a boat", num_chunks=1))
                error = await d.expect("error")
                assert (error.code, error.fatal, error.event_id) == (EXHAUSTED.value[0], False, f"x{i}")
                assert "max_queued_cues=3" in error.message
            assert server.registry.sessions[next(iter(server.registry.sessions))].queued_cues == 3
            await d.send(cue=pb.Cue(event_id="x2", prompt="a boat", num_chunks=1))  # keeps going: ends it
            await d.fails(EXHAUSTED, "refusals in a row (max_refusals)")
            await freed(server)

    run(body())


def test_cue_labels_are_bounded(engine):
    async def body():
        async with serving(engine) as (_, stub, _c):
            d = Direct(stub)
            await d.open()
            for cue, needle in ((pb.Cue(event_id="e" * 129, prompt="p"), "max_event_id_chars"),
                                (pb.Cue(prompt="p", tags=["t"] * 17), "max_tags"),
                                (pb.Cue(prompt="p", tags=["t" * 65]), "max_tag_chars")):
                await d.send(cue=cue)
                error = await d.expect("error")
                assert error.code == INVALID.value[0] and not error.fatal and needle in error.message
                assert len(error.event_id) <= 128
            await d.close()
            d = Direct(stub)
            await d.send(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, client_name="n" * 60_000))
            await d.fails(INVALID, "max_client_name_chars")

    run(body())


def test_outbox_bounds_by_count_and_bytes_warns_then_overflows():
    async def body():
        box = Outbox(max_messages=4, max_bytes=10_000)
        err = error_message(ProtocolError(INVALID, "x" * 10))
        for _ in range(3):
            box.put_nowait(err)
        kinds = []
        while not box.empty():
            msg = box.get_nowait()
            kinds.append((msg.error.code, msg.error.message[:10]))
        assert kinds[0] == (INVALID.value[0], "x" * 10) and len(kinds) == 4  # the warning came third in line
        assert any(code == EXHAUSTED.value[0] for code, _ in kinds)
        for _ in range(5):
            box.put_nowait(err)
        assert box.overflowed.is_set() and box.qsize() <= 5
        chunk = pb.ServerMessage(chunk=pb.FrameChunk(chunk_seq=1, pixels=b"p" * 100_000))
        small = Outbox(max_messages=4, max_bytes=1000)
        small.put_nowait(chunk)  # chunks are bounded by credits, not here
        assert not small.overflowed.is_set()
        small.put_nowait(pb.ServerMessage(error=pb.Error(message="y" * 2000)))
        assert small.overflowed.is_set()

    asyncio.run(body())


def test_client_that_floods_and_never_reads_loses_its_session(engine):
    """The flood comes from grpc's blocking client: grpc.aio's client can report INTERNAL ("Internal error
    from Core") instead of the server's status when one of its writes is pending as the server ends the
    call (grpc/grpc#36066), which is the normal end of a flood."""
    sent = 0

    def flood(stop: threading.Event):
        nonlocal sent
        yield pb.ClientMessage(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, **Direct.open_defaults))
        while not stop.is_set() and sent < 20_000:  # bad acks; the server stops reading us before the end
            yield pb.ClientMessage(ack=pb.Ack(chunk_seq=10**12))
            sent += 1

    def read_all(call) -> list[str]:
        kinds = []
        with contextlib.suppress(grpc.RpcError):
            for msg in call:
                kinds.append(msg.WhichOneof("kind"))
        return kinds

    async def body():
        async with serving(engine, max_outbox_messages=16) as (server, _stub, _c):
            stop, ended = threading.Event(), asyncio.Event()
            close = server.registry.close
            server.registry.close = lambda session: (close(session), ended.set())  # the session may open and end
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:  # between two polls
                call = pb_grpc.ShotStreamStub(channel).Direct(flood(stop))
                try:
                    await asyncio.wait_for(ended.wait(), 10)  # never reading meanwhile
                    kinds = await asyncio.wait_for(asyncio.to_thread(read_all, call), 20)  # the window, then the end
                finally:
                    stop.set()
                    call.cancel()
            assert kinds[0] == "opened"
            assert kinds.count("error") < sent
            assert call.code() == EXHAUSTED, call.details()
            assert "max_outbox_messages" in call.details()

    run(body())


# -- 2. acks only for delivered chunks ------------------------------------------------------------


def test_acks_free_credit_only_for_delivered_chunks(engine):
    async def body():
        async with serving(engine) as (server, _stub, _c):
            registry = server.registry
            session = registry.open(pb.OpenSession(protocol_version=PROTOCOL_VERSION, global_caption=CAPTION,
                                                   max_chunks_in_flight=2), "ipv4:127.0.0.1:1")
            try:
                session.handle(pb.ClientMessage(cue=pb.Cue(prompt="a boat", num_chunks=7)))
                registry.worker.notify()
                for _ in range(500):  # nobody sends these chunks out: two are generated, then credit runs out
                    if session.counters.chunks == 2 and not (session.next_unit() is not None):
                        break
                    await asyncio.sleep(0.01)
                for seq in (1, 2, 3):
                    with pytest.raises(ProtocolError, match="not awaiting an ack"):
                        session.handle(pb.ClientMessage(ack=pb.Ack(chunk_seq=seq)))
                await asyncio.sleep(0.2)
                assert session.counters.chunks == 2
                session.delivered(1)
                session.handle(pb.ClientMessage(ack=pb.Ack(chunk_seq=1)))  # now it counts
                assert (session.next_unit() is not None)
            finally:
                registry.close(session)

    run(body())


# -- 3. takes -------------------------------------------------------------------------------------


async def start_take(d: Direct, name: str) -> pb.ServerMessage:
    await d.send(start_take=pb.StartTake(name=name))
    msg = await d.recv()
    assert msg is not None
    return msg


def test_take_is_reserved_at_start_one_owner_0600(engine, tmp_path):
    takes = tmp_path / "takes"

    async def body():
        async with serving(engine, takes_dir=takes) as (_, stub, _c):
            a, b = Direct(stub), Direct(stub)
            await a.open()
            await b.open()
            started = (await start_take(a, "scene")).take_started
            path = Path(started.path)
            assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600  # reserved now, not at frame 1
            error = (await start_take(b, "scene")).error
            assert error.code == grpc.StatusCode.ALREADY_EXISTS.value[0] and not error.fatal
            await a.cue("c", "a boat", 1)
            await a.play(1)
            await a.send(stop_take=pb.StopTake())
            saved = await a.expect("take_saved")
            assert saved.frames == TINY.pixel_frames(1)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_size == saved.bytes
            await a.close()
            await b.close()

    run(body())
    assert sorted(p.name for p in takes.iterdir()) == ["scene.mp4"]  # no partial folders left


def test_take_never_writes_through_a_symlink(engine, tmp_path):
    takes, victim = tmp_path / "takes", tmp_path / "victim.txt"
    takes.mkdir()
    victim.write_text("keep")
    (takes / "planted.mp4").symlink_to(victim)
    (takes / "dangling.mp4").symlink_to(tmp_path / "outside.mp4")

    async def body():
        async with serving(engine, takes_dir=takes, take_file_mode=0o640) as (_, stub, _c):
            d = Direct(stub)
            await d.open()
            for name in ("planted", "dangling"):
                error = (await start_take(d, name)).error
                assert error.code == grpc.StatusCode.ALREADY_EXISTS.value[0], error
            started = (await start_take(d, "fine")).take_started
            await d.cue("c", "a boat", 1)
            await d.play(1)
            await d.send(stop_take=pb.StopTake())
            await d.expect("take_saved")
            await d.close()
            return Path(started.path)

    path = run(body())
    assert victim.read_text() == "keep" and not (tmp_path / "outside.mp4").exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the setting


# -- 4. protected surfaces ------------------------------------------------------------------------


def test_health_needs_the_token_when_not_open(engine):
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    async def body():
        server = grpc.aio.server(interceptors=[BearerTokenInterceptor("s3cret", open_health=False)])
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Check(health_pb2.HealthCheckRequest())
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                reply = await stub.Check(health_pb2.HealthCheckRequest(),
                                         metadata=(("authorization", "Bearer s3cret"),))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await server.stop(0)

    run(body())


def test_metrics_listen_on_loopback_only(engine):
    async def body():
        async with serving(engine, metrics_port=0, host="localhost") as (server, _stub, _c):
            assert server.metrics._httpd.server_address[0] == "127.0.0.1"

    run(body())


def test_token_file_and_command_line_warning(tmp_path, monkeypatch, caplog):
    token_file = tmp_path / "token"
    token_file.write_text("  s3cret\n")
    token_file.chmod(0o600)
    assert read_token_file(token_file) == ("s3cret", None)
    token_file.chmod(0o644)
    assert "readable by other users" in read_token_file(token_file)[1]
    with pytest.raises(ValueError, match="empty"):
        (tmp_path / "empty").write_text("\n")
        read_token_file(tmp_path / "empty")

    seen = {}
    monkeypatch.setattr("service.server.serve", lambda settings, engine: seen.update(token=settings.token))
    monkeypatch.setattr("service.cli.load_engine", lambda args: None)
    parser = build_parser()
    caplog.set_level(logging.WARNING, logger="service")
    assert _serve(parser.parse_args(["serve", "--token-file", str(token_file)])) == 0 and seen["token"] == "s3cret"
    assert "--token" not in caplog.text.replace("--token-file", "")
    assert _serve(parser.parse_args(["serve", "--token", "abc"])) == 0 and seen["token"] == "abc"
    assert "every local user can read it" in caplog.text
    monkeypatch.setenv("SHOTSTREAM_TOKEN", "from-env")
    assert _serve(parser.parse_args(["serve"])) == 0 and seen["token"] == "from-env"


# -- 5. slot hogging ------------------------------------------------------------------------------


def test_open_and_idle_timeouts_free_the_slot(engine):
    async def body():
        async with serving(engine, max_sessions=1, open_timeout_s=0.3, idle_timeout_s=0.5) as (server, stub, _c):
            silent = Direct(stub)  # never sends open
            await silent.fails(DEADLINE, "no `open` within 0.3 s (open_timeout_s)")
            idle = Direct(stub)
            await idle.open()
            await idle.fails(DEADLINE, "no message from the client for 0.5 s (idle_timeout_s)")
            await freed(server)
            d = Direct(stub)  # the slot is free again
            await d.open()
            await d.close()

    run(body())


def test_client_gone_while_a_take_finishes_still_frees_the_session(engine, tmp_path, monkeypatch):
    """The soak's leak: a session ends (here by the idle timeout) while a take records; its loop waits for the
    take's encoder, and the client drops the call meanwhile (cancelling that wait). The slot must still be
    freed, and the take's file still finished."""
    import service.takes
    from service.video_io import Mp4Writer

    closing, release = threading.Event(), threading.Event()

    class SlowToFinish(Mp4Writer):  # the encoder finishing a file under load: held until the test says so
        def close(self) -> None:
            closing.set()
            release.wait(30)
            super().close()

    monkeypatch.setattr(service.takes, "Mp4Writer", SlowToFinish)
    takes = tmp_path / "takes"

    async def body():
        async with serving(engine, max_sessions=1, takes_dir=takes, idle_timeout_s=1.0) as (server, stub, _c):
            try:
                d = Direct(stub)
                await d.open()
                path = Path((await start_take(d, "kept")).take_started.path)
                await d.cue("c", "a boat", 1)
                await d.play(1)
                error = await d.expect("error")  # the idle timeout: the session is ending
                assert error.fatal and error.code == DEADLINE.value[0], error
                assert await asyncio.to_thread(closing.wait, 10), "the session did not finish its take"
                d.call.cancel()  # the client goes away while the server waits for the take's file
                await freed(server)
            finally:
                release.set()
            for _ in range(500):  # bounded: the encoder finishes in the background
                if path.stat().st_size and not any(p.name.startswith(".partial-") for p in takes.iterdir()):
                    break
                await asyncio.sleep(0.02)
            return path

    path = run(body())
    assert path.stat().st_size > 0 and sorted(p.name for p in path.parent.iterdir()) == ["kept.mp4"]


def test_render_story_shot_count_is_bounded(engine):
    async def body():
        async with serving(engine, max_story_shots=5) as (_, stub, _c):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RenderStory(pb.RenderStoryRequest(protocol_version=PROTOCOL_VERSION,
                                                             shots=[pb.StoryShot(prompt="p")] * 6)).read()
            assert err.value.code() == INVALID and "max_story_shots" in err.value.details()

    run(body())


# -- 6. statuses and logs -------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_undecodable_unary_requests_are_invalid_argument_without_traceback(engine, caplog, token):
    async def body():
        async with serving(engine, token=token) as (_, _stub, channel):
            meta = (("authorization", f"Bearer {token}"),) if token else None
            for method in ("GetServerInfo", "RenderStory"):
                call = channel.unary_unary(f"/shotstream.v1.ShotStream/{method}")  # raw bytes out, raw in
                if method == "RenderStory":
                    call = channel.unary_stream(f"/shotstream.v1.ShotStream/{method}")
                for _ in range(20):
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        result = call(b"\xff\xff\xff\xff", metadata=meta)
                        await (result.read() if method == "RenderStory" else result)
                    assert err.value.code() == INVALID, err.value
            if token:  # unauthenticated garbage is refused for the token, never decoded
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await channel.unary_unary("/shotstream.v1.ShotStream/GetServerInfo")(b"\xff\xff")
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    caplog.set_level(logging.INFO)
    run(body())
    assert "Traceback" not in caplog.text and "Failed to deserialize" not in caplog.text


def test_log_values_are_clipped():
    line = clip("n" * 60_000, 500)
    assert len(line) < 600 and line.endswith("(59500 more characters)")
    assert clip("a\nb") == "a\\nb"


def test_sdk_checks_num_chunks_like_the_server(engine):
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1)
    with BackgroundServer(engine, settings, grace=2.0) as server, ShotStreamClient(server.address) as client:
        with client.open_session(CAPTION, transport="inline") as session:
            for n in (-1, 8):
                with pytest.raises(ShotStreamError) as err:
                    session.cue("a boat", num_chunks=n)
                assert err.value.code == INVALID and err.value.message == \
                    f"num_chunks {n} is out of range 1..7 (0 = full shot)"
        with pytest.raises(ShotStreamError) as err:
            next(iter(client.render_story(CAPTION, [("a boat", -1)])))
        assert err.value.code == INVALID and "num_chunks -1 is out of range" in err.value.message
