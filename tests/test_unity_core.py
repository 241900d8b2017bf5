"""The Unity plugin's C# core (unity_plugin/com.shotstream.bridge/Runtime/Core) under mono: golden messages
both ways against the Python protocol code, and a live session over the WebSocket gateway whose pixels
must equal what the Python SDK receives for the same seed and cues. Skips only when mcs/mono are missing
(scripts/test.sh installs mono-mcs)."""

from __future__ import annotations

import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from system_tools import require_mono

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "unity_plugin" / "com.shotstream.bridge" / "Runtime" / "Core"
SOURCES = sorted(CORE.glob("*.cs"))
TESTS = ROOT / "tests" / "unity"


@pytest.fixture(scope="module", autouse=True)
def _mono():
    require_mono()


@pytest.fixture(scope="module")
def exe(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unity") / "CoreTests.exe"
    proc = subprocess.run(["mcs", "-langversion:7.2", "-unsafe", "-warnaserror+", "-nowarn:414", f"-out:{out}",
                           *map(str, SOURCES), str(TESTS / "CoreTests.cs"), str(TESTS / "ProcessExit.cs")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_core_goldens(exe, tmp_path):
    subprocess.run([sys.executable, str(TESTS / "make_goldens.py"), "write", str(tmp_path)], check=True)
    proc = subprocess.run(["mono", str(exe), "goldens", str(tmp_path)], capture_output=True, text=True, timeout=120)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert re.fullmatch(r"\d+ passed, 0 failed", last), proc.stdout + proc.stderr
    assert proc.returncode == 0
    check = subprocess.run([sys.executable, str(TESTS / "make_goldens.py"), "check", str(tmp_path)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The real service (tiny engine, random weights) on loopback, and the story as the Python SDK receives
    it over gRPC: "walk" (3 chunks) cut by "boom" (2 chunks, CUT) as soon as walk starts. With one credit the
    cut lands after walk's first chunk (its second needs the first one's ack), so every client gets the same
    chunks. Yields (server, [(seq, event_id, crc32, bytes)], takes folder)."""
    from engine_core import TINY, ShotStreamEngine
    from service.background import BackgroundServer
    from service.sdk import Chunk, ShotFinished, ShotStarted, ShotStreamClient
    from service.settings import ServerSettings

    takes = tmp_path_factory.mktemp("takes")
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1, takes_dir=takes)
    with BackgroundServer(engine, settings, grace=2.0) as server:
        want, finished = [], []
        with ShotStreamClient(server.address) as client:
            session = client.open_session("A lighthouse on a stormy coast.", seed=5, transport="inline",
                                          frame_format="rgba8", chunks_in_flight=1)
            session.cue("The keeper climbs the stairs.", num_chunks=3, event_id="walk")
            for ev in session:
                if isinstance(ev, ShotStarted) and ev.event_id == "walk":
                    session.cue("A wave hits the rocks.", num_chunks=2, mode="cut", event_id="boom")
                elif isinstance(ev, Chunk):
                    data = ev.frames.tobytes()
                    want.append((str(ev.chunk_seq), ev.event_id, str(zlib.crc32(data)), str(len(data))))
                elif isinstance(ev, ShotFinished):
                    finished.append((ev.event_id, ev.chunks, ev.cut))
                    if len(finished) == 2:
                        break
            session.close()
        assert [w[1] for w in want] == ["walk", "boom", "boom"]
        assert finished == [("walk", 1, True), ("boom", 2, False)]
        yield server, want, takes


@pytest.mark.parametrize("transport", ["inline", "shm"])
def test_live_session_matches_python_sdk(exe, live, transport):
    """The C# core plays the same story over the WebSocket gateway, its pixels inline (binary SSC1 frames) or
    read from the shared-memory ring the session maps by path; every chunk must equal the Python SDK's. Both
    runs record a take, which must hold every frame sent: over shared memory a named one ended by stop_take;
    inline one named by the server and ended by close (take_saved must come before closed)."""
    server, want, takes = live
    take, end = ("unity-live", "stop") if transport == "shm" else ("", "close")
    proc = subprocess.run(["mono", str(exe), "live", server.gateway_url, transport, take, end],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    got = [tuple(line.split()[1:]) for line in out.splitlines() if line.startswith("CHUNK ")]
    assert got == want
    assert [line.split()[1:] for line in out.splitlines() if line.startswith("FINISHED ")] == [
        ["walk", "1", "cut"], ["boom", "2", "full"]]
    assert out.splitlines()[-1] == "CLOSED client", out

    import imageio_ffmpeg

    session_id = next(line.split()[1] for line in out.splitlines() if line.startswith("OPENED "))
    name = take or f"{session_id}-take1"
    path = takes.resolve() / f"{name}.mp4"
    assert f"TAKE_STARTED {name} {path}" in out.splitlines(), out
    saved = [line.split()[1:] for line in out.splitlines() if line.startswith("TAKE_SAVED ")]
    assert len(saved) == 1, out
    saved_name, saved_path, frames, size, duration = saved[0]
    assert (saved_name, saved_path) == (name, str(path))
    assert int(size) == path.stat().st_size > 0
    assert float(duration) == int(frames) / 16
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == int(frames)


def test_refused_handshake_reports_the_http_status(exe):
    """A gateway that has a token refuses a wrong one with HTTP 401, and any path but /v1/direct with 404. mono's
    ClientWebSocket (Unity's) reports both as "Unable to connect to the remote server"; ShotStreamConnection must
    still say which status the real gateway answered, pass on its explanation, and mark the failure as one a retry
    would repeat (not Transient)."""
    from engine_core import TINY, ShotStreamEngine
    from service.background import BackgroundServer
    from service.settings import ServerSettings

    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1, token="s3cret")
    with BackgroundServer(engine, settings, grace=2.0) as server:
        proc = subprocess.run(["mono", str(exe), "refused", server.gateway_url, "s3cret"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.split(" ", 3) for line in proc.stdout.splitlines() if line.startswith("REFUSED ")]
    assert [(status, transient) for _, status, transient, _ in lines] == [("401", "False"), ("404", "False")], proc.stdout
    assert "HTTP 401: set the client's Token" in lines[0][3] and "the token is wrong" in lines[0][3], lines[0][3]
    assert "HTTP 404: the URL's path must be /v1/direct" in lines[1][3] and "404 Not Found" in lines[1][3], lines[1][3]


def test_live_snapshot_continues_like_the_python_sdk(exe, tmp_path):
    """Issue 12 with the core alone (ShotStreamConnection, SnapshotAssembler, OpenFromSnapshotAsync), server snapshot parts of
    1 KiB and client parts of 1 KiB: session A plays a shot, asks for the snapshot mid-shot (taken at the shot's end, before
    the shot cued right after the request), writes it to a file and plays that next shot; session B continues the file and
    plays the same shot. B's chunks equal A's, and both equal the Python SDK's continuing the same file (the frame counter
    carries on at 9, the first shot's frames)."""
    from engine_core import TINY, ShotStreamEngine
    from service.background import BackgroundServer
    from service.sdk import Chunk, ShotFinished, ShotStreamClient
    from service.settings import ServerSettings

    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1, snapshot_part_bytes=1024)
    snap = tmp_path / "story.snap"
    with BackgroundServer(engine, settings, grace=2.0) as server:
        proc = subprocess.run(["mono", str(exe), "snapshot", server.gateway_url, str(snap)], capture_output=True, text=True,
                              timeout=300)
        out = proc.stdout
        assert proc.returncode == 0 and out.splitlines()[-1] == "SNAPSHOT DONE", out + proc.stderr
        data = snap.read_bytes()
        want = []
        with ShotStreamClient(server.address) as client:
            session = client.open_session(snapshot=data, transport="inline", frame_format="rgba8", chunks_in_flight=1)
            session.cue("A wave hits the rocks.", num_chunks=2, event_id="tail")
            for ev in session:
                if isinstance(ev, Chunk):
                    pixels = ev.frames.tobytes()
                    want.append(f"{ev.shot_index} {ev.story_frame} {zlib.crc32(pixels)} {len(pixels)}")
                elif isinstance(ev, ShotFinished):
                    break
            session.close()
    assert data[:8] == b"SHOTSNAP"
    parts = -(-len(data) // 1024)
    assert f"SNAPSHOT {len(data)} parts {parts} next 1" in out.splitlines(), out
    assert "RESTORED 1 9" in out.splitlines(), out
    chunks = [line.split(" ", 2) for line in out.splitlines() if line.startswith("SNAPCHUNK ")]
    a = [rest for _, who, rest in chunks if who == "a" and rest.startswith("1 ")]
    b = [rest for _, who, rest in chunks if who == "b"]
    assert len(want) == 2 and want[0].startswith("1 9 "), want
    assert a == want and b == want, (a, b, want)

