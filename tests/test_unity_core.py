"""The Unity plugin's C# core (unity_plugin/com.shotstream.bridge/Runtime/Core) under mono: golden messages
both ways against the Python protocol code, and a live session over the WebSocket gateway whose pixels
must equal what the Python SDK receives for the same seed and cues. Skips only when mcs/mono are missing
(scripts/test.sh installs mono-mcs)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "unity_plugin" / "com.shotstream.bridge" / "Runtime" / "Core"
SOURCES = [CORE / n for n in ("Json.cs", "Messages.cs", "ChunkFrame.cs", "ShotStreamConnection.cs")]
TESTS = ROOT / "tests" / "unity"

pytestmark = pytest.mark.skipif(not (shutil.which("mcs") and shutil.which("mono")),
                                reason="mcs/mono not installed (apt-get install -y --no-install-recommends mono-mcs)")


@pytest.fixture(scope="module")
def exe(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unity") / "CoreTests.exe"
    proc = subprocess.run(["mcs", "-langversion:7.2", "-warnaserror+", "-nowarn:414", f"-out:{out}",
                           *map(str, SOURCES), str(TESTS / "CoreTests.cs")], capture_output=True, text=True)
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


def test_live_session_matches_python_sdk(exe):
    from engine_core import TINY, ShotStreamEngine
    from service.background import BackgroundServer
    from service.sdk import Chunk, ShotFinished, ShotStreamClient
    from service.settings import ServerSettings

    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1)
    with BackgroundServer(engine, settings, grace=2.0) as server:
        proc = subprocess.run(["mono", str(exe), "live", server.gateway_url], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = [tuple(line.split()[1:]) for line in proc.stdout.splitlines() if line.startswith("CHUNK ")]
        assert "CLOSED client" in proc.stdout, proc.stdout

        # The same story through the Python SDK (gRPC): same seed, same cues, same moment for the CUT.
        want, finished = [], 0
        with ShotStreamClient(server.address) as client:
            session = client.open_session("A lighthouse on a stormy coast.", seed=5, transport="inline",
                                          frame_format="rgba8", chunks_in_flight=1)
            session.cue("The keeper climbs the stairs.", num_chunks=1, event_id="walk")
            cut_sent = False
            for ev in session:
                if isinstance(ev, Chunk):
                    data = ev.frames.tobytes()
                    want.append((str(ev.chunk_seq), ev.event_id, str(zlib.crc32(data)), str(len(data))))
                    if not cut_sent:
                        session.cue("A wave hits the rocks.", num_chunks=2, mode="cut", event_id="boom")
                        cut_sent = True
                elif isinstance(ev, ShotFinished):
                    finished += 1
                    if finished == 2:
                        break
            session.close()
    assert [w[1] for w in want] == ["walk", "boom", "boom"]
    assert got == want
