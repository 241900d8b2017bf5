"""``shotstream bench``: how fast frames reach a client through each transport of the service.

What it measures: frames per second *delivered to a client* -- pixels in a NumPy array the client
owns -- through the real service code: ``Session`` (RGBA packing, credits, acks), the GPU worker,
``run_session``, then either the gRPC door (``TRANSPORT_INLINE``: pixels in ``FrameChunk.pixels``),
the shared-memory ring (``FrameRing`` write, ``RingReader`` seqlocked copy-out), or the WebSocket
gateway (binary ``SSC1`` frames). The gRPC clients are the SDK's; the WebSocket client is the
``websockets`` library reading the gateway's documented framing. Each figure is also given as a
ratio to a plain ``numpy.copyto`` of the same bytes on the same machine, the floor any transport
has to pay at least once.

Why a synthetic engine: the transport is the subject, so the model must not be the bottleneck.
The tiny model resized to 480x832 needs 11-16 s per chunk on a 2-core CPU (its VAE decode
dominates), so it would measure the model. By default the benchmark therefore starts the real
server (:class:`service.server.ShotStreamServer`) in a separate process, as a game engine's
server would be, with :class:`SyntheticEngine`: an engine whose "story" hands out premade
480x832 RGB chunks (9, then 12 frames, 7 chunks per shot) instantly; everything after
``Story.step()`` is the production path. ``--server ADDR`` measures an existing server instead
(then its model's speed is included, and the frame size is whatever it serves).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from typing import Any

import numpy as np

BENCH_HEIGHT, BENCH_WIDTH = 480, 832
CAPTION = "Transport benchmark."


# -- the synthetic engine ------------------------------------------------------------------------


class SyntheticEngine:
    """Duck-types :class:`engine_core.ShotStreamEngine` for the service: same config, stories and
    chunk results, but every chunk is premade random RGB frames (no model, no GPU)."""

    weights_label = "synthetic frames (transport benchmark): no model runs"
    random_weights = True
    text = None
    decoders = ("wan",)  # frames are premade: nothing decodes, and there is one "decoder" to ask for
    tae_label = ""

    def __init__(self, height: int = BENCH_HEIGHT, width: int = BENCH_WIDTH, seed: int = 0):
        import torch

        from engine_core.attention import select_attention
        from engine_core.config import TINY
        from engine_core.fast_path import FastPath

        self.config = dataclasses.replace(TINY, name=f"synthetic-{height}x{width}",
                                          stream=dataclasses.replace(TINY.stream, height=height, width=width))
        first = self.config.pixel_frames(1)
        most = max(first, self.config.pixel_frames(2) - first)
        rng = np.random.default_rng(seed)
        self.frames = torch.from_numpy(rng.integers(0, 256, (most, height, width, 3), dtype=np.uint8))
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.attention = select_attention(self.device, self.dtype, self.config.dit.head_dim)  # what info reports
        self.fast = FastPath.eager()
        self.fp8 = False

    def open_story(self, global_caption: str, seed: int = 0, decoder: str = "wan") -> _SyntheticStory:
        return _SyntheticStory(self, global_caption)


class _SyntheticStory:
    """The engine's Story interface (as the service drives it) over premade frames: one chunk per advance()."""

    def __init__(self, engine: SyntheticEngine, global_caption: str):
        self.engine, self.global_caption = engine, global_caption
        self._shot = -1
        self._chunks = self._done = 0
        self.denoising = False
        self.frames_pending = False

    @property
    def shot_in_progress(self) -> bool:
        return self._done < self._chunks

    @property
    def has_work(self) -> bool:
        return self.shot_in_progress

    @property
    def next_shot_index(self) -> int:
        return self._shot + 1

    def start_shot(self, prompt: str, num_chunks: int | None = None):
        from engine_core.story import ShotInfo

        cfg = self.engine.config
        self._shot += 1
        self._chunks, self._done = num_chunks or cfg.stream.chunks_per_shot, 0
        return ShotInfo(shot_index=self._shot, prompt=prompt, num_chunks=self._chunks,
                        num_frames=cfg.pixel_frames(self._chunks), context_frames=(), context_flags=(), shot_flag=0,
                        prompt_tokens=0, truncated_tokens=0, timings_ms={"text": 0.0, "history": 0.0, "context": 0.0},
                        prepared_ahead=False)

    def advance(self) -> list:
        from engine_core.story import ChunkResult, FrameSlice

        cfg = self.engine.config
        if not self.shot_in_progress:
            return []
        i = self._done
        first = 0 if i == 0 else cfg.pixel_frames(i)
        n = cfg.pixel_frames(i + 1) - first
        self._done += 1
        last = self._done == self._chunks
        chunk = ChunkResult(shot_index=self._shot, chunk_index=i, first_frame=first, frames=self.engine.frames[:n],
                            latents=None, last_in_shot=last, timings_ms={"commit": 0.0, "denoise": 0.0, "decode": 0.0})
        return [FrameSlice(shot_index=self._shot, chunk_index=i, first_frame=first, frames=chunk.frames,
                           last_in_chunk=True, last_in_shot=last, chunk=chunk)]

    def poll_frames(self) -> list:
        return []

    wait_frames = poll_frames

    def prepare_next_shot(self) -> bool:
        return not self.shot_in_progress

    def close(self) -> None:
        pass


# -- server process ------------------------------------------------------------------------------


def _serve_child(height: int, width: int) -> None:
    """``python -m service.transport_bench --serve HEIGHT WIDTH``: the real server with a SyntheticEngine.
    Prints one JSON line with its addresses, stops when stdin closes (or gets a line)."""
    import logging
    import sys

    from .background import BackgroundServer
    from .settings import ServerSettings

    logging.basicConfig(level=logging.ERROR)
    try:
        server = BackgroundServer(SyntheticEngine(height, width), ServerSettings(grpc_port=0, gateway_port=0)).start()
    except BaseException as exc:  # noqa: BLE001
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return
    print(json.dumps({"address": server.address, "gateway": server.gateway_url}), flush=True)
    sys.stdin.readline()
    server.stop()


class _ServerProcess:
    """The benchmark server in its own process (as a game's server would be: no shared GIL)."""

    def __init__(self, height: int, width: int):
        import subprocess
        import sys
        from pathlib import Path

        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        self._proc = subprocess.Popen([sys.executable, "-m", "service.transport_bench", "--serve", str(height),
                                       str(width)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      env=env)
        line = self._proc.stdout.readline()  # the child prints exactly one line once it listens (or failed)
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            self.stop()
            raise RuntimeError(f"the benchmark server process did not start (said {line!r})") from None
        if "error" in reply:
            self.stop()
            raise RuntimeError(f"the benchmark server process failed: {reply['error']}")
        self.address, self.gateway_url = reply["address"], reply["gateway"]

    def stop(self) -> None:
        import subprocess

        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:  # hung: it ignored stdin closing for 30 s
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()


# -- measurements --------------------------------------------------------------------------------


def copy_fps(frame_shape: tuple[int, ...], frames_per_chunk: int, min_seconds: float = 0.3) -> dict[str, float]:
    """Frames/s of plain NumPy copies of one chunk's bytes: ``copyto`` between two preallocated
    buffers (the floor), and ``.copy()`` into a new array each time (what handing out a new,
    caller-owned array costs at least: allocation and first-touch page faults included)."""
    src = np.random.default_rng(1).integers(0, 256, (frames_per_chunk, *frame_shape), dtype=np.uint8)
    dst = np.empty_like(src)

    def rate(fn) -> float:
        fn()  # fault the pages in
        reps, t0 = 0, time.perf_counter()
        while True:
            fn()
            reps += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds and reps >= 5:
                return reps * frames_per_chunk / elapsed

    return {"memcpy": rate(lambda: np.copyto(dst, src)), "copy_new_array": rate(src.copy)}


def _shots_for(frames: int, info_first: int, info_per: int, chunks_per_shot: int) -> int:
    per_shot = info_first + (chunks_per_shot - 1) * info_per
    return math.ceil(frames / per_shot) + 1  # +1: the warm-up chunk and any remainder


def bench_grpc(address: str, transport: str, frames: int, credits: int, token: str | None,
               frame_format: str = "rgba8") -> dict[str, Any]:
    """Deliver at least ``frames`` frames (after one warm-up chunk) through a Direct session."""
    from .sdk import Chunk, ShotStreamClient

    with ShotStreamClient(address, token=token) as client:
        with client.open_session(CAPTION, transport=transport, frame_format=frame_format, chunks_in_flight=credits,
                                 client_name=f"bench/{transport}") as session:
            info = session.info
            for i in range(_shots_for(frames, info.frames_first_chunk, info.frames_per_chunk,
                                      info.max_chunks_per_shot)):
                session.cue(f"shot {i}", num_chunks=0)
            got = chunks = 0
            t0 = None
            shape: tuple[int, ...] = ()
            copy_ms = []
            for ev in session:
                if not isinstance(ev, Chunk):
                    continue
                shape = max(shape, ev.frames.shape)
                if t0 is None:  # warm-up chunk: starts the clock
                    t0 = time.perf_counter()
                    continue
                got += ev.num_frames
                chunks += 1
                copy_ms.append(ev.copy_ms)
                if got >= frames:
                    break
            if t0 is None:
                raise RuntimeError(f"the session ended before its first chunk ({session.close_reason})")
            elapsed = time.perf_counter() - t0
    return {"frames": got, "chunks": chunks, "seconds": elapsed, "fps": got / elapsed,
            "chunk_bytes_max": int(np.prod(shape)), "frame_shape": list(shape[1:]),
            "client_copy_ms_mean": float(np.mean(copy_ms)) if copy_ms else None}


def bench_websocket(url: str, frames: int, credits: int, token: str | None, frame_format: str = "rgba8"
                    ) -> dict[str, Any]:
    """The same through the WebSocket gateway: JSON control frames, binary SSC1 chunk frames."""
    import struct

    from google.protobuf import json_format
    from websockets.sync.client import connect

    from .protocol import PROTOCOL_VERSION, pb

    headers = {"Authorization": f"Bearer {token}"} if token else None
    with connect(url, max_size=None, compression=None, additional_headers=headers, open_timeout=30) as ws:
        ws.send(json.dumps({"open": {"protocolVersion": PROTOCOL_VERSION, "clientName": "bench/websocket",
                                     "globalCaption": CAPTION,
                                     "frameFormat": "FRAME_FORMAT_RGBA8" if frame_format == "rgba8" else "FRAME_FORMAT_RGB8",
                                     "transport": "TRANSPORT_INLINE", "maxChunksInFlight": credits}}))
        opened = json.loads(ws.recv())
        if "opened" not in opened:
            raise RuntimeError(f"the gateway refused the session: {opened}")
        o = opened["opened"]
        shots = _shots_for(frames, o["framesFirstChunk"], o["framesPerChunk"], o["maxChunksPerShot"])
        for i in range(shots):
            ws.send(json.dumps({"cue": {"eventId": f"shot{i}", "prompt": f"shot {i}"}}))
        got = chunks = 0
        t0 = None
        shape: tuple[int, ...] = ()
        while got < frames:
            data = ws.recv()
            if isinstance(data, str):
                msg = json.loads(data)
                if "error" in msg and msg["error"].get("fatal") or "closed" in msg:
                    raise RuntimeError(f"the gateway ended the session: {msg}")
                continue
            magic, n = struct.unpack_from("<4sI", data)
            if magic != b"SSC1":
                continue
            header = json_format.Parse(bytes(memoryview(data)[8:8 + n]), pb.FrameChunk())
            c = 4 if header.frame_format == pb.FRAME_FORMAT_RGBA8 else 3
            shape = max(shape, (header.num_frames, header.height, header.width, c))
            pixels = np.frombuffer(data, np.uint8, offset=8 + n).reshape(
                header.num_frames, header.height, header.width, c)  # the received bytes, no copy
            ws.send(json.dumps({"ack": {"chunkSeq": str(header.chunk_seq)}}))
            if t0 is None:
                t0 = time.perf_counter()
                continue
            got += len(pixels)
            chunks += 1
        elapsed = time.perf_counter() - t0
        ws.send(json.dumps({"close": {}}))
    return {"frames": got, "chunks": chunks, "seconds": elapsed, "fps": got / elapsed,
            "chunk_bytes_max": int(np.prod(shape)), "frame_shape": list(shape[1:])}


def run_bench(frames: int = 240, server: str | None = None, gateway: str | None = None, credits: int = 2,
              token: str | None = None, in_process: bool = False, frame_format: str = "rgba8",
              transports: tuple[str, ...] = ("inline", "shared_memory", "websocket")) -> dict[str, Any]:
    if frames < 1:
        raise ValueError("frames must be at least 1")
    if frame_format not in ("rgb8", "rgba8"):
        raise ValueError("frame_format must be rgb8 or rgba8")
    proc = local = None
    if server is None:
        if in_process:
            from .background import BackgroundServer
            from .settings import ServerSettings

            local = BackgroundServer(SyntheticEngine(), ServerSettings(grpc_port=0, gateway_port=0)).start()
            server, gateway = local.address, local.gateway_url
        else:
            proc = _ServerProcess(BENCH_HEIGHT, BENCH_WIDTH)
            server, gateway = proc.address, proc.gateway_url
    try:
        results: dict[str, Any] = {}
        for name in transports:
            try:
                if name == "websocket":
                    if gateway is None:
                        results[name] = {"skipped": "no WebSocket gateway: pass --gateway ws://HOST:PORT/v1/direct"}
                        continue
                    results[name] = bench_websocket(gateway, frames, credits, token, frame_format)
                else:
                    results[name] = bench_grpc(server, name, frames, credits, token, frame_format)
            except Exception as exc:  # noqa: BLE001 - report it, measure the others
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if local is not None:
            local.stop()
        if proc is not None:
            proc.stop()
    measured = [r for r in results.values() if "frame_shape" in r]
    channels = 4 if frame_format == "rgba8" else 3
    frame_shape = tuple(measured[0]["frame_shape"]) if measured else (BENCH_HEIGHT, BENCH_WIDTH, channels)
    frame_bytes = int(np.prod(frame_shape))
    chunk_frames = max(1, round(measured[0]["chunk_bytes_max"] / frame_bytes)) if measured else 12
    base = copy_fps(frame_shape, chunk_frames)
    if local is not None or proc is not None:
        where = ("in-process" if local is not None else "separate-process") + \
            " ShotStreamServer with SyntheticEngine (premade frames: the model is not measured)"
    else:
        where = f"external server {server} (its model's speed is included)"
    out: dict[str, Any] = {
        "what": f"frames/s delivered into client-owned numpy arrays ({frame_format}), after one warm-up chunk, "
                f"as a ratio to numpy.copyto of the same bytes between preallocated buffers",
        "server": where, "frame_shape": list(frame_shape), "frame_format": frame_format,
        "frames_requested": frames, "chunks_in_flight": credits,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "numpy_memcpy_fps": base["memcpy"], "numpy_copy_new_array_fps": base["copy_new_array"],
        "transports": results,
    }
    for name, r in results.items():
        if "fps" in r:
            r["mb_per_s"] = r["fps"] * frame_bytes / 1e6
            out[f"{name}_fps"] = r["fps"]
            out[f"{name}_vs_memcpy"] = r["fps"] / base["memcpy"]
            out[f"{name}_vs_copy_new_array"] = r["fps"] / base["copy_new_array"]
    return out


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _serve_child(int(sys.argv[2]), int(sys.argv[3]))
    else:
        print("usage: shotstream bench (this module's own entry point is internal)", file=sys.stderr)
        sys.exit(2)
