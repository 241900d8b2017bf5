"""Helpers shared by the service tests (gRPC, gateway, SDK, robustness): what the engine itself produces
for a story, a real in-process server to talk to, and a gRPC ``Direct`` call driven step by step.

``tests/`` is on ``sys.path`` under pytest, so test modules import this as ``service_helpers``.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import numpy as np

from service.protocol import PROTOCOL_VERSION, pb, pb_grpc
from service.server import ShotStreamServer
from service.settings import ServerSettings

TIMEOUT = 20.0  # per awaited message: a hang fails the test instead of the suite


def engine_chunks(engine, shots, caption: str, seed: int) -> list[list[np.ndarray]]:
    """Each shot's chunks (uint8 RGB ``[n, H, W, 3]``) as the engine itself produces them, one list per shot.

    A shot is ``(prompt, num_chunks)`` (every chunk of the shot) or ``(prompt, num_chunks, chunks_to_take)``
    (only the first ``chunks_to_take``: the next shot then starts as a cut would start it).
    """
    story = engine.open_story(caption, seed)
    out = []
    try:
        for prompt, num_chunks, *take in shots:
            story.start_shot(prompt, num_chunks)
            if take:
                (n,) = take
                out.append([story.step().frames.numpy() for _ in range(n)])
            else:
                chunks = []
                while story.shot_in_progress:
                    chunks.append(story.step().frames.numpy())
                out.append(chunks)
    finally:
        story.close()
    return out


@contextlib.asynccontextmanager
async def serving(engine, **overrides):
    """A started ``ShotStreamServer`` on a free port (gateway and metrics off unless overridden; every test
    client is the one peer 127.0.0.1, so it may hold as many sessions as the server):
    yields ``(server, stub, channel)``; stops the server on exit."""
    defaults = {"grpc_port": 0, "gateway_port": -1, "metrics_port": -1,
                "max_sessions_per_peer": overrides.get("max_sessions", ServerSettings.max_sessions)}
    settings = ServerSettings(**{**defaults, **overrides})
    server = ShotStreamServer(engine, settings)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        yield server, pb_grpc.ShotStreamStub(channel), channel
    finally:
        await channel.close()
        await server.stop(grace=2.0)


class Direct:
    """One ``Direct`` call driven step by step.

    A test module subclasses it to set ``open_defaults`` (the OpenSession fields :meth:`open` sends unless
    told otherwise) and, where a close may cross messages already on their way, ``close_skips_to_closed``.
    """

    open_defaults: dict = {}
    close_skips_to_closed = False

    def __init__(self, stub, metadata=None):
        self.call = stub.Direct(metadata=metadata)

    async def send(self, **kind):
        await self.call.write(pb.ClientMessage(**kind))

    async def recv(self, *, stats: bool = False) -> pb.ServerMessage | None:
        """The next message (Stats skipped unless asked for); None at the end of the stream."""
        while True:
            try:
                msg = await asyncio.wait_for(self.call.read(), TIMEOUT)
            except grpc.aio.AioRpcError:
                return None
            if msg is grpc.aio.EOF:
                return None
            if stats or msg.WhichOneof("kind") != "stats":
                return msg

    async def expect(self, kind: str, *, stats: bool = False):
        msg = await self.recv(stats=stats)
        got = None if msg is None else msg.WhichOneof("kind")
        assert got == kind, f"expected {kind}, got {msg}"
        return getattr(msg, kind)

    async def open(self, **fields) -> pb.SessionOpened:
        await self.send(open=pb.OpenSession(**{"protocol_version": PROTOCOL_VERSION, **self.open_defaults,
                                               **fields}))
        return await self.expect("opened")

    async def cue(self, event_id: str, prompt: str, num_chunks: int, mode=pb.CUE_MODE_WAIT) -> pb.CueAccepted:
        await self.send(cue=pb.Cue(event_id=event_id, prompt=prompt, num_chunks=num_chunks, mode=mode))
        accepted = await self.expect("cue_accepted")
        assert accepted.event_id == event_id
        return accepted

    async def ack(self, chunk: pb.FrameChunk):
        await self.send(ack=pb.Ack(chunk_seq=chunk.chunk_seq))

    async def barrier(self) -> pb.Error:
        """Returns once the server has applied every earlier message: an ack for a chunk that does not exist
        draws a non-fatal error, and a session applies its messages in order. Fails if a chunk comes first."""
        await self.send(ack=pb.Ack(chunk_seq=10**12))
        error = await self.expect("error")
        assert (error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and not error.fatal
                and "not awaiting an ack" in error.message)
        return error

    async def close(self):
        """Close: the next message is Closed(reason="client") (with ``close_skips_to_closed``, the first
        Closed after any others), then the stream ends with OK."""
        await self.send(close=pb.Close())
        if self.close_skips_to_closed:
            msg = await self.recv()
            while msg is not None and msg.WhichOneof("kind") != "closed":
                msg = await self.recv()
            assert msg is not None and msg.closed.reason == "client"
        else:
            closed = await self.expect("closed")
            assert closed.reason == "client"
        assert await self.recv() is None
        assert await self.call.code() == grpc.StatusCode.OK

    async def fails(self, code: grpc.StatusCode, needle: str) -> pb.Error:
        """A fatal Error message, then the stream ends with the same status and message."""
        error = await self.expect("error")
        assert error.fatal and error.code == code.value[0] and needle in error.message, error
        assert await self.recv() is None
        assert await self.call.code() == code
        assert await self.call.details() == error.message
        return error

    async def play(self, shots: int) -> list[pb.FrameChunk]:
        """Take (and ack at once) every chunk until ``shots`` shots have finished."""
        chunks, finished = [], 0
        while finished < shots:
            msg = await self.recv()
            assert msg is not None, "the stream ended early"
            kind = msg.WhichOneof("kind")
            assert kind in ("chunk", "shot_started", "shot_finished", "cue_accepted"), msg
            if kind == "chunk":
                chunks.append(msg.chunk)
                await self.ack(msg.chunk)
            elif kind == "shot_finished":
                finished += 1
        return chunks


def events_until(session, kind: type, limit: int = 200) -> list:
    """An SDK session's events up to and including the first ``kind`` (fails past ``limit`` or at the end)."""
    out = []
    for ev in session:
        out.append(ev)
        if isinstance(ev, kind):
            return out
        assert len(out) < limit, out
    raise AssertionError(f"the session ended before a {kind.__name__}: {out}")


def read_mp4(path: str | Path) -> np.ndarray:
    """Every frame of an MP4 as uint8 RGB ``[n, H, W, 3]``."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    w, h = next(reader)["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])
