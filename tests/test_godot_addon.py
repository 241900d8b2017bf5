"""The Godot 4 addon (godot_plugin/addons/shotstream) and its demo project.

* every .gd file parses, lints and is formatted clean with the pinned gdtoolkit, and is typed;
* protocol.gd's field table has the proto's field names in order (no engine needed, so a proto change fails
  even here; types are not compared: the proto's rules forbid re-typing a field within v1);
* every script ships its Godot 4.4+ `.uid` file, and Godot reads it;
* in a real Godot 4.6 (tests/godot_runner.py): golden messages both ways against the Python protocol code,
  the jitter buffer, player, shot map, director, reconnect policy and offline client, the demo scene and the
  README's examples, the client against a scripted gateway (reconnecting after a drop or a server shutdown,
  fatal errors, timeouts, closing the socket itself, dropped and bad chunks, ack bookkeeping, reparenting and
  pausing), and a live session with a cut against the real service whose pixels must equal what the Python
  SDK receives for the same story, plus the editor dock driving a session and a take;
* story snapshots (issue 12): parts split and put together, cue log pages, ShotStreamSnapshot saves under
  user://, the client against a scripted gateway, and live: a saved snapshot restored in a new session and a
  fork play the next shot frame for frame as the original and as the Python SDK's uninterrupted story;
* ShotStreamClient.resume_story (issue 13) against the scripted gateway: a lost connection or a drained server
  moves the story to a new session, from the last snapshot or as a new story, with the right cues sent again.
Every error a run prints must be one the test declares (assert_passed).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import inspect
import os
import re
import socket
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
    """The same comparison the Godot goldens test makes, without an engine: a proto change fails here too. Names
    and order only: shotstream.v1 may add fields but never re-type one, so types cannot drift."""
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
    # Godot 4.4+ gives each script a `.uid` file; shipped ones keep references stable (test_demo.gd has Godot's
    # ResourceUID parse each one back)
    uids = {}
    for script in sorted(PLUGIN.rglob("*.gd")):
        uid = script.with_name(script.name + ".uid")
        assert uid.is_file(), f"{uid.relative_to(PLUGIN)} is missing"
        text = uid.read_text(encoding="utf-8")
        assert re.fullmatch(r"uid://[a-y0-8]{1,13}\n", text), (uid.name, text)
        uids[text] = script
    assert len(uids) == len(list(PLUGIN.rglob("*.gd"))), "UIDs must be unique"
    assert sorted(p.name.removesuffix(".uid") for p in PLUGIN.rglob("*.uid")) == sorted(
        p.name for p in PLUGIN.rglob("*.gd")), "no .uid file without its script"
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
        if not cls:
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
    run = run_godot(GODOT_TESTS / "test_protocol.gd", files={"goldens": goldens}, args={"goldens": "res://goldens"},
                    expected_errors=[  # the encoder refuses bad input loudly
                        "cannot encode ClientMessage: ClientMessage.cue has no field no_such_field",
                        "ClientMessage.cue.num_chunks: int is not a valid uint32",
                        "ClientMessage.cue.mode: 7 is not a CueMode value",
                        "ClientMessage.ack.chunk_seq: String is not a valid uint64",
                        "ClientMessage.open.decoder: 3 is not a Decoder value"])
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


def _closed_port() -> int:
    """A loopback port that was just free: nothing listens there, and it is no browser-blocked port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_units_in_godot():
    require_engine()
    port = _closed_port()
    unreachable = re.escape(f"ShotStreamClient: could not open a session at ws://127.0.0.1:{port}/v1/direct")
    assert_passed(run_godot(GODOT_TESTS / "test_units.gd", args={"closed_port": port}, expected_errors=[
        "ERROR: ShotStreamPlayer: chunk 10 has 90 pixel bytes for 3 frames of 5x3: not playable",
        re.compile(f"^WARNING: {unreachable} .* Retrying in 0.05 s \\(retry 1\\)"),
        re.compile(f"^WARNING: {unreachable} .* Retrying in 0.10 s \\(retry 2\\)"),
        re.compile(f"^ERROR: {unreachable} .*wrong token or path")]))


def story_blob(n: int) -> bytes:
    """The bytes tests/godot/test_story.gd's blob(n) makes."""
    return bytes((i * 31 + 7) % 256 for i in range(n))


def test_story_snapshots_in_godot():
    """Snapshot parts split and put together (refusals included), cue log pages merged, ShotStreamSnapshot
    through ResourceSaver and plain files under user://, the client's open for a snapshot or a fork, and the
    client against a scripted gateway: opened from a snapshot in parts, a snapshot received in parts (and a
    stray part refused), a cue log in two pages."""
    require_engine()
    with _ScriptedGateway() as gateway:
        run = run_godot(GODOT_TESTS / "test_story.gd", args={"url": f"ws://127.0.0.1:{gateway.port}/v1/direct"},
                        expected_errors=[
        "ERROR: ShotStreamSnapshot: cannot save to res://story.tres: snapshots are kept under user://",
        "ERROR: ShotStreamSnapshot: cannot save to user://a/../../story.tres: the path must not go up (..)",
        "ERROR: ShotStreamSnapshot: cannot save to user://story.json: use a .tres or .res file",
        "ERROR: ShotStreamSnapshot: cannot save an empty snapshot to user://empty.res",
        "ERROR: ShotStreamSnapshot: cannot save an empty snapshot to user://e.snap",
        "ERROR: ShotStreamSnapshot: cannot load user://missing.res: no such file",
        "ERROR: ShotStreamSnapshot: could not read user://missing.snap",
        "ERROR: ShotStreamSnapshot: user://saves/deep/story.snap has 3 bytes: not a snapshot (1..2)"])
    assert_passed(run)
    story = gateway.scenario("story")
    assert len(story) == 1, story
    received = story[0]["received"]
    opened = received[0]["open"]
    data = story_blob(5000)
    assert opened["snapshot"] == {"data": base64.b64encode(data[:2048]).decode(), "totalBytes": "5000"}, opened
    assert not {"decoder", "globalCaption", "seed"} & set(opened), "a snapshot's story keeps its own"
    parts = [m["snapshotPart"] for m in received if "snapshotPart" in m]
    assert [p.get("index") for p in parts] == [1, 2] and {p["totalBytes"] for p in parts} == {"5000"}
    assert b"".join(base64.b64decode(p["data"]) for p in [opened["snapshot"], *parts]) == data
    assert [m for m in received if not {"open", "snapshotPart"} & set(m)] == [
        {"snapshot": {"waitForBoundary": True}}, {"cueLog": {}}, {"cueLog": {"fromShot": 4}}, {"close": {}}]
    assert story[0]["client_closed_first"] is True
    reopen = [c["received"] for c in gateway.scenario("story_reopen")]
    assert len(reopen) == 2 and reopen[0] == reopen[1][:3] == received[:3], "a reconnect continues the snapshot again"
    big = gateway.scenario("story_big")[0]["received"]
    parts = [big[0]["open"]["snapshot"], *(m["snapshotPart"] for m in big if "snapshotPart" in m)]
    assert len(parts) == 64 and [p.get("index", 0) for p in parts] == list(range(64))
    assert b"".join(base64.b64decode(p["data"]) for p in parts) == story_blob(2 << 20), "every part, in order"


def test_chunk_benchmark_in_godot(capsys):
    """Issue 11, defect 3: main-thread milliseconds per chunk of the 1.3B model (12 frames of 832x480 RGBA8) from
    the received message to the screen, now and the old way (a copy of the chunk, then a blit per frame). A
    benchmark that prints numbers (see tests/godot/test_bench.gd), run windowed so that texture uploads go
    through WebGL 2 (SwiftShader: a CPU renderer, slower than a GPU's); it fails only when the frames shown
    are wrong."""
    require_engine()
    with _ScriptedGateway() as gateway:
        run = run_godot(GODOT_TESTS / "test_bench.gd", headless=False, timeout=300,
                        args={"reps": 5, "url": f"ws://127.0.0.1:{gateway.port}/v1/direct",
                              "chunks": gateway.bench_chunks})
    assert_passed(run)
    conns = gateway.scenario("bench")  # the browser's WebSocket, Godot's WebSocketPeer, the browser's
    assert len(conns) == 3, conns
    for conn in conns:
        acks = [int(m["ack"]["chunkSeq"]) for m in conn["received"] if "ack" in m]
        assert acks == list(range(1, gateway.bench_chunks + 1)), acks
    lines = [line for line in run.lines if line.startswith("BENCH")]
    assert any(line.startswith("BENCH now_main_thread_ms_per_chunk ") for line in lines), run.output
    assert any(line.startswith("BENCH live_max_frame_ms ") for line in lines), run.output
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_cutscene_in_godot():
    require_engine()
    assert_passed(run_godot(GODOT_TESTS / "test_cutscene.gd", files={"demo": PLUGIN / "demo"}))


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
                        files={"demo": PLUGIN / "demo"}, timeout=300)
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


def test_live_story_snapshot_restore_and_fork_match_python_sdk():
    """Issue 12 live: a Godot session's snapshot (sent by the server in several parts), saved through a
    ShotStreamSnapshot resource and a plain file under user:// and loaded back, opens a new session (sent in
    2 KiB parts) that plays the next shot frame for frame as the original and as a fork of it; the Python SDK
    plays the same story uninterrupted and gets the same frames."""
    require_engine()
    from engine_core import TINY, ShotStreamEngine
    from service.background import BackgroundServer
    from service.sdk import Chunk, ShotFinished, ShotStreamClient
    from service.settings import ServerSettings

    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1, snapshot_part_bytes=2048)
    with BackgroundServer(engine, settings, grace=2.0) as server:
        run = run_godot(GODOT_TESTS / "test_live_story.gd", args={"url": server.gateway_url}, timeout=300)
        assert_passed(run)
        # the uninterrupted story through the SDK (gRPC): shot one, then shot two
        want = []
        with ShotStreamClient(server.address) as client:
            session = client.open_session("A lighthouse on a stormy coast.", seed=11, transport="inline",
                                          frame_format="rgba8", chunks_in_flight=1)
            session.cue("The keeper climbs the stairs.", num_chunks=2, event_id="one")
            for ev in session:
                if isinstance(ev, ShotFinished) and ev.event_id == "one":
                    session.cue("A wave hits the rocks.", num_chunks=2, event_id="two")
                elif isinstance(ev, Chunk) and ev.event_id == "two":
                    want.append(("two", hashlib.sha256(ev.frames.tobytes()).hexdigest(), str(ev.story_frame)))
                elif isinstance(ev, ShotFinished) and ev.event_id == "two":
                    break
            session.close()
    assert len(want) == 2 and want[0][2] == "21", want
    got = {name: [tuple(line.split()[2:]) for line in run.lines if line.startswith(f"CHUNK {name} ")]
           for name in "ABC"}
    assert got["A"] == want, "the original Godot session = the SDK's uninterrupted story"
    assert got["B"] == want, "restored from the saved snapshot = the uninterrupted story"
    assert got["C"] == want, "the fork = the uninterrupted story"
    snapshot = [line.split() for line in run.lines if line.startswith("SNAPSHOT ")]
    assert len(snapshot) == 1 and int(snapshot[0][1]) > 2 * 2048 and snapshot[0][2] == "1", snapshot
    assert sorted(line for line in run.lines if line.startswith("RESTORED ")) == ["RESTORED B 1 21",
                                                                                  "RESTORED C 1 21"]


class _Conn:
    """One connection of the scripted gateway: what the client sent, and how the connection ended."""

    def __init__(self, ws, record: dict) -> None:
        self.ws = ws
        self.record = record

    async def recv(self) -> dict:
        import json

        message = json.loads(await self.ws.recv())
        self.record["received"].append(message)
        return message

    async def recv_until(self, kind: str) -> dict:
        while kind not in (message := await self.recv()):
            pass
        return message

    async def send(self, **fields) -> None:
        from service.gateway import encode_server_message
        from service.protocol import pb

        await self.ws.send(encode_server_message(pb.ServerMessage(**fields)))

    async def open(self, **overrides) -> None:
        """Read `open` and answer `opened`: 4x2 RGBA8, 1 frame per chunk, 2 credits unless overridden."""
        from service.protocol import pb

        assert "open" in await self.recv()
        fields = dict(session_id=f"{self.record['scenario']}-{self.record['n']}", protocol_version=1, width=4,
                      height=2, fps=16, frames_first_chunk=1, frames_per_chunk=1, max_chunks_per_shot=7,
                      frame_format=pb.FRAME_FORMAT_RGBA8, transport=pb.TRANSPORT_INLINE, max_chunks_in_flight=2)
        await self.send(opened=pb.SessionOpened(**{**fields, **overrides}))

    async def chunk(self, seq: int, event_id: str, width: int = 4, height: int = 2, frames: int = 1,
                    cut_pixels: int = 0, shot_index: int = 0) -> None:
        from service.gateway import encode_server_message
        from service.protocol import pb

        pixels = bytes(frames * width * height * 4)
        frame = encode_server_message(pb.ServerMessage(chunk=pb.FrameChunk(
            chunk_seq=seq, event_id=event_id, shot_index=shot_index, num_frames=frames, width=width, height=height,
            frame_format=pb.FRAME_FORMAT_RGBA8, last_in_shot=True, pixels=pixels)))
        await self.ws.send(frame[:len(frame) - cut_pixels])

    async def wait_for_acks(self, seqs: set[int]) -> None:
        acked: set[int] = set()
        while not seqs <= acked:
            message = await self.recv()
            if "ack" in message:
                acked.add(int(message["ack"]["chunkSeq"]))

    async def end(self, reason: str, closed: str | None = None) -> None:
        """As the gateway ends a session: `closed` (when given), up to 2 s for the client to close the
        WebSocket, then a close with 1000 and `reason`. Records whether the client closed first."""
        import asyncio

        from service.protocol import pb

        if closed is not None:
            await self.send(closed=pb.SessionClosed(reason=closed))
        try:
            await asyncio.wait_for(self.ws.wait_closed(), 2.0)
        except asyncio.TimeoutError:
            pass
        self.closed_by_client()
        await self.ws.close(1000, reason)

    def closed_by_client(self) -> None:
        protocol = self.ws.protocol
        self.record["client_closed_first"] = bool(protocol.close_rcvd_then_sent)
        self.record["client_close_code"] = protocol.close_rcvd.code if protocol.close_rcvd else None


class _ScriptedGateway:
    """A WebSocket server playing the gateway's side of the scenarios in tests/godot/test_scripted.gd; the
    connection URL's `s` query parameter picks the scenario (`_s_<name>`, which gets the connection's number
    within its scenario). `connections` records each: scenario, n, path, the messages received, and whether
    the client closed the WebSocket itself (`client_closed_first`, `client_close_code`)."""

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
            self._freed = asyncio.Event()
            async with serve(self._handle, "127.0.0.1", 0, compression=None, close_timeout=1) as server:
                self.port = server.sockets[0].getsockname()[1]
                self._stop = asyncio.Event()
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    async def _handle(self, ws) -> None:
        from urllib.parse import parse_qs, urlsplit

        from websockets.exceptions import ConnectionClosed

        scenario = parse_qs(urlsplit(ws.request.path).query).get("s", [""])[0]
        n = 1 + sum(c["scenario"] == scenario for c in self.connections)
        record = {"scenario": scenario, "n": n, "path": ws.request.path, "received": [],
                  "client_closed_first": None, "client_close_code": None}
        self.connections.append(record)
        try:
            await getattr(self, f"_s_{scenario}")(_Conn(ws, record), n)
        except ConnectionClosed:
            pass

    def scenario(self, name: str) -> list[dict]:
        return [c for c in self.connections if c["scenario"] == name]

    # -- scenarios (see test_scripted.gd) --

    bench_chunks = 8

    async def _s_bench(self, conn: _Conn, n: int) -> None:
        """tests/godot/test_bench.gd's live part: the 1.3B model's chunks (12 frames of 832x480 RGBA8) as fast
        as the 2 credits allow; each frame's first 4 bytes are 0xF00D0000 + its arrival index."""
        import struct

        from service.gateway import encode_server_message
        from service.protocol import pb

        width, height, frames = 832, 480, 12
        await conn.open(width=width, height=height, frames_first_chunk=frames, frames_per_chunk=frames)
        frame_bytes = width * height * 4

        async def send(seq: int) -> None:
            pixels = bytearray(frames * frame_bytes)
            for f in range(frames):
                struct.pack_into("<I", pixels, f * frame_bytes, 0xF00D0000 + (seq - 1) * frames + f)
            await conn.ws.send(encode_server_message(pb.ServerMessage(chunk=pb.FrameChunk(
                chunk_seq=seq, event_id="bench", num_frames=frames, width=width, height=height,
                frame_format=pb.FRAME_FORMAT_RGBA8, last_in_shot=seq == self.bench_chunks, pixels=bytes(pixels)))))

        sent = 0
        for _ in range(min(2, self.bench_chunks)):
            sent += 1
            await send(sent)
        acked = 0
        while acked < self.bench_chunks:
            if "ack" in await conn.recv():
                acked += 1
                if sent < self.bench_chunks:
                    sent += 1
                    await send(sent)
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_drop(self, conn: _Conn, n: int) -> None:  # the first connection drops without a close frame
        await conn.open()
        await conn.recv_until("cue")
        if n == 1:
            conn.ws.transport.abort()
            return
        await conn.chunk(1, "b")
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_shutdown(self, conn: _Conn, n: int) -> None:
        await conn.open()
        if n == 1:
            await conn.recv_until("cue")
            await conn.end("closed: server shutdown", closed="server shutdown")
            return
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_frame_shutdown(self, conn: _Conn, n: int) -> None:  # only the close frame says why
        if n == 1:
            await conn.open()
            await conn.recv_until("cue")
            await conn.ws.close(1000, "closed: server shutdown")
            return
        await self._s_shutdown(conn, n)

    async def _s_fatal(self, conn: _Conn, n: int) -> None:
        from service.protocol import pb

        assert "open" in await conn.recv()
        message = "the server is full: 4 sessions are open"
        await conn.send(error=pb.Error(code=8, message=message, fatal=True))
        await conn.end(f"error 8: {message}")

    async def _s_frame_fatal(self, conn: _Conn, n: int) -> None:
        assert "open" in await conn.recv()
        await conn.ws.close(1000, "error 8: the server is full: 4 sessions are open")

    async def _s_silent(self, conn: _Conn, n: int) -> None:  # never answers open
        assert "open" in await conn.recv()
        await conn.ws.wait_closed()
        conn.closed_by_client()

    async def _s_deaf(self, conn: _Conn, n: int) -> None:  # ignores close, then stops reading
        import asyncio

        await conn.open()
        await conn.recv_until("close")
        conn.ws.transport.pause_reading()
        try:
            await asyncio.wait_for(conn.ws.wait_closed(), 3.0)
        except asyncio.TimeoutError:
            conn.ws.transport.abort()

    async def _s_shm(self, conn: _Conn, n: int) -> None:
        from service.protocol import pb

        await conn.open(transport=pb.TRANSPORT_SHARED_MEMORY, ring=pb.RingLayout(path="/dev/shm/x", slot_count=2))
        await conn.end("closed: client")

    async def _s_overflow(self, conn: _Conn, n: int) -> None:  # 3 KB chunks, 3 credits
        from service.protocol import pb

        await conn.open(width=25, height=10, frames_first_chunk=3, frames_per_chunk=3, max_chunks_in_flight=3)
        await conn.recv_until("cue")
        for seq in (1, 2, 3):
            await conn.chunk(seq, "burst", 25, 10, 3)
        await conn.send(stats=pb.Stats(chunks_sent=3, frames_sent=9))
        await conn.wait_for_acks({1, 2})
        await conn.chunk(4, "burst", 25, 10, 3)
        await conn.wait_for_acks({3, 4})
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_burst_close(self, conn: _Conn, n: int) -> None:  # 3 chunks, `closed`, the close, at once
        from service.protocol import pb

        await conn.open(max_chunks_in_flight=3)
        await conn.recv_until("cue")
        for seq in (1, 2, 3):
            await conn.chunk(seq, "burst")
        await conn.send(closed=pb.SessionClosed(reason="idle"))
        await conn.ws.close(1000, "closed: idle")

    async def _s_bad_chunk(self, conn: _Conn, n: int) -> None:
        from service.gateway import to_json
        from service.protocol import pb

        await conn.open(max_chunks_in_flight=3)
        await conn.recv_until("cue")
        await conn.chunk(1, "bad", cut_pixels=1)  # one pixel byte short
        await conn.ws.send(to_json(pb.ServerMessage(chunk=pb.FrameChunk(  # shared memory: no pixels
            chunk_seq=2, event_id="bad", num_frames=1, width=4, height=2, frame_format=pb.FRAME_FORMAT_RGBA8,
            ring_slot=pb.RingSlot(slot=0, sequence=1, offset=64, length=32)))))
        await conn.chunk(3, "bad")
        await conn.wait_for_acks({1, 2, 3})
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_acks(self, conn: _Conn, n: int) -> None:  # 1 credit: chunk 2 only after chunk 1's ack
        from service.protocol import pb

        await conn.open(max_chunks_in_flight=1)
        assert (await conn.recv_until("cue"))["cue"]["eventId"] == "nope"
        await conn.send(error=pb.Error(code=3, message="prompt rejected", event_id="nope"))
        assert (await conn.recv_until("cue"))["cue"]["eventId"] == "gone"
        await conn.send(shot_finished=pb.ShotFinished(event_id="gone", cut=True))
        assert (await conn.recv_until("cue"))["cue"]["eventId"] == "shot"
        await conn.chunk(1, "shot")
        await conn.wait_for_acks({1})
        await conn.chunk(2, "shot")
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_director(self, conn: _Conn, n: int) -> None:
        """A director's cues one, two, bad, three (cut): one plays; two is queued and then dropped by the cut
        (the server says nothing about it); bad is refused; three plays."""
        from service.protocol import pb

        await conn.open()
        assert (await conn.recv_until("cue"))["cue"]["eventId"] == "one-1"
        await conn.send(cue_accepted=pb.CueAccepted(event_id="one-1"))
        await conn.send(shot_started=pb.ShotStarted(event_id="one-1", shot_index=0, num_chunks=1, num_frames=2))
        await conn.chunk(1, "one-1", frames=2)
        await conn.send(shot_finished=pb.ShotFinished(event_id="one-1", shot_index=0, chunks=1, frames=2))
        assert (await conn.recv_until("cue"))["cue"]["eventId"] == "two-2"
        await conn.send(cue_accepted=pb.CueAccepted(event_id="two-2", queue_position=0))
        assert (await conn.recv_until("cue"))["cue"]["eventId"] == "bad-3"
        await conn.send(error=pb.Error(code=3, message="prompt rejected", event_id="bad-3"))
        cut = (await conn.recv_until("cue"))["cue"]
        assert (cut["eventId"], cut["mode"]) == ("three-4", "CUE_MODE_CUT"), cut
        await conn.send(shot_started=pb.ShotStarted(event_id="three-4", shot_index=1, num_chunks=1, num_frames=3))
        await conn.chunk(2, "three-4", frames=3, shot_index=1)
        await conn.send(shot_finished=pb.ShotFinished(event_id="three-4", shot_index=1, chunks=1, frames=3))
        await conn.wait_for_acks({1, 2})
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_takes(self, conn: _Conn, n: int) -> None:  # a TAE session, a live take, then a full one
        from service.protocol import pb

        await conn.open(decoder=pb.DECODER_TAE)
        for quality in (pb.TAKE_QUALITY_LIVE, pb.TAKE_QUALITY_FULL):
            name = (await conn.recv_until("startTake"))["startTake"].get("name", "")
            full = f"/srv/takes/{name}.full.mp4" if quality == pb.TAKE_QUALITY_FULL else ""
            await conn.send(take_started=pb.TakeStarted(name=name, path=f"/srv/takes/{name}.mp4", quality=quality,
                                                        full_path=full))
            await conn.recv_until("stopTake")
            await conn.send(take_saved=pb.TakeSaved(name=name, path=f"/srv/takes/{name}.mp4", frames=9, bytes=1000,
                                                    duration_s=0.5625, full_path=full,
                                                    full_bytes=7_000_000_000 if full else 0))
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_free(self, conn: _Conn, n: int) -> None:
        await conn.open()
        await conn.ws.wait_closed()
        conn.closed_by_client()
        self._freed.set()

    async def _s_free_check(self, conn: _Conn, n: int) -> None:
        import asyncio

        await conn.open()
        await asyncio.wait_for(self._freed.wait(), 5.0)
        code = self.scenario("free")[0]["client_close_code"]
        await conn.end("closed", closed=f"the freed client closed with {code}")

    async def _s_story(self, conn: _Conn, n: int) -> None:
        """Issue 12: a session opened from a snapshot in 3 parts, restored; a snapshot sent in 3 parts, then a
        stray part; a cue log in 2 pages."""
        from service.protocol import pb

        await conn.open()
        for _ in range(2):
            await conn.recv_until("snapshotPart")
        await conn.send(restored=pb.SnapshotRestored(next_shot_index=2, story_frames=30))
        await conn.recv_until("snapshot")
        data = story_blob(5120)
        for i in range(3):
            await conn.send(snapshot=pb.SnapshotPart(data=data[i * 2048:(i + 1) * 2048], total_bytes=len(data), index=i,
                                                     count=3, next_shot_index=2))
        await conn.send(snapshot=pb.SnapshotPart(data=b"x", total_bytes=len(data), index=1, count=3))

        def entry(shot: int, event_id: str) -> pb.CueLogEntry:
            return pb.CueLogEntry(cue=pb.Cue(event_id=event_id, prompt=f"shot {event_id}", mode=pb.CUE_MODE_WAIT),
                                  shot_index=shot, chunks=2, finished=True)

        await conn.recv_until("cueLog")
        await conn.send(cue_log=pb.CueLog(global_caption="A lighthouse.", seed=5, first_shot_index=2,
                                          entries=[entry(2, "a"), entry(3, "b")], next_shot=4))
        await conn.recv_until("cueLog")
        await conn.send(cue_log=pb.CueLog(global_caption="A lighthouse.", seed=5, first_shot_index=2,
                                          entries=[entry(4, "c")]))
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_story_reopen(self, conn: _Conn, n: int) -> None:  # the first connection drops after the snapshot
        from service.protocol import pb

        await conn.open()
        for _ in range(2):
            await conn.recv_until("snapshotPart")
        if n == 1:
            conn.ws.transport.abort()
            return
        await conn.send(restored=pb.SnapshotRestored(next_shot_index=2, story_frames=30))
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_story_big(self, conn: _Conn, n: int) -> None:  # a 2 MiB snapshot: more than the socket's 1 MiB
        import base64

        from service.protocol import pb

        await conn.open()
        first = conn.record["received"][0]["open"]["snapshot"]
        total, got = int(first["totalBytes"]), len(base64.b64decode(first["data"]))
        while got < total:
            got += len(base64.b64decode((await conn.recv_until("snapshotPart"))["snapshotPart"]["data"]))
        await conn.send(restored=pb.SnapshotRestored(next_shot_index=1, story_frames=9))
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_resume_snap(self, conn: _Conn, n: int) -> None:
        """Issue 13 (tests/godot/test_resume.gd): session 1 plays shot a, sends the snapshot of its end, plays b
        until c's cut lands after 1 chunk, starts c, takes d, e (a cut) and f, then drops without a close frame
        before b's snapshot came; session 2 (from the snapshot) gets b and c again, and e and f once c started."""
        from service.protocol import pb

        await conn.open()
        if n == 1:
            await conn.recv_until("cue")  # a
            await conn.recv_until("cue")  # b
            await conn.send(shot_started=pb.ShotStarted(event_id="a", shot_index=0, num_chunks=1, num_frames=1))
            await conn.recv_until("snapshot")
            await conn.chunk(1, "a")
            await conn.send(shot_finished=pb.ShotFinished(event_id="a", shot_index=0, chunks=1, frames=1))
            await conn.send(snapshot=pb.SnapshotPart(data=story_blob(3000), total_bytes=3000, count=1,
                                                     next_shot_index=1))
            await conn.send(shot_started=pb.ShotStarted(event_id="b", shot_index=1, num_chunks=3, num_frames=3))
            await conn.recv_until("snapshot")
            await conn.recv_until("cue")  # c
            await conn.chunk(2, "b", shot_index=1)
            await conn.send(shot_finished=pb.ShotFinished(event_id="b", shot_index=1, chunks=1, frames=1, cut=True))
            await conn.send(shot_started=pb.ShotStarted(event_id="c", shot_index=2, num_chunks=2, num_frames=2))
            while (await conn.recv_until("cue"))["cue"]["eventId"] != "f":
                pass
            conn.ws.transport.abort()
            return
        await conn.send(restored=pb.SnapshotRestored(next_shot_index=1, story_frames=1))
        await conn.recv_until("pause")
        await conn.send(shot_started=pb.ShotStarted(event_id="b", shot_index=1, num_chunks=1, num_frames=1))
        await conn.recv_until("snapshot")
        await conn.send(shot_finished=pb.ShotFinished(event_id="b", shot_index=1, chunks=1, frames=1))
        await conn.send(shot_started=pb.ShotStarted(event_id="c", shot_index=2, num_chunks=2, num_frames=2))
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_resume_fresh(self, conn: _Conn, n: int) -> None:
        """Issue 13: session 1 starts a and drops before any snapshot; session 2 gets a and b again and is
        drained; session 3 gets them again, plays a chunk of a and is closed by the client."""
        from service.protocol import pb

        await conn.open()
        await conn.recv_until("cue")  # a
        await conn.recv_until("cue")  # b
        if n == 2:
            await conn.end("closed: server draining", closed="server draining")
            return
        await conn.send(shot_started=pb.ShotStarted(event_id="a", shot_index=0, num_chunks=2, num_frames=2))
        await conn.recv_until("snapshot")
        await conn.chunk(1, "a")
        if n == 1:
            conn.ws.transport.abort()
            return
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    async def _s_resume_twice(self, conn: _Conn, n: int) -> None:
        """Issue 13: session 1 ends shot a with its snapshot, starts b, takes c (a cut) and drops; session 2 (from
        the snapshot) takes b again and drops before b starts; session 3 takes b, and c once b started."""
        from service.protocol import pb

        await conn.open()
        if n == 1:
            await conn.recv_until("cue")  # a
            await conn.recv_until("cue")  # b
            await conn.send(shot_started=pb.ShotStarted(event_id="a", shot_index=0, num_chunks=1, num_frames=1))
            await conn.recv_until("snapshot")
            await conn.send(shot_finished=pb.ShotFinished(event_id="a", shot_index=0, chunks=1, frames=1))
            await conn.send(snapshot=pb.SnapshotPart(data=story_blob(500), total_bytes=500, count=1,
                                                     next_shot_index=1))
            await conn.send(shot_started=pb.ShotStarted(event_id="b", shot_index=1, num_chunks=2, num_frames=2))
            await conn.recv_until("snapshot")
            await conn.recv_until("cue")  # c
            conn.ws.transport.abort()
            return
        await conn.recv_until("cue")  # b
        if n == 2:
            conn.ws.transport.abort()
            return
        await conn.send(restored=pb.SnapshotRestored(next_shot_index=1, story_frames=1))
        await conn.recv_until("pause")
        await conn.send(shot_started=pb.ShotStarted(event_id="b", shot_index=1, num_chunks=2, num_frames=2))
        await conn.recv_until("close")
        await conn.end("closed: client", closed="client")

    def __enter__(self) -> _ScriptedGateway:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_client_against_a_scripted_gateway_in_godot():
    require_engine()
    with _ScriptedGateway() as gateway:
        run = run_godot(GODOT_TESTS / "test_scripted.gd", args={"url": f"ws://127.0.0.1:{gateway.port}/v1/direct"},
                        expected_errors=["Buffer payload full! Dropping data."])
    assert_passed(run)
    drop = gateway.scenario("drop")
    assert len(drop) == 2, drop
    for conn in drop:
        assert conn["path"] == "/v1/direct?s=drop&token=s3cr%20t%2F%26", conn["path"]
    first, second = (c["received"] for c in drop)
    assert first[0]["open"]["clientName"] == "godot/ShotStream Godot tests"
    assert first[0]["open"]["seed"] == "9" and first[0]["open"]["frameFormat"] == "FRAME_FORMAT_RGBA8"
    assert "decoder" not in first[0]["open"], "the default decoder (the server's) is left out of open"
    assert first[1] == {"cue": {"eventId": "a", "prompt": "first shot", "mode": "CUE_MODE_WAIT"}}
    assert second[0] == first[0], "the new session opens like the first"
    assert second[1:] == [{"cue": {"eventId": "b", "prompt": "second shot", "mode": "CUE_MODE_WAIT"}},
                          {"ack": {"chunkSeq": "1"}}, {"close": {}}]

    # After `closed` or a fatal error the client closes the WebSocket itself, before the gateway's 2 s are up.
    ended = [drop[1], *gateway.scenario("shutdown"), gateway.scenario("frame_shutdown")[1], *gateway.scenario("fatal"),
             *gateway.scenario("shm"), *(gateway.scenario(name)[0] for name in ("overflow", "bad_chunk", "acks"))]
    assert [(c["scenario"], c["client_closed_first"], c["client_close_code"]) for c in ended] == [
        (c["scenario"], True, 1000) for c in ended]
    assert [len(gateway.scenario(name)) for name in ("fatal", "frame_fatal", "silent", "shm")] == [1, 1, 1, 1], (
        "a fatal error, a refused transport and (with 0 retries) a silent server are not retried")
    assert gateway.scenario("silent")[0]["client_closed_first"] is True
    assert gateway.scenario("deaf")[0]["received"][-1] == {"close": {}}

    def acks(name: str) -> list[int]:
        return [int(m["ack"]["chunkSeq"]) for m in gateway.scenario(name)[0]["received"] if "ack" in m]

    assert sorted(acks("overflow")) == [1, 2, 3, 4], "the chunk dropped by the full buffer was acked"
    assert sorted(acks("bad_chunk")) == [1, 2, 3], "undecodable and unplayable chunks were acked"
    assert acks("acks") == [1], "chunk 1 was acked when the player was reconfigured (chunk 2 waits for its frame)"
    assert gateway.scenario("free")[0]["client_close_code"] == 1000
    assert acks("director") == [1, 2], "the director's shots were shown and acked"

    takes = gateway.scenario("takes")
    assert len(takes) == 1, takes
    received = takes[0]["received"]
    assert received[0]["open"]["decoder"] == "DECODER_TAE"
    assert [m for m in received if "startTake" in m or "stopTake" in m] == [
        {"startTake": {"name": "live"}}, {"stopTake": {}},
        {"startTake": {"name": "hd", "quality": "TAKE_QUALITY_FULL"}}, {"stopTake": {}}], (
        "a live take is sent as the proto default, a full one with its quality")


def test_story_resumes_after_its_server_goes_away_in_godot():
    """Issue 13: ShotStreamClient.resume_story against the scripted gateway (tests/godot/test_resume.gd): a lost
    connection reopens from the snapshot of the last shot boundary and cues again, in order, the finished shot
    after it (as the chunks it made), the shot in progress (from its start, WAIT) and, once that shot started,
    the queued cut and what follows; without a snapshot a new story (same caption and seed) gets the shot in
    progress and the queued cue again; `closed{server draining}` resumes too; the user's close does not."""
    require_engine()
    with _ScriptedGateway() as gateway:
        run = run_godot(GODOT_TESTS / "test_resume.gd", args={"url": f"ws://127.0.0.1:{gateway.port}/v1/direct"})
    assert_passed(run)

    def cue(event_id: str, prompt: str, num_chunks: int = 0, mode: str = "WAIT", **more) -> dict:
        fields = {"eventId": event_id, "prompt": prompt, **({"numChunks": num_chunks} if num_chunks else {}),
                  "mode": f"CUE_MODE_{mode}", **more}
        return {"cue": fields}

    snap = [c["received"] for c in gateway.scenario("resume_snap")]
    assert len(snap) == 2, snap
    first, second = snap
    assert "snapshot" not in first[0]["open"] and first[0]["open"]["seed"] == "11"
    assert first[1:] == [
        cue("a", "a: boats leave", 1), cue("b", "b: a gull dives", 3), {"snapshot": {"waitForBoundary": True}},
        {"ack": {"chunkSeq": "1"}}, {"snapshot": {"waitForBoundary": True}},
        cue("c", "c: the storm breaks", 2, "CUT", atChunk=1), {"ack": {"chunkSeq": "2"}},
        cue("d", "d: the crew shelters", 1), cue("e", "e: lightning", 1, "CUT", tags=["flash"], atChunk=1),
        cue("f", "f: calm again", 1)], first
    opened = second[0]["open"]
    assert opened["snapshot"] == {"data": base64.b64encode(story_blob(3000)).decode(), "totalBytes": "3000"}
    assert not {"globalCaption", "seed"} & set(opened), "the snapshot's story keeps its caption and seed"
    assert second[1:] == [
        cue("b", "b: a gull dives", 1),  # finished after 1 chunk (cut): replayed as a 1-chunk shot
        cue("c", "c: the storm breaks", 2),  # in progress: from its start, as WAIT
        {"pause": {}},  # (sent on `restored`: e and f were held until c started below)
        {"snapshot": {"waitForBoundary": True}},
        cue("e", "e: lightning", 1, "CUT", tags=["flash"], atChunk=1), cue("f", "f: calm again", 1),
        {"close": {}}], second

    fresh = [c["received"] for c in gateway.scenario("resume_fresh")]
    assert len(fresh) == 3, "a user's close does not resume"
    again = [fresh[0][0], cue("a", "a: the market opens", 2), cue("b", "b: a thief runs")]
    assert fresh[0][0]["open"]["globalCaption"] == "A harbour at dawn." and "snapshot" not in fresh[0][0]["open"]
    assert fresh[0] == [*again, {"snapshot": {"waitForBoundary": True}}], fresh[0]
    assert fresh[1][:3] == again, "a new story with the same caption and seed, a and b again"
    assert fresh[2] == [*again, {"snapshot": {"waitForBoundary": True}}, {"ack": {"chunkSeq": "1"}},
                        {"close": {}}], fresh[2]

    twice = [c["received"] for c in gateway.scenario("resume_twice")]
    assert len(twice) == 3, twice
    open_again = {"open": {**twice[0][0]["open"], "snapshot": {"data": base64.b64encode(story_blob(500)).decode(),
                                                               "totalBytes": "500"}}}
    for key in ("globalCaption", "seed"):
        open_again["open"].pop(key, None)
    assert twice[0][1:] == [cue("a", "a: a bridge", 1), cue("b", "b: a cart crosses", 2),
                            {"snapshot": {"waitForBoundary": True}}, {"snapshot": {"waitForBoundary": True}},
                            cue("c", "c: the bridge falls", 1, "CUT", atChunk=1)], twice[0]
    assert twice[1] == [open_again, cue("b", "b: a cart crosses", 2)], twice[1]
    assert twice[2] == [open_again, cue("b", "b: a cart crosses", 2), {"pause": {}},
                        cue("c", "c: the bridge falls", 1, "CUT", atChunk=1), {"snapshot": {"waitForBoundary": True}},
                        {"close": {}}], twice[2]
