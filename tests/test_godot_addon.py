"""The Godot 4 addon (godot_plugin/addons/shotstream) and its demo project.

* every .gd file parses, lints and is formatted clean with the pinned gdtoolkit;
* protocol.gd's field table equals the proto's (no engine needed, so a proto change fails even here);
* in a real Godot 4.6 (tests/godot_runner.py): golden messages both ways against the Python protocol code,
  the jitter buffer, player, shot map, director, reconnect policy and offline client, the demo scene and the
  README's examples, reconnecting after a dropped connection (a scripted gateway), and a live session with a cut against the real service whose pixels must equal what the Python SDK receives for
  the same story, plus the editor dock driving a session and a take.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import wire_goldens
from godot_runner import assert_passed, require_engine, run_godot

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "godot_plugin"
ADDON = PLUGIN / "addons" / "shotstream"
GODOT_TESTS = ROOT / "tests" / "godot"
GDTOOLKIT_VERSION = "4.5.0"
CLIENT_NAME = "godot/Test"


def _gd_files() -> list[Path]:
    mine = sorted(p for p in GODOT_TESTS.glob("test_*.gd") if p.name != "test_base.gd")
    return sorted(PLUGIN.rglob("*.gd")) + mine


# ---------------------------------------------------------------- static checks (no engine)


def test_gdscript_parses_lints_and_is_formatted():
    if importlib.util.find_spec("gdtoolkit") is None:
        message = f"gdtoolkit is not installed (pip install gdtoolkit=={GDTOOLKIT_VERSION})"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    from importlib.metadata import version

    assert version("gdtoolkit") == GDTOOLKIT_VERSION, f"gdtoolkit {version('gdtoolkit')}: pinned {GDTOOLKIT_VERSION}"
    files = [str(p) for p in _gd_files()]
    assert len(files) >= 12, files
    for tool in ("parser", "linter"):
        proc = subprocess.run([sys.executable, "-m", f"gdtoolkit.{tool}", *files], capture_output=True, text=True)
        assert proc.returncode == 0, f"gd{tool}:\n{proc.stdout}{proc.stderr}"
    proc = subprocess.run([sys.executable, "-m", "gdtoolkit.formatter", "--check", *files], capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"gdformat --check (run gdformat on these files):\n{proc.stdout}{proc.stderr}"


def _untyped(path: Path) -> list[str]:
    """Declarations without a type: `var x = ...` / `var x`, parameters without one, functions and lambdas
    without a return type (`:=` counts as typed: the type is inferred and fixed)."""
    text = path.read_text(encoding="utf-8")
    problems = []
    for m in re.finditer(r"\bvar\s+(\w+)\s*(:?=|:|\n)", text):
        if m[2] == "=" or m[2] == "\n":
            problems.append(f"{path.name}: var {m[1]} has no type")
    for m in re.finditer(r"\bfunc\b\s*(\w*)\s*\((.*?)\)\s*(->\s*[\w.\[\]]+)?\s*:", text, re.S):
        name, params, ret = m[1] or "lambda", m[2], m[3]
        if not ret:
            problems.append(f"{path.name}: func {name} has no return type")
        for param in filter(None, (p.strip() for p in re.split(r",(?![^\[]*\])", params))):
            if ":" not in param.split("=")[0]:
                problems.append(f"{path.name}: func {name} parameter {param!r} has no type")
    return problems


def test_gdscript_is_typed():
    files = sorted(PLUGIN.rglob("*.gd"))
    assert files
    problems = [p for f in files for p in _untyped(f)]
    assert not problems, "\n".join(problems)
    sample = "var a = 1\nvar b: int = 2\nvar c := 3\nfunc f(x, y: int) -> void:\n\tpass\nfunc g():\n\tpass\n"
    found = _untyped_text_for_test(sample)
    assert found == ["var a has no type", "func f parameter 'x' has no type", "func g has no return type"], found


def _untyped_text_for_test(text: str) -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sample.gd"
        path.write_text(text, encoding="utf-8")
        return [p.split(": ", 1)[1] for p in _untyped(path)]


def _gd_field_table() -> list[str]:
    """protocol.gd's MESSAGES and ENUMS as fields.txt lines (parsed from the source text)."""
    source = (ADDON / "protocol.gd").read_text(encoding="utf-8")
    lines = []
    for const, prefix in (("MESSAGES", ""), ("ENUMS", "enum:")):
        start = source.index(f"const {const} := {{")
        block = source[start:source.index("\n}\n", start)].splitlines()[1:]
        table: dict[str, list[str]] = {}
        current = None
        for line in block:
            if head := re.match(r'\t"(\w+)":', line):
                current = table.setdefault(head[1], [])
                line = line[head.end():]
            if current is None:
                continue
            if const == "MESSAGES":
                current += re.findall(r'\[\s*"(\w+)",\s*"[\w ]+"\s*\]', line)
            else:
                current += re.findall(r'"(\w+)"', line)
        lines += [f"{prefix}{name} {','.join(fields)}" for name, fields in table.items()]
    return lines


def test_protocol_field_table_follows_the_proto():
    """The same comparison the Godot goldens test makes, without an engine: a proto change fails here too."""
    want = wire_goldens.field_lines()
    got = _gd_field_table()
    assert sorted(got) == sorted(want), (
        "godot_plugin/addons/shotstream/protocol.gd MESSAGES/ENUMS differ from the proto; update them:\n"
        + "\n".join(f"- {line}" for line in sorted(set(want) - set(got)))
        + "\n" + "\n".join(f"+ {line}" for line in sorted(set(got) - set(want))))


def test_demo_project_and_plugin_files():
    project = (PLUGIN / "project.godot").read_text(encoding="utf-8")
    assert 'run/main_scene="res://demo/demo.tscn"' in project
    assert (PLUGIN / "demo" / "demo.tscn").is_file()
    assert 'enabled=PackedStringArray("res://addons/shotstream/plugin.cfg")' in project
    cfg = (ADDON / "plugin.cfg").read_text(encoding="utf-8")
    script = re.search(r'^script="([^"]+)"', cfg, re.M)
    assert script and (ADDON / script[1]).is_file()
    assert "extends EditorPlugin" in (ADDON / script[1]).read_text(encoding="utf-8")
    # editor-only API stays in plugin.gd: everything else must load in an exported game
    for path in ADDON.glob("*.gd"):
        if path.name != "plugin.gd":
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"\b(EditorPlugin|EditorInterface|EditorSettings)\b", text), path.name


def _public_api() -> dict[str, set[str]]:
    """class_name -> public methods, signals and exported/public properties, from the addon sources."""
    api = {}
    for path in ADDON.glob("*.gd"):
        text = path.read_text(encoding="utf-8")
        cls = re.search(r"^class_name (\w+)", text, re.M)
        if not cls or cls[1] == "ShotStreamDock":
            continue
        names = set(re.findall(r"^(?:static )?func ([a-z]\w*)\(", text, re.M))
        names |= set(re.findall(r"^signal (\w+)", text, re.M))
        names |= set(re.findall(r"^@export\w*(?:\([^)]*\))? var (\w+)", text, re.M))
        api[cls[1]] = names
    return api


def test_readme_documents_the_api(tmp_path):
    readme = (PLUGIN / "README.md").read_text(encoding="utf-8")
    snippets = _readme_snippets()
    assert len(snippets) >= 2
    if importlib.util.find_spec("gdtoolkit") is not None:
        for i, code in enumerate(snippets):
            (tmp_path / f"snippet_{i}.gd").write_text(code, encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "gdtoolkit.parser", *map(str, sorted(tmp_path.glob("*.gd")))],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"README GDScript does not parse:\n{proc.stdout}{proc.stderr}"
    missing = [f"{cls}.{name}" for cls, names in sorted(_public_api().items()) for name in sorted(names)
               if name not in readme]
    assert not missing, f"godot_plugin/README.md does not mention: {missing}"
    # everything the README calls on the addon's classes exists
    api = _public_api()
    known = set().union(*api.values())
    for cls, name in re.findall(r"\b(ShotStream\w+)\.(\w+)\(", readme):
        if cls in api:
            assert name in api[cls] or name == "new", f"README calls {cls}.{name}(), which does not exist"
    for name in re.findall(r"\b(?:client|player|director|shots|shot_map)\.([a-z_]\w*)\(", readme):
        assert name in known, f"README calls .{name}(), which the addon does not have"


# ---------------------------------------------------------------- in Godot 4.6


def test_goldens_both_ways_in_godot(tmp_path):
    require_engine()
    goldens = tmp_path / "goldens"
    wire_goldens.write(goldens, CLIENT_NAME)
    run = run_godot(GODOT_TESTS / "test_protocol.gd", files={"goldens": goldens}, args={"goldens": "res://goldens"})
    assert_passed(run)
    written = tmp_path / "godot_client"
    written.mkdir()
    for line in run.lines:
        if line.startswith("CLIENT "):
            _, name, data = line.split(" ")
            (written / f"{name}.json").write_bytes(base64.b64decode(data))
    # the gateway parses each to the expected message, and each is byte-identical to MessageToJson (compact)
    names = tuple(wire_goldens.client_messages(CLIENT_NAME))
    assert wire_goldens.check(written, CLIENT_NAME, strict_names=names) == len(names)


def test_units_in_godot():
    require_engine()
    assert_passed(run_godot(GODOT_TESTS / "test_units.gd"))


def _readme_snippets() -> list[str]:
    return re.findall(r"```gdscript\n(.*?)```", (PLUGIN / "README.md").read_text(encoding="utf-8"), re.S)


def test_demo_scene_and_readme_examples_in_godot():
    require_engine()
    snippets = {f"readme/snippet_{i}.gd": code.encode() for i, code in enumerate(_readme_snippets())}
    runnable = [f"res://{k}" for k, code in snippets.items() if b"$" not in code]
    run = run_godot(GODOT_TESTS / "test_demo.gd", files={"demo": PLUGIN / "demo", **snippets},
                    args={"snippets": [f"res://{k}" for k in snippets], "run": runnable})
    assert_passed(run)


def _service_records_takes() -> bool:
    from service import session
    from service.settings import ServerSettings

    return "start_take" in inspect.getsource(session) and "takes_dir" in ServerSettings.__dataclass_fields__


def test_live_session_matches_python_sdk(tmp_path):
    require_engine()
    from engine_core import TINY, ShotStreamEngine
    from service.background import BackgroundServer
    from service.sdk import Chunk, ShotFinished, ShotStarted, ShotStreamClient
    from service.settings import ServerSettings

    record = _service_records_takes()
    options = {"takes_dir": tmp_path / "takes"} if record else {}
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1, stats_every_chunks=1, **options)
    with BackgroundServer(engine, settings, grace=2.0) as server:
        run = run_godot(GODOT_TESTS / "test_live.gd", args={"url": server.gateway_url, "take": record, "stats": True},
                        timeout=300)
        assert_passed(run)
        got = [tuple(line.split()[1:]) for line in run.lines if line.startswith("CHUNK ")]
        got_finished = [tuple(line.split()[1:]) for line in run.lines if line.startswith("FINISHED ")]
        assert "CLOSED client" in run.lines, run.output

        # The same story through the Python SDK (gRPC): same seed, same cues, the CUT sent at the same moment
        # (when "walk" starts; with 1 chunk in flight it lands after walk's first chunk on both sides).
        want, finished = [], []
        with ShotStreamClient(server.address) as client:
            session = client.open_session("A lighthouse on a stormy coast.", seed=5, transport="inline",
                                          frame_format="rgba8", chunks_in_flight=1)
            session.cue("The keeper climbs the stairs.", num_chunks=3, event_id="walk")
            cut_sent = False
            for ev in session:
                if isinstance(ev, ShotStarted) and ev.event_id == "walk" and not cut_sent:
                    session.cue("A wave hits the rocks.", num_chunks=2, mode="cut", event_id="boom")
                    cut_sent = True
                elif isinstance(ev, Chunk):
                    data = ev.frames.tobytes()
                    want.append((str(ev.chunk_seq), ev.event_id, hashlib.sha256(data).hexdigest(), str(len(data))))
                elif isinstance(ev, ShotFinished):
                    finished.append((ev.event_id, str(ev.chunks), str(ev.frames), str(ev.cut).lower()))
                    if len(finished) == 2:
                        break
            session.close()
    assert [w[1] for w in want] == ["walk", "boom", "boom"]
    assert finished == [("walk", "1", "9", "true"), ("boom", "2", "21", "false")], "the cut happened"
    assert got == want
    assert got_finished == finished
    if record:
        saved = [line.split() for line in run.lines if line.startswith("TAKE_SAVED ")]
        assert len(saved) == 1, run.output
        _, name, frames, size, path = saved[0]
        assert (name, frames) == ("godot-live", "30")
        assert Path(path).is_file() and Path(path).stat().st_size == int(size)
        assert any(line.startswith("DOCK Saved dock-take") for line in run.lines), run.output


class _ScriptedGateway:
    """A WebSocket server playing the gateway's side of two sessions: the first is dropped (TCP abort, no close
    frame) after its first cue; the second gets one chunk (real SSC1 framing) and closes on `close`."""

    def __init__(self) -> None:
        import asyncio
        import threading

        self.connections: list[dict] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        import asyncio

        from websockets.asyncio.server import serve

        async def main() -> None:
            async with serve(self._handle, "127.0.0.1", 0) as server:
                self.port = server.sockets[0].getsockname()[1]
                self._stop = asyncio.Event()
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    async def _handle(self, ws) -> None:
        import json

        from service.gateway import encode_server_message, to_json
        from service.protocol import pb

        n = len(self.connections) + 1
        record = {"path": ws.request.path, "received": []}
        self.connections.append(record)

        async def recv() -> dict:
            text = await ws.recv()
            record["received"].append(text)
            return json.loads(text)

        assert "open" in await recv()
        await ws.send(to_json(pb.ServerMessage(opened=pb.SessionOpened(
            session_id=f"fake-{n}", protocol_version=1, width=4, height=2, fps=16, frames_first_chunk=1,
            frames_per_chunk=1, max_chunks_per_shot=7, frame_format=pb.FRAME_FORMAT_RGBA8,
            transport=pb.TRANSPORT_INLINE, max_chunks_in_flight=2))))
        await recv()  # the cue
        if n == 1:
            ws.transport.abort()  # a dropped connection: no close frame
            return
        await ws.send(encode_server_message(pb.ServerMessage(chunk=pb.FrameChunk(
            chunk_seq=7, event_id="b", num_frames=1, width=4, height=2, frame_format=pb.FRAME_FORMAT_RGBA8,
            last_in_shot=True, pixels=bytes(32)))))
        while "close" not in await recv():
            pass
        await ws.send(to_json(pb.ServerMessage(closed=pb.SessionClosed(reason="client"))))

    def __enter__(self) -> _ScriptedGateway:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_reconnect_after_a_dropped_connection_in_godot():
    require_engine()
    import json

    with _ScriptedGateway() as gateway:
        run = run_godot(GODOT_TESTS / "test_reconnect.gd", args={"url": f"ws://127.0.0.1:{gateway.port}/v1/direct"})
    assert_passed(run)
    assert len(gateway.connections) == 2, gateway.connections
    for conn in gateway.connections:
        assert conn["path"] == "/v1/direct?token=s3cr%20t%2F%26", conn["path"]
    first, second = ([json.loads(t) for t in c["received"]] for c in gateway.connections)
    assert first[0]["open"]["clientName"] == "godot/ShotStream Godot tests"
    assert first[0]["open"]["seed"] == "9" and first[0]["open"]["frameFormat"] == "FRAME_FORMAT_RGBA8"
    assert first[1] == {"cue": {"eventId": "a", "prompt": "first shot", "mode": "CUE_MODE_WAIT"}}
    assert second[0] == first[0], "the new session opens like the first"
    assert second[1:] == [{"cue": {"eventId": "b", "prompt": "second shot", "mode": "CUE_MODE_WAIT"}},
                          {"ack": {"chunkSeq": "7"}}, {"close": {}}]
