"""The WebSocket engine gateway: real server pieces (tiny random engine, GPU worker thread, registry)
on 127.0.0.1 with a free port, driven by the ``websockets`` client the way a Godot/Unity client would."""

from __future__ import annotations

import asyncio
import json
import struct

import numpy as np
import pytest
from google.protobuf import json_format
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from engine_core import TINY, ShotStreamEngine
from service.gateway import (CHUNK_MAGIC, PATH, _close_reason, decode_chunk_frame, encode_server_message, start_gateway,
                             to_json)
from service.protocol import pb
from service.sessions import SessionRegistry, run_session
from service.settings import ServerSettings
from service.worker import GpuWorker
from service_helpers import engine_chunks

H, W = TINY.stream.height, TINY.stream.width
CAPTION, SEED = "a lighthouse on a stormy coast", 7
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def engine():
    return ShotStreamEngine.random(TINY, device="cpu", seed=0)


@pytest.fixture(scope="module")
def worker():
    w = GpuWorker()
    yield w
    w.stop()


def run_gateway(engine, worker, scenario, **settings_kw):
    """asyncio.run(scenario(registry, base_url)) against a fresh registry + gateway; checks nothing leaks."""
    settings = ServerSettings(gateway_port=0, **settings_kw)
    registry = SessionRegistry(engine, settings, worker)
    opened = track(registry)

    async def main():
        gateway = await start_gateway(registry, settings)
        assert gateway.port > 0
        try:
            return await asyncio.wait_for(scenario(registry, f"ws://127.0.0.1:{gateway.port}"), 4 * TIMEOUT)
        finally:
            await gateway.close()
            await wait_freed(registry, worker, opened)

    return asyncio.run(main())


def track(registry) -> list:
    """Every session ``registry`` opens, so a test can wait until the worker has released them all
    (a session's last chunk must not be emitted to an event loop that ``asyncio.run`` has closed)."""
    opened = []
    admit = registry.open
    registry.open = lambda msg, peer: opened.append(admit(msg, peer)) or opened[-1]
    return opened


async def wait_freed(registry, worker, sessions=(), deadline_s=5.0):
    """Poll (bounded) until no session is open or scheduled, and ``sessions`` are released."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while registry.sessions or worker.sessions or not all(s.story.closed for s in sessions):
        assert loop.time() < deadline, f"sessions not freed: {list(registry.sessions)}, worker {worker.sessions}"
        await asyncio.sleep(0.01)


class Client:
    """A gateway client: JSON text out; text ServerMessages and SSC1 binary chunks in."""

    def __init__(self, ws):
        self.ws = ws

    async def send(self, obj) -> None:
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def recv(self) -> tuple[pb.ServerMessage, bytes | None, str | dict]:
        """(message, pixels or None, raw JSON text / parsed binary header dict)."""
        data = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        if isinstance(data, str):
            return json_format.Parse(data, pb.ServerMessage()), None, data
        assert data[:4] == b"SSC1"
        (n,) = struct.unpack("<I", data[4:8])
        header_text = data[8:8 + n].decode("utf-8")
        header = json.loads(header_text)
        assert "pixels" not in header and "ringSlot" not in header
        chunk = json_format.Parse(header_text, pb.FrameChunk())
        pixels = data[8 + n:]
        channels = 4 if chunk.frame_format == pb.FRAME_FORMAT_RGBA8 else 3
        assert len(pixels) == chunk.num_frames * chunk.height * chunk.width * channels
        return pb.ServerMessage(chunk=chunk), pixels, header

    async def expect(self, kind: str, skip: tuple[str, ...] = ("stats",)):
        """The next message, which must be ``kind`` (messages of the ``skip`` kinds are passed over)."""
        msg, pixels, raw = await self.recv()
        while msg.WhichOneof("kind") in skip:
            msg, pixels, raw = await self.recv()
        assert msg.WhichOneof("kind") == kind, f"expected {kind}, got {msg}"
        return (getattr(msg, kind), pixels) if kind == "chunk" else getattr(msg, kind)

    async def until(self, kind: str):
        return await self.expect(kind, skip=("stats", "cue_accepted", "shot_started", "shot_finished"))

    async def open(self, **fields):
        await self.send({"open": {"protocolVersion": 1, "clientName": "test/gateway", "globalCaption": CAPTION,
                                  "seed": str(SEED), **fields}})
        return await self.expect("opened")

    async def close(self) -> pb.SessionClosed:
        """Close as a well-behaved client does: ``close``, read up to ``closed``, then close the socket."""
        await self.send({"close": {}})
        closed = await self.until("closed")  # a shot_finished may race the close
        await self.ws.close()
        assert self.ws.close_code == 1000
        return closed


def frames_of(pixels: bytes, chunk: pb.FrameChunk, channels: int = 3) -> np.ndarray:
    return np.frombuffer(pixels, np.uint8).reshape(chunk.num_frames, chunk.height, chunk.width, channels)


# -- a whole session ------------------------------------------------------------------------------


def test_session_over_gateway(engine, worker):
    ref = sum(engine_chunks(engine, [("a ship fights the waves", 2, 2)], CAPTION, SEED), [])

    async def scenario(registry, base):
        async with connect(base + PATH) as ws:
            c = Client(ws)
            await c.send({"open": {"protocolVersion": 1, "clientName": "test/gateway", "globalCaption": CAPTION,
                                   "seed": str(SEED)}})
            msg, _, raw = await c.recv()
            assert '"sessionId"' in raw and '"framesFirstChunk"' in raw and '"FRAME_FORMAT_RGB8"' in raw
            opened = msg.opened
            assert (opened.width, opened.height, opened.frame_format) == (W, H, pb.FRAME_FORMAT_RGB8)
            assert opened.transport == pb.TRANSPORT_INLINE and opened.max_chunks_in_flight == 2
            assert list(registry.sessions) == [opened.session_id]

            await c.send({"cue": {"eventId": "storm", "prompt": "a ship fights the waves", "numChunks": 2,
                                  "tags": ["act1"]}})
            accepted = await c.expect("cue_accepted")
            assert accepted.event_id == "storm" and accepted.queue_position == 0
            started = await c.expect("shot_started")
            assert (started.event_id, list(started.tags), started.shot_index, started.num_chunks) == \
                ("storm", ["act1"], 0, 2)
            assert started.num_frames == sum(len(f) for f in ref)
            story_frame = 0
            for i, expected in enumerate(ref):
                msg, pixels, header = await c.recv()
                chunk = msg.chunk
                assert header["chunkSeq"] == str(i + 1)  # uint64 -> JSON string
                assert header["frameFormat"] == "FRAME_FORMAT_RGB8" and header["eventId"] == "storm"
                assert (chunk.chunk_index, chunk.story_frame, chunk.last_in_shot) == (i, story_frame, i == 1)
                assert (chunk.width, chunk.height, chunk.num_frames) == (W, H, len(expected))
                assert np.array_equal(frames_of(pixels, chunk), expected)
                story_frame += chunk.num_frames
            finished = await c.expect("shot_finished")
            assert (finished.event_id, finished.chunks, finished.frames, finished.cut) == \
                ("storm", 2, story_frame, False)
            await c.send({"ack": {"chunkSeq": "1"}})
            await c.send({"ack": {"chunk_seq": 2}})  # proto field names and JSON numbers are accepted too
            assert (await c.close()).reason == "client"
        await wait_freed(registry, worker)

    run_gateway(engine, worker, scenario)


async def drive(send, recv) -> list[tuple[pb.ServerMessage, bytes | None]]:
    """One scripted session, reacting to what arrives; the same for both doors."""
    got = []
    await send(pb.ClientMessage(open=pb.OpenSession(protocol_version=1, client_name="test/eq", global_caption=CAPTION,
                                                    seed=SEED, max_chunks_in_flight=1)))
    await send(pb.ClientMessage(cue=pb.Cue(event_id="a", prompt="a knight rides out", num_chunks=2)))
    await send(pb.ClientMessage(cue=pb.Cue(event_id="b", prompt="the castle burns", num_chunks=1)))
    while True:
        msg, pixels = await recv()
        got.append((msg, pixels))
        kind = msg.WhichOneof("kind")
        if kind == "chunk":
            await send(pb.ClientMessage(ack=pb.Ack(chunk_seq=msg.chunk.chunk_seq)))
        elif kind == "shot_finished" and msg.shot_finished.event_id == "b":
            await send(pb.ClientMessage(close=pb.Close()))
        elif kind in ("closed", "error"):
            return got


def test_gateway_equals_run_session(engine, worker):
    async def over_gateway(registry, base):
        async with connect(base + PATH) as ws:
            c = Client(ws)

            async def recv():
                msg, pixels, _ = await c.recv()
                return msg, pixels

            return await drive(lambda m: ws.send(to_json(m)), recv)

    async def in_memory(registry, base):
        inbox: asyncio.Queue = asyncio.Queue()
        outbox: asyncio.Queue = asyncio.Queue()

        async def incoming():
            while (msg := await inbox.get()) is not None:
                yield msg

        async def recv():
            msg = await asyncio.wait_for(outbox.get(), TIMEOUT)
            if msg.WhichOneof("kind") == "chunk":
                pixels = msg.chunk.pixels
                msg.chunk.ClearField("pixels")
                return msg, pixels
            return msg, None

        task = asyncio.create_task(run_session(registry, incoming(), outbox.put, "127.0.0.1"))
        got = await drive(inbox.put, recv)
        await inbox.put(None)
        await asyncio.wait_for(task, TIMEOUT)
        return got

    def comparable(got):
        out = []
        for msg, pixels in got:
            msg = pb.ServerMessage.FromString(msg.SerializeToString())
            kind = msg.WhichOneof("kind")
            if kind == "stats":
                continue
            if kind == "opened":
                msg.opened.session_id = ""
            if kind == "chunk":
                msg.chunk.ClearField("timing")
            if kind == "shot_started":
                msg.shot_started.setup_ms = 0
            out.append((msg.SerializeToString(deterministic=True), pixels))
        return out

    a = run_gateway(engine, worker, over_gateway)
    b = run_gateway(engine, worker, in_memory)
    assert sum(p is not None for _, p in a) == 3
    assert comparable(a) == comparable(b)
    ref = sum(engine_chunks(engine, [("a knight rides out", 2, 2), ("the castle burns", 1, 1)], CAPTION, SEED), [])
    assert [p for _, p in a if p is not None] == [f.tobytes() for f in ref]


def test_cut_cue(engine, worker):
    ref = sum(engine_chunks(engine, [("a long walk", 3, 1), ("an explosion", 1, 1)], CAPTION, SEED), [])

    async def scenario(registry, base):
        async with connect(base + PATH) as ws:
            c = Client(ws)
            await c.open(maxChunksInFlight=1)
            await c.send({"cue": {"eventId": "walk", "prompt": "a long walk", "numChunks": 3}})
            await c.expect("cue_accepted")
            await c.expect("shot_started")
            chunk, pixels = await c.expect("chunk")
            assert np.array_equal(frames_of(pixels, chunk), ref[0])
            # No credit left: the session waits. A CUT cue replaces the rest of "walk".
            await c.send({"cue": {"eventId": "boom", "prompt": "an explosion", "numChunks": 1, "mode": "CUE_MODE_CUT"}})
            accepted = await c.expect("cue_accepted")
            assert (accepted.event_id, accepted.queue_position) == ("boom", 0)
            await c.send({"ack": {"chunkSeq": chunk.chunk_seq}})
            finished = await c.expect("shot_finished")
            assert (finished.event_id, finished.chunks, finished.cut) == ("walk", 1, True)
            started = await c.expect("shot_started")
            assert (started.event_id, started.shot_index) == ("boom", 1)
            chunk, pixels = await c.expect("chunk")
            assert (chunk.chunk_seq, chunk.event_id, chunk.last_in_shot, chunk.story_frame) == (2, "boom", True, 9)
            assert np.array_equal(frames_of(pixels, chunk), ref[1])
            assert not (await c.expect("shot_finished")).cut
            await c.close()

    run_gateway(engine, worker, scenario)


def test_rgba8(engine, worker):
    ((ref,),) = engine_chunks(engine, [("neon city", 1, 1)], CAPTION, SEED)

    async def scenario(registry, base):
        async with connect(base + PATH) as ws:
            c = Client(ws)
            opened = await c.open(frameFormat="FRAME_FORMAT_RGBA8")
            assert opened.frame_format == pb.FRAME_FORMAT_RGBA8
            await c.send({"cue": {"prompt": "neon city", "numChunks": 1}})
            chunk, pixels = await c.until("chunk")
            assert chunk.frame_format == pb.FRAME_FORMAT_RGBA8 and len(pixels) == len(ref) * H * W * 4
            rgba = frames_of(pixels, chunk, 4)
            assert np.array_equal(rgba[..., :3], ref) and (rgba[..., 3] == 255).all()
            await c.expect("shot_finished")
            await c.close()

    run_gateway(engine, worker, scenario)


# -- client mistakes ------------------------------------------------------------------------------


def test_bad_messages_are_non_fatal_errors(engine, worker):
    async def scenario(registry, base):
        async with connect(base + PATH) as ws:
            c = Client(ws)

            async def expect_error(frame, *words):
                await c.send(frame)
                error = await c.expect("error")
                assert error.code == 3 and not error.fatal, error  # INVALID_ARGUMENT
                for word in words:
                    assert word in error.message, error.message

            await expect_error("{not json", "could not parse")  # before open too: the client may retry
            await c.open()
            await expect_error("{not json", "could not parse", "ClientMessage")
            await expect_error({"cue": {"prompt": "x", "bogus": 1}}, "bogus")
            await expect_error({"shout": {}}, "shout")
            await expect_error({"cue": {"numChunks": "many"}}, "numChunks")
            await expect_error("[1, 2]", "an array, not a JSON object")
            await expect_error(b"\x00\x01binary", "binary")
            await expect_error(CHUNK_MAGIC + b"\x00" * 8, "binary")
            await expect_error({"ack": {"chunkSeq": "99"}}, "99")
            await expect_error({}, "empty client message")
            # ... and the session still works.
            await c.send({"cue": {"eventId": "ok", "prompt": "still alive", "numChunks": 1}})
            chunk, pixels = await c.until("chunk")
            assert chunk.event_id == "ok" and len(pixels) == chunk.num_frames * H * W * 3
            await c.send({"ack": {"chunkSeq": chunk.chunk_seq}})
            await c.close()

    run_gateway(engine, worker, scenario)


def test_oversized_client_message_closes_connection(engine, worker):
    async def scenario(registry, base):
        async with connect(base + PATH) as ws:
            c = Client(ws)
            await c.open()
            await c.send({"cue": {"prompt": "x" * 2000}})
            with pytest.raises(ConnectionClosed):
                while True:
                    await c.recv()
            assert ws.close_code == 1009  # message too big
        await wait_freed(registry, worker)

    run_gateway(engine, worker, scenario, max_control_message_bytes=1024)


def test_first_message_must_be_open(engine, worker):
    async def scenario(registry, base):
        async with connect(base + PATH) as ws:
            c = Client(ws)
            await c.send({"cue": {"prompt": "too early"}})
            error = await c.expect("error")
            assert error.fatal and "open" in error.message
            with pytest.raises(ConnectionClosed):
                await c.recv()
            assert ws.close_code == 1000 and ws.close_reason == f"error 9: {error.message}"[:123]

    run_gateway(engine, worker, scenario)


# -- handshake ------------------------------------------------------------------------------------


async def handshake_status(url, **kw) -> tuple[int, str]:
    try:
        async with connect(url, **kw):
            return 101, ""
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.body.decode()


def test_wrong_path_is_404(engine, worker):
    async def scenario(registry, base):
        for path in ("/", "/v1/other", "/v1/direct/x", "/V1/DIRECT"):
            status, body = await handshake_status(base + path)
            assert status == 404 and PATH in body, (path, status, body)
        assert (await handshake_status(base + PATH + "?client=x"))[0] == 101

    run_gateway(engine, worker, scenario)


def test_token(engine, worker):
    async def scenario(registry, base):
        url = base + PATH
        status, body = await handshake_status(url)
        assert status == 401 and "no token" in body and "?token=" in body and "Bearer" in body
        for kw in ({"additional_headers": {"Authorization": "Bearer nope"}}, {"url": url + "?token=nope"},
                   {"additional_headers": {"Authorization": "Basic czNjcmV0"}}):
            status, body = await handshake_status(kw.pop("url", url), **kw)
            assert status == 401, kw
        assert (await handshake_status(base + "/elsewhere"))[0] == 401  # no path probing without the token
        assert (await handshake_status(base + "/elsewhere?token=s3cr%2Ft"))[0] == 404
        # With the token, as a query parameter (web builds) or a header, and from any browser origin.
        for url_, kw in ((url + "?token=s3cr%2Ft", {"origin": "https://games.example"}),
                         (url, {"additional_headers": {"Authorization": "Bearer s3cr/t"}})):
            async with connect(url_, **kw) as ws:
                c = Client(ws)
                await c.open()
                await c.close()

    run_gateway(engine, worker, scenario, token="s3cr/t")


def test_browser_origin_without_token(engine, worker):
    async def scenario(registry, base):
        status, body = await handshake_status(base + PATH, origin="https://evil.example")
        assert status == 403 and "token" in body
        for origin in ("http://localhost:8060", "http://127.0.0.1:3000", "https://[::1]"):
            assert (await handshake_status(base + PATH, origin=origin))[0] == 101, origin

    run_gateway(engine, worker, scenario)


# -- ending ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["drop", "close"])
def test_disconnect_mid_stream_frees_session(engine, worker, how):
    async def scenario(registry, base):
        async with connect(base + PATH) as ws:
            c = Client(ws)
            await c.open()
            await c.send({"cue": {"prompt": "an endless battle", "numChunks": 7}})
            await c.until("chunk")
            assert len(registry.sessions) == 1 and worker.sessions == 1
            if how == "drop":
                ws.transport.abort()  # no closing handshake: a crashed game
            else:
                await ws.close()
        await wait_freed(registry, worker)

    run_gateway(engine, worker, scenario)


def test_server_shutdown_tells_the_client(engine, worker):
    async def scenario(registry, base):
        async with connect(base + PATH) as ws:
            c = Client(ws)
            await c.open()
            registry.shutdown()
            assert (await c.expect("closed")).reason == "server shutdown"
            with pytest.raises(ConnectionClosed):  # this client does not close: the server does, with the reason
                await c.recv()
            assert (ws.close_code, ws.close_reason) == (1000, "closed: server shutdown")

    run_gateway(engine, worker, scenario)


def test_gateway_close_ends_open_sessions(engine, worker):
    settings = ServerSettings(gateway_port=0)
    registry = SessionRegistry(engine, settings, worker)

    async def main():
        gateway = await start_gateway(registry, settings)
        async with connect(f"ws://127.0.0.1:{gateway.port}{PATH}") as ws:
            c = Client(ws)
            await c.open()
            await c.send({"cue": {"prompt": "the credits roll", "numChunks": 2}})
            await c.until("chunk")
            await asyncio.wait_for(gateway.close(), TIMEOUT)
            with pytest.raises(ConnectionClosed):
                while True:
                    await c.recv()
            assert ws.close_code == 1001  # going away
        (session,) = opened
        await wait_freed(registry, worker, [session])

    opened = track(registry)
    asyncio.run(main())


# -- framing helpers ------------------------------------------------------------------------------


def test_close_reason_fits_a_close_frame():
    assert _close_reason("closed: client") == "closed: client"
    long = _close_reason("error 3: " + "\u00e9" * 200)
    assert len(long.encode("utf-8")) <= 123 and long.endswith("...") and long.startswith("error 3: \u00e9")


def test_framing_helpers():
    pixels = bytes(range(256)) * 18  # 1 frame of 32x48x3
    chunk = pb.FrameChunk(chunk_seq=5, event_id="é", num_frames=1, width=W, height=H, pixels=pixels,
                          timing=pb.ChunkTiming(denoise_ms=1.5))
    frame = encode_server_message(pb.ServerMessage(chunk=chunk))
    assert isinstance(frame, bytes) and frame[:4] == b"SSC1"
    (n,) = struct.unpack_from("<I", frame, 4)
    assert json.loads(frame[8:8 + n]) == {"chunkSeq": "5", "eventId": "é", "numFrames": 1, "width": W, "height": H,
                                          "timing": {"denoiseMs": 1.5}}
    assert frame[8 + n:] == pixels
    header, got = decode_chunk_frame(frame)
    assert got == pixels and header.chunk_seq == 5 and not header.pixels and header.timing.denoise_ms == 1.5

    ring = pb.ServerMessage(chunk=pb.FrameChunk(chunk_seq=6, ring_slot=pb.RingSlot(slot=1, sequence=6, offset=64,
                                                                                    length=10)))
    text = encode_server_message(ring)
    assert isinstance(text, str) and json.loads(text) == {
        "chunk": {"chunkSeq": "6", "ringSlot": {"slot": 1, "sequence": "6", "offset": "64", "length": "10"}}}
    assert "\n" not in to_json(pb.ServerMessage(error=pb.Error(code=3, message="x")))
