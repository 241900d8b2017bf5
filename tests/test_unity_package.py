"""The Unity package unity_plugin/com.shotstream.bridge as a whole: the UPM manifest and assembly
definitions parse with the expected names; Runtime/Core compiles on its own without UnityEngine (its asmdef
says noEngineReferences) and Runtime/Unity against it and tests/unity/stubs/UnityEngineStub.cs, a stub of only
the UnityEngine APIs the package uses (so a call to a missing API fails here), C# 7.2, warnings as errors;
tests/unity/UnityLayerTests.cs and EditorLayerTests.cs run under mono, the client also against scripted fake
gateways (tests/unity/fake_gateway.py) that reproduce what a real server or network can do to it; every
shipped asset has its .meta; and the sample scene (Samples~/EventShots/EventShots.unity) and prompt map asset
are checked as Unity YAML against the C# classes they use. The tests that compile or run C# skip only when
mcs/mono are missing (apt-get install -y --no-install-recommends mono-mcs); the others always run."""
import contextlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "unity_plugin" / "com.shotstream.bridge"
TESTS = ROOT / "tests" / "unity"
MCS = ["mcs", "-langversion:7.2", "-warnaserror+"]
sys.path.insert(0, str(TESTS))  # fake_gateway
from line_process import LineProcess  # noqa: E402
from system_tools import require_mono  # noqa: E402



def _mcs(*args) -> None:
    proc = subprocess.run([*MCS, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    require_mono()
    out = tmp_path_factory.mktemp("unitypkg")
    _mcs("-target:library", f"-out:{out / 'UnityEngine.dll'}", TESTS / "stubs" / "UnityEngineStub.cs")
    # ShotStream.Core: no UnityEngine reference at all, as its asmdef promises (noEngineReferences)
    _mcs("-unsafe", "-target:library", f"-out:{out / 'ShotStream.Core.dll'}", *sorted((PKG / "Runtime" / "Core").glob("*.cs")))
    _mcs("-target:library", f"-r:{out / 'UnityEngine.dll'}", f"-r:{out / 'ShotStream.Core.dll'}", f"-out:{out / 'ShotStream.Runtime.dll'}",
         *sorted((PKG / "Runtime" / "Unity").glob("*.cs")))
    _mcs("-target:library", f"-r:{out / 'UnityEngine.dll'}", f"-out:{out / 'UnityEditor.dll'}", TESTS / "stubs" / "UnityEditorStub.cs")
    _mcs(*_refs(out, "UnityEngine", "ShotStream.Core", "ShotStream.Runtime"), f"-out:{out / 'UnityLayerTests.exe'}", TESTS / "UnityLayerTests.cs",
         TESTS / "ProcessExit.cs")
    return out


def _refs(built: Path, *names: str) -> list[str]:
    return [f"-r:{built / (name + '.dll')}" for name in names]


def test_package_manifest_and_asmdef():
    manifest = json.loads((PKG / "package.json").read_text())
    assert manifest["name"] == "com.shotstream.bridge"
    assert manifest["version"] == "0.1.0"
    assert manifest["unity"] == "2021.3"
    assert manifest["displayName"] and manifest["description"]
    # only Unity's own uGUI (RawImage), which ships with the editor: nothing third-party to install
    assert manifest.get("dependencies") == {"com.unity.ugui": "1.0.0"}
    # an SPDX id, the repository's own license (pyproject.toml)
    assert manifest["license"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"] == "Apache-2.0"
    # the engine-agnostic core is its own assembly: nothing in it may reach UnityEngine
    core = json.loads((PKG / "Runtime" / "Core" / "ShotStream.Core.asmdef").read_text())
    assert (core["name"], core["rootNamespace"], core["references"]) == ("ShotStream.Core", "ShotStream.Core", [])
    assert core["noEngineReferences"] is True and core["allowUnsafeCode"] is True  # RingReader maps the ring with pointers
    runtime = json.loads((PKG / "Runtime" / "ShotStream.Runtime.asmdef").read_text())
    assert runtime["name"] == "ShotStream.Runtime" and runtime["references"] == ["ShotStream.Core", "UnityEngine.UI"]
    assert runtime["allowUnsafeCode"] is False and runtime["noEngineReferences"] is False
    # the Unity layer's internals are open to the mono test harnesses and the benchmark only, by their real assembly names
    assert re.findall(r'InternalsVisibleTo\("([^"]+)"\)', (PKG / "Runtime" / "Unity" / "AssemblyInfo.cs").read_text()) == [
        "UnityLayerTests", "ScreenBench", "TimelineTests", "SampleTests"]
    changelog = (PKG / "CHANGELOG.md").read_text()
    assert re.search(r"^## \[(Unreleased|\d+\.\d+\.\d+)\]( - \d{4}-\d{2}-\d{2})?$", changelog, re.M), "Keep a Changelog headings"


def test_package_license_author_and_links():
    """Issue 11, defect 5: the Apache-2.0 text at the repository root (what package.json and pyproject.toml say), the
    package's LICENSE.md (the same text) and the Godot addon's LICENSE; package.json names an author and links its
    documentation, changelog and licence (one https base, each ending at the file in this package); the CHANGELOG has
    an entry for package.json's version."""
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License to your work." in text
    assert len(re.findall(r"^\s+\d+\. [A-Z]", text, re.M)) == 9, "the nine sections"
    assert text.strip() in (PKG / "LICENSE.md").read_text(), "LICENSE.md holds the full text"
    assert (ROOT / "godot_plugin" / "addons" / "shotstream" / "LICENSE").read_text() == text
    manifest = json.loads((PKG / "package.json").read_text())
    assert manifest["author"]["name"].strip()
    urls = {key: manifest[key] for key in ("documentationUrl", "changelogUrl", "licensesUrl")}
    bases = set()
    for key, rel in (("documentationUrl", "Documentation~/index.md"), ("changelogUrl", "CHANGELOG.md"), ("licensesUrl", "LICENSE.md")):
        assert urls[key].startswith("https://") and urls[key].endswith("/unity_plugin/com.shotstream.bridge/" + rel), urls[key]
        assert (PKG / rel).is_file()
        bases.add(urls[key][: -len(rel)])
    assert len(bases) == 1, bases
    assert re.search(rf"^## \[{re.escape(manifest['version'])}\] - \d{{4}}-\d{{2}}-\d{{2}}$", (PKG / "CHANGELOG.md").read_text(), re.M)


def test_runtime_compiles_against_unity_stub(built):
    assert (built / "ShotStream.Core.dll").is_file() and (built / "ShotStream.Runtime.dll").is_file()


def test_unity_layer(built):
    exe = built / "UnityLayerTests.exe"
    proc = subprocess.run(["mono", str(exe)], capture_output=True, text=True, timeout=120, cwd=built)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert re.fullmatch(r"\d+ passed, 0 failed", last), proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("transport", ["inline", "shm"])
def test_unity_layer_live_session(built, transport):
    """ShotStreamClient + ShotStreamScreen against the real service: the session opens, the cue queued
    before connecting is sent, both chunks arrive (with one credit, so the first was acked after the
    screen presented it) and every frame is uploaded; inline frames and the same-host shared-memory ring."""
    from engine_core import TINY, ShotStreamEngine
    from service.background import BackgroundServer
    from service.settings import ServerSettings

    exe = built / "UnityLayerTests.exe"
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1)
    with BackgroundServer(engine, settings, grace=2.0) as server:
        proc = subprocess.run(["mono", str(exe), "live", server.gateway_url, transport], capture_output=True, text=True, timeout=300, cwd=built)
    assert proc.returncode == 0 and "LIVE OK" in proc.stdout, proc.stdout + proc.stderr


def test_unity_layer_live_snapshot_continues_the_story(built, tmp_path):
    """Issue 12 through the Unity layer against the real service (tiny engine; the server's snapshot parts cut to 1 KiB and
    the client's upload parts to 1 KiB, so both ways take several parts): client A plays a 1-chunk shot, asks for the
    snapshot mid-shot (taken at the shot's end) and saves it with ShotStreamSnapshotFile under a temporary
    persistentDataPath, then plays a 2-chunk shot; client B loads the file, continues it and cues the same shot: every frame
    B puts on screen equals A's, in order, and the story's frame count carries on. A new story cueing that shot (client C)
    differs, so the match is the restored story's doing. The saved file is the snapshot (engine_core's SHOTSNAP format);
    both cue logs are read back (B's starts at shot 1)."""
    from engine_core import TINY, ShotStreamEngine
    from service.background import BackgroundServer
    from service.settings import ServerSettings

    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1, snapshot_part_bytes=1024)
    persistent = tmp_path / "persistent"
    with BackgroundServer(engine, settings, grace=2.0) as server:
        proc = subprocess.run(["mono", str(built / "UnityLayerTests.exe"), "snapshot", server.gateway_url, str(persistent)],
                              capture_output=True, text=True, timeout=400, cwd=built)
    out = proc.stdout
    assert proc.returncode == 0 and out.splitlines()[-1] == "SNAP OK", out + proc.stderr
    saved = (persistent / "story.snap").read_bytes()
    assert saved[:8] == b"SHOTSNAP" and len(saved) > 4 * 1024, len(saved)
    assert sorted(p.name for p in persistent.iterdir()) == ["story.snap"], "no temporary file left"
    assert f"snapshot {len(saved)} bytes next 1 file {persistent / 'story.snap'}" in out, out
    assert "SNAP a log first 0 The keeper climbs the stairs./0/1/True,A wave hits the rocks./1/2/True" in out, out
    assert "SNAP b log first 1 A wave hits the rocks./1/2/True" in out, out
    assert "SNAP tail frames a 21 b 21 c 21 story frame a 9 b 9" in out, out


def _timeline(built: Path) -> Path:
    """built/timeline: Unity.Timeline.dll (stubs/TimelineStub.cs) and ShotStream.Timeline.dll (Runtime/Timeline) built against it."""
    out = built / "timeline"
    if not (out / "ShotStream.Timeline.dll").exists():
        out.mkdir(exist_ok=True)
        _mcs("-target:library", *_refs(built, "UnityEngine"), f"-out:{out / 'Unity.Timeline.dll'}", TESTS / "stubs" / "TimelineStub.cs")
        _mcs("-target:library", *_refs(built, "UnityEngine", "ShotStream.Core", "ShotStream.Runtime"), f"-r:{out / 'Unity.Timeline.dll'}",
             f"-out:{out / 'ShotStream.Timeline.dll'}", *sorted((PKG / "Runtime" / "Timeline").glob("*.cs")))
    return out


def test_editor_window_and_sample_compile(built):
    """Editor/*.cs (Editor-only asmdef referencing the core and the runtime) compiles against the UnityEditor
    stub (tests/unity/stubs/UnityEditorStub.cs, only the editor APIs used) and the UnityEngine stub; the
    Samples~/EventShots script compiles against the runtime, with and without the Timeline package (its own asmdef
    defines SHOTSTREAM_TIMELINE when com.unity.timeline 1.6+ is there, as Runtime/Timeline's does) and with the Input
    System; package.json lists the sample."""
    asmdef = json.loads((PKG / "Editor" / "ShotStream.Editor.asmdef").read_text())
    assert asmdef["name"] == "ShotStream.Editor"
    assert asmdef["includePlatforms"] == ["Editor"] and asmdef["references"] == ["ShotStream.Core", "ShotStream.Runtime"]
    sample_asmdef = json.loads((PKG / "Samples~" / "EventShots" / "ShotStream.Samples.EventShots.asmdef").read_text())
    assert sample_asmdef["name"] == "ShotStream.Samples.EventShots" and sample_asmdef["defineConstraints"] == []
    # optional packages by name: Unity leaves out a reference to an assembly that is not in the project
    assert sample_asmdef["references"] == ["ShotStream.Core", "ShotStream.Runtime", "ShotStream.Timeline", "Unity.Timeline", "Unity.InputSystem"]
    timeline_asmdef = json.loads((PKG / "Runtime" / "Timeline" / "ShotStream.Timeline.asmdef").read_text())
    assert sample_asmdef["versionDefines"] == timeline_asmdef["versionDefines"]
    assert sample_asmdef["versionDefines"][0]["define"] in (PKG / "Samples~" / "EventShots" / "EventShotsSample.cs").read_text()
    samples = json.loads((PKG / "package.json").read_text())["samples"]
    assert [s["path"] for s in samples] == ["Samples~/EventShots"] and all(s["displayName"] and s["description"] for s in samples)
    assert (PKG / "Samples~" / "EventShots" / "README.md").is_file()
    assert (PKG / "Documentation~" / "index.md").is_file()
    _mcs("-target:library", *_refs(built, "UnityEngine", "UnityEditor", "ShotStream.Core", "ShotStream.Runtime"),
         f"-out:{built / 'ShotStream.Editor.dll'}", *sorted((PKG / "Editor").glob("*.cs")))
    _mcs("-target:library", *_refs(built, "UnityEngine", "ShotStream.Core", "ShotStream.Runtime"),
         f"-out:{built / 'EventShotsSample.dll'}", PKG / "Samples~" / "EventShots" / "EventShotsSample.cs")
    _mcs("-target:library", *_refs(built, "UnityEngine", "ShotStream.Core", "ShotStream.Runtime"), f"-out:{built / 'Unity.InputSystem.dll'}",
         TESTS / "stubs" / "InputSystemStub.cs")
    _mcs("-target:library", *_refs(built, "UnityEngine", "ShotStream.Core", "ShotStream.Runtime", "Unity.InputSystem"), "-define:ENABLE_INPUT_SYSTEM",
         f"-out:{built / 'EventShotsSample.InputSystem.dll'}", PKG / "Samples~" / "EventShots" / "EventShotsSample.cs")
    timeline = _timeline(built)
    _mcs("-target:library", *_refs(built, "UnityEngine", "ShotStream.Core", "ShotStream.Runtime"), *_refs(timeline, "Unity.Timeline", "ShotStream.Timeline"),
         "-define:SHOTSTREAM_TIMELINE", f"-out:{built / 'EventShotsSample.Timeline.dll'}", PKG / "Samples~" / "EventShots" / "EventShotsSample.cs")


@pytest.mark.parametrize("build", ["legacy", "input-system", "legacy no-timeline"])
def test_sample_reads_keys_through_either_input_handling(built, build):
    """Issue 11, defect 7: the sample reads its keys through the Input System package when it is active
    (ENABLE_INPUT_SYSTEM, built here against stubs/InputSystemStub.cs, with the legacy Input throwing as Unity's does
    then) and through the legacy Input Manager otherwise; either way keys 1/2/3 fire its three game events, and C plays
    its Timeline cutscene (built against stubs/TimelineStub.cs and Runtime/Timeline) against a simulated service that
    sends the first shot's second chunk late: each gameplay signal comes once the shot before it has ended on screen
    (the director held at the clip's end meanwhile), the dragon cuts in, and C again plays it again. Without the Timeline
    package (no SHOTSTREAM_TIMELINE) the sample still builds and C only says what it needs."""
    out = built / f"sample-{build.replace(' ', '-')}"
    out.mkdir(exist_ok=True)
    extra = []
    if build == "input-system":
        _mcs("-target:library", f"-out:{out / 'Unity.InputSystem.dll'}", TESTS / "stubs" / "InputSystemStub.cs")
        extra = ["-define:ENABLE_INPUT_SYSTEM", f"-r:{out / 'Unity.InputSystem.dll'}"]
    dlls = [built / f"{dll}.dll" for dll in ("UnityEngine", "ShotStream.Core", "ShotStream.Runtime")]
    if not build.endswith("no-timeline"):
        timeline = _timeline(built)
        dlls += [timeline / "Unity.Timeline.dll", timeline / "ShotStream.Timeline.dll"]
        extra += ["-define:SHOTSTREAM_TIMELINE", *_refs(timeline, "Unity.Timeline", "ShotStream.Timeline")]
    for dll in dlls:
        (out / dll.name).write_bytes(dll.read_bytes())
    _mcs(*_refs(built, "UnityEngine", "ShotStream.Core", "ShotStream.Runtime"), *extra, f"-out:{out / 'SampleTests.exe'}",
         TESTS / "SampleTests.cs", PKG / "Samples~" / "EventShots" / "EventShotsSample.cs")
    proc = subprocess.run(["mono", str(out / "SampleTests.exe")], capture_output=True, text=True, timeout=120, cwd=out)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == f"SAMPLE OK {build}", proc.stdout + proc.stderr


def test_sample_cutscene_live(built):
    """The sample's Timeline cutscene (key C) against the real service (tiny engine, loopback), with the sample's prompt
    map: a ShotStream track of enter_hall, draw_sword and dragon_attacks (which cuts), played by a PlayableDirector bound
    to the screen, with gameplay signals between the clips; the shots' frames on screen in that order, each shot's frames
    once and in order, and each gameplay step only once the shot before it ended on screen (and before the next ended)."""
    from engine_core import TINY, ShotStreamEngine
    from service.background import BackgroundServer
    from service.settings import ServerSettings

    test_sample_reads_keys_through_either_input_handling(built, "legacy")  # builds sample-legacy/SampleTests.exe
    out = built / "sample-legacy"
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1)
    with BackgroundServer(engine, settings, grace=2.0) as server:
        proc = subprocess.run(["mono", str(out / "SampleTests.exe"), "live", server.gateway_url], capture_output=True, text=True, timeout=300, cwd=out)
    assert proc.returncode == 0 and "LIVE SAMPLE OK" in proc.stdout, proc.stdout + proc.stderr


def test_timeline_track(built):
    """Cutscene authoring (issue 11): Runtime/Timeline (its own asmdef, compiled only when com.unity.timeline is in the
    project) compiles against stubs of exactly the Timeline / Playables API it uses (stubs/TimelineStub.cs,
    UnityEngineStub.cs's UnityEngine.Playables), and tests/unity/TimelineTests.cs drives the track as Timeline does
    against a simulated service: clips cued a measured lead ahead of their start, the director held while a clip's
    frames are late (and released after Max Hold Seconds), every frame shown once in order across a cut, nothing cued
    while scrubbing in edit mode, jumps back re-cue and jumps past skip."""
    asmdef = json.loads((PKG / "Runtime" / "Timeline" / "ShotStream.Timeline.asmdef").read_text())
    assert asmdef["name"] == "ShotStream.Timeline" and asmdef["references"] == ["ShotStream.Core", "ShotStream.Runtime", "Unity.Timeline"]
    assert asmdef["defineConstraints"] == ["SHOTSTREAM_TIMELINE"]
    assert asmdef["versionDefines"] == [{"name": "com.unity.timeline", "expression": "1.6.0", "define": "SHOTSTREAM_TIMELINE"}]
    out = _timeline(built)
    _mcs(*_refs(built, "UnityEngine", "ShotStream.Core", "ShotStream.Runtime"), f"-r:{out / 'Unity.Timeline.dll'}",
         f"-r:{out / 'ShotStream.Timeline.dll'}", f"-out:{out / 'TimelineTests.exe'}", TESTS / "TimelineTests.cs")
    for dll in ("UnityEngine", "ShotStream.Core", "ShotStream.Runtime"):
        (out / f"{dll}.dll").write_bytes((built / f"{dll}.dll").read_bytes())
    proc = subprocess.run(["mono", str(out / "TimelineTests.exe")], capture_output=True, text=True, timeout=120, cwd=out)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert re.fullmatch(r"[1-9]\d* passed, 0 failed", last) and proc.returncode == 0, proc.stdout + proc.stderr


def test_timeline_cutscene_live(built):
    """The Timeline track against the real service (tiny engine, loopback): three prompt clips, the second 7 chunks
    long (about 5 s) and the third a cut that ends it early, played with real latencies; the director is held while frames are late; every shot plays
    to its end on screen, in clip order, each one's frames shown once and in order, and the second shot is cut exactly after the chunks
    that cover its clip (the cut cue carries Cue.at_chunk and goes out as soon as the second shot starts, so where it lands does not
    depend on how fast the service is)."""
    from engine_core import TINY, ShotStreamEngine
    from service.background import BackgroundServer
    from service.settings import ServerSettings

    test_timeline_track(built)  # builds timeline/TimelineTests.exe
    out = built / "timeline"
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1)
    with BackgroundServer(engine, settings, grace=2.0) as server:
        proc = subprocess.run(["mono", str(out / "TimelineTests.exe"), "live", server.gateway_url], capture_output=True, text=True, timeout=300, cwd=out)
    assert proc.returncode == 0 and "LIVE CUTSCENE OK" in proc.stdout, proc.stdout + proc.stderr


def _editor_tests(built: Path) -> Path:
    """tests/unity/EditorLayerTests.cs compiled with the editor sources (so it reaches the window's internals)."""
    exe = built / "EditorLayerTests.exe"
    if not exe.exists():
        _mcs(*_refs(built, "UnityEngine", "UnityEditor", "ShotStream.Core", "ShotStream.Runtime"), f"-out:{exe}",
             TESTS / "EditorLayerTests.cs", TESTS / "ProcessExit.cs",
             *sorted((PKG / "Editor").glob("*.cs")))
    return exe


def test_editor_layer(built, tmp_path):
    """The editor preview window under mono, in edit mode (where Unity refuses Destroy): it holds no frames
    unless "Record PNGs" is on, then writes each frame to disk as it arrives, flipped into Unity's row order for
    EncodeArrayToPNG; closing it releases the preview texture with DestroyImmediate."""
    proc = subprocess.run(["mono", str(_editor_tests(built)), "unit", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=built)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert re.fullmatch(r"\d+ passed, 0 failed", last), proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------------------
# The client against scripted fake gateways (tests/unity/fake_gateway.py): what a real server or network can do
# to it but the real service will not do on demand.

class _Mono(LineProcess):
    """The C# side of a scenario: its stdout lines as they come, its stdin for the cues a scenario waits on."""

    def finish(self) -> int:
        self.expect("DONE")
        return self.read_to_end()

    def kind(self, prefix: str) -> list[str]:
        return [line[len(prefix) + 1:] for line in self.lines if line.startswith(prefix + " ")]


def _fake(built: Path, scenario: str, script, *, refuse=None, drive=None):
    """Runs `scenario` of UnityLayerTests.exe against a FakeGateway playing `script`; `drive(mono, gateway)` does
    the interactive steps. Returns the gateway (connections, requests) and the C# side's lines."""
    from fake_gateway import FakeGateway

    with FakeGateway(script, refuse=refuse) as gateway:
        mono = _Mono(["mono", str(built / "UnityLayerTests.exe"), "fake", scenario, gateway.url], built)
        try:
            if drive is not None:
                drive(mono, gateway)
            rc = mono.finish()
        finally:
            mono.kill()
    assert rc == 0 and not gateway.errors, (mono.lines[-40:], gateway.errors)
    return gateway, mono


def test_editor_window_lets_go_before_a_domain_reload(built):
    """The preview window, connected, gets AssemblyReloadEvents.beforeAssemblyReload: its receive loop ends at once
    (no 10 s grace, no socket left in the old domain), the gateway sees the connection go, and the preview texture
    is destroyed."""
    async def script(gw, conn):
        await conn.recv_kind("open")
        await conn.opened()
        await conn.closed.wait()
        gw.notes.put("gone")

    from fake_gateway import FakeGateway

    with FakeGateway(script) as gateway:
        proc = subprocess.run(["mono", str(_editor_tests(built)), "reload", gateway.url], capture_output=True, text=True, timeout=120, cwd=built)
        assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "DONE", proc.stdout + proc.stderr
        assert gateway.notes.get(timeout=30) == "gone"
    assert "STATUS Connected: session fake-1 (4x4 @ 16 fps)" in proc.stdout, proc.stdout
    assert "RELOAD loop ended True, texture destroyed True, preview released" in proc.stdout, proc.stdout
    assert not gateway.errors and len(gateway.connections) == 1


def test_client_falls_back_to_inline_when_the_ring_cannot_be_mapped(built):
    """The server answers a shared-memory open with a ring file this process cannot open (a server in WSL or
    Docker, another user, another host): one error that says shared memory needs the same host and user, that
    session is closed, and one new session asks for inline frames, which play. Not a new session every 250 ms."""
    from service.protocol import pb

    async def script(gw, conn):
        open_ = await conn.recv_kind("open")
        if conn.index == 1:
            assert open_["transport"] == "TRANSPORT_SHARED_MEMORY"
            await conn.opened(pb.TRANSPORT_SHARED_MEMORY, pb.RingLayout(
                path="/nonexistent/shotstream-fake.ring", layout_version=1, slot_count=3, slot_bytes=4096, header_bytes=128,
                slot_header_bytes=64))
        else:
            assert open_["transport"] == "TRANSPORT_INLINE"
            await conn.opened()
            await conn.chunk(1)

    gateway, mono = _fake(built, "ring-fallback", script)
    assert len(gateway.connections) == 2
    assert list(map(list, gateway.connections[0].received)) == [["open"], ["close"]], "the shared-memory session is ended"
    errors = mono.kind("ERROR")
    assert len(errors) == 1 and "same host, run by the same user; using Inline instead" in errors[0], errors
    assert "/nonexistent/shotstream-fake.ring" in errors[0]
    assert mono.kind("OPENED") == ["fake-2 TRANSPORT_INLINE"]


def test_client_gives_up_on_a_server_that_drops_every_session(built):
    """Every session is dropped right after it opens (close 1011). Failures are counted across reconnects and
    the count starts over only once a chunk arrives: with MaxRetries 1 the three sessions that deliver a chunk
    are each retried; the fourth delivers none, its drop is the second failure in a row, and the client gives up.
    Each session's end is raised as sessionClosed."""
    async def script(gw, conn):
        await conn.recv_kind("open")
        await conn.opened()
        if conn.index <= 3:
            await conn.chunk(1)
        await conn.ws.close(1011, "boom")

    gateway, mono = _fake(built, "drop-storm", script)
    assert len(gateway.connections) == 4, len(gateway.connections)
    assert len(mono.kind("OPENED")) == 4 and len(mono.kind("CLOSED")) == 4
    assert all(r.startswith("connection lost: the server closed the connection: 1011 boom") for r in mono.kind("CLOSED")), mono.lines
    assert mono.kind("ERROR")[-1] == "ShotStreamClient: gave up after 2 failures in a row: the server closed the connection: 1011 boom"
    assert mono.kind("END") == ["running False opened 4 closed 4"]


def test_client_reports_a_refused_handshake_once(built):
    """A wrong token: the gateway answers the handshake with HTTP 401. The client asks once why (a plain GET,
    since mono's ClientWebSocket hides the status), reports the status and the server's explanation, and does not
    retry: a wrong token stays wrong."""
    async def script(gw, conn):
        raise AssertionError("no WebSocket may open")

    gateway, mono = _fake(built, "refused", script,
                          refuse=(401, "401 Unauthorized: the token is wrong. This server requires its bearer token.\n"))
    assert [r["upgrade"] for r in gateway.requests] == [True, False], gateway.requests  # one handshake, one probe
    assert mono.kind("ERROR") == [f"ShotStreamClient: the server at {gateway.url} refused the WebSocket handshake with HTTP 401: "
                                  "set the client's Token to the server's token (shotstream serve --token). The server says: "
                                  "401 Unauthorized: the token is wrong. This server requires its bearer token."]
    assert mono.kind("END") == ["running False opened 0 closed 0"]


def test_client_times_out_a_peer_that_never_answers_open(built):
    """A peer accepts the WebSocket and never answers open: each attempt ends after the open timeout (1.5 s
    here: connect + open, so a shorter one can expire before a loaded machine even connects), is retried per
    the policy (MaxRetries 1), and the client gives up saying why."""
    async def script(gw, conn):
        await conn.recv_kind("open")

    gateway, mono = _fake(built, "open-timeout", script)
    assert len(gateway.connections) == 2
    errors = mono.kind("ERROR")
    assert len(errors) == 2 and errors[0].endswith("(retrying)"), errors
    assert errors[1] == (f"ShotStreamClient: gave up after 2 failures in a row: no answer from {gateway.url} within 1.5 s "
                         "(connect + open): is it a ShotStream gateway, and reachable?")


def test_client_reconnects_after_a_server_restart_only(built):
    """closed "server shutdown" is a restart: sessionClosed, then a new session. closed "client" ends the
    session for good: sessionClosed and no reconnect."""
    from service.protocol import pb

    async def script(gw, conn):
        await conn.recv_kind("open")
        await conn.opened()
        reason = "server shutdown" if conn.index == 1 else "client"
        await conn.send(pb.ServerMessage(closed=pb.SessionClosed(reason=reason)))
        await conn.ws.close()

    gateway, mono = _fake(built, "server-shutdown", script)
    assert len(gateway.connections) == 2
    events = [line for line in mono.lines if line.split(" ")[0] in ("OPENED", "CLOSED", "ERROR")]
    assert events == ["OPENED fake-1 TRANSPORT_INLINE", "CLOSED server shutdown", "ERROR ShotStreamClient: the server shut down (retrying)",
                      "OPENED fake-2 TRANSPORT_INLINE", "CLOSED client"], mono.lines


def test_client_refuses_a_message_larger_than_the_session_allows(built):
    """A 2 MiB message in a session of 4x4 frames (chunks of at most 2 x 4 x 4 x 4 bytes): the receive buffer
    stops growing at its limit with a clear error, and the client does not retry."""
    async def script(gw, conn):
        await conn.recv_kind("open")
        await conn.opened()
        await conn.ws.send(b"SSC1" + bytes(2 << 20))

    gateway, mono = _fake(built, "oversized", script)
    assert len(gateway.connections) == 1
    errors = mono.kind("ERROR")
    assert len(errors) == 1 and "a message from the server is larger than 1048576 bytes" in errors[0], errors
    assert mono.kind("CLOSED")[0].startswith("error: a message from the server is larger than")


def test_client_puts_snapshot_parts_together_and_pages_the_cue_log(built):
    """Issue 12 on the wire, against a scripted gateway: the snapshot request queued before connecting goes out after open
    (wait_for_boundary false: the proto default, left out); a 1.5 MiB snapshot in two parts, the first a 1 MiB part (a 1.4 MB
    JSON message, larger than the 1 MiB a session of 4x4 frames otherwise allows, which a connection that asked for a snapshot
    accepts) arrives whole, byte for byte; a snapshot announced larger than MaxSnapshotBytes (3 MiB) and one with a part
    missing are dropped with an error each, the session going on; a small one after them arrives. The cue log comes in two
    pages: the client asks for the second itself and raises the merged log once."""
    import zlib

    big = bytes((i * 13 + 5) % 256 for i in range(3 << 19))  # 1.5 MiB
    small = b"\x00\xff\x01\x02\x03"

    async def script(gw, conn):
        await conn.recv_kind("open")
        await conn.opened()
        asked = [await conn.recv(), await conn.recv()]
        gw.notes.put(asked)
        part = 1 << 20
        for i, data in enumerate((big[:part], big[part:])):
            await conn.send(pb.ServerMessage(snapshot=pb.SnapshotPart(data=data, total_bytes=len(big), index=i, count=2,
                                                                      next_shot_index=3)))
        await conn.send(pb.ServerMessage(snapshot=pb.SnapshotPart(data=b"x" * 10, total_bytes=4 << 20, count=1)))
        await conn.send(pb.ServerMessage(snapshot=pb.SnapshotPart(data=b"y" * 10, total_bytes=30, count=3)))
        await conn.send(pb.ServerMessage(snapshot=pb.SnapshotPart(data=b"y" * 10, total_bytes=30, index=2, count=3)))
        await conn.send(pb.ServerMessage(snapshot=pb.SnapshotPart(data=small, total_bytes=len(small), count=1,
                                                                  next_shot_index=7)))
        entry = lambda shot, prompt, chunks, **cue: pb.CueLogEntry(cue=pb.Cue(prompt=prompt, **cue), shot_index=shot,  # noqa: E731
                                                                  chunks=chunks, finished=True)
        await conn.send(pb.ServerMessage(cue_log=pb.CueLog(global_caption="Sea.", next_shot=2, entries=[
            entry(0, "a", 7), entry(1, "b", 1, mode=pb.CUE_MODE_WAIT)])))
        gw.notes.put(await conn.recv_kind("cueLog"))
        await conn.send(pb.ServerMessage(cue_log=pb.CueLog(global_caption="Sea.", entries=[
            entry(2, "c", 2, mode=pb.CUE_MODE_CUT, at_chunk=1)])))

    from service.protocol import pb

    gateway, mono = _fake(built, "snapshot-parts", script)
    assert gateway.notes.get(timeout=5) == [{"snapshot": {}}, {"cueLog": {}}]
    assert gateway.notes.get(timeout=5) == {"fromShot": 2}
    assert mono.kind("SNAPSHOT") == [f"{len(big)} {zlib.crc32(big)} next 3", f"{len(small)} {zlib.crc32(small)} next 7"], mono.lines
    errors = mono.kind("ERROR")
    assert len(errors) == 2, mono.lines
    assert "snapshot dropped: the snapshot is 4194304 bytes, more than this client takes (3145728 bytes" in errors[0], errors
    assert "snapshot dropped: snapshot part 2 came where part 1 was due" in errors[1], errors
    assert mono.kind("CUELOG") == ["first 0 next 0 0=a/7/CUE_MODE_UNSPECIFIED@0,1=b/1/CUE_MODE_WAIT@0,2=c/2/CUE_MODE_CUT@1"], mono.lines
    assert not mono.kind("CLOSED"), "the session went on"


def test_client_fork_opens_with_the_fork_once(built):
    """Fork(id, waitForBoundary: false) opens a session whose open names the other session (no wait, the proto default) and asks
    for no decoder and no seed (the forked story keeps its own, even with the client's Decoder set to Tae and a Seed set);
    restored is raised; a later plain Connect starts a new story (no fork in its open, the client's decoder and seed)."""
    from service.protocol import pb

    opens = []

    async def script(gw, conn):
        opens.append(await conn.recv_kind("open"))
        await conn.opened()
        if conn.index == 1:
            await conn.send(pb.ServerMessage(restored=pb.SnapshotRestored(next_shot_index=3, story_frames=40)))

    gateway, mono = _fake(built, "fork", script)
    assert len(gateway.connections) == 2
    assert opens[0]["fork"] == {"sessionId": "fake-other"} and "decoder" not in opens[0] and "seed" not in opens[0], opens[0]
    assert "fork" not in opens[1] and opens[1]["decoder"] == "DECODER_TAE" and opens[1]["seed"] == "11", opens[1]
    assert mono.kind("RESTORED") == ["3 40"], mono.lines


def _resume_script(kind: str, snapshot: bytes):
    """conn 1 plays shot 0 ("a", unity-1) and, but for resume-new-story, shot 1 ("b", unity-2), answering the client's automatic
    snapshot requests (one per ShotStarted, wait_for_boundary) with `snapshot` after shot 0 ends; then the server goes away
    (resume-draining: closed "server draining"; otherwise the connection drops, no close frame). conn 2 records its open and
    what it gets until and after the replayed shot's ShotStarted."""
    from service.protocol import pb

    async def script(gw, conn):
        open_ = await conn.recv_kind("open")
        await conn.opened()
        if conn.index == 1:
            a = await conn.recv_kind("cue")
            b = None if kind == "resume-new-story" else await conn.recv_kind("cue")
            await conn.send(pb.ServerMessage(shot_started=pb.ShotStarted(event_id=a["eventId"], shot_index=0)))
            gw.notes.put(("ask-0", await conn.recv_kind("snapshot")))
            await conn.chunk(1, event_id=a["eventId"])
            if b is None:
                gw.notes.put(("queued", [await conn.recv_kind("cue")]))  # cued after shot 0 started: still queued
            else:
                await conn.send(pb.ServerMessage(shot_finished=pb.ShotFinished(event_id=a["eventId"], shot_index=0, chunks=2, frames=4)))
                await conn.send(pb.ServerMessage(snapshot=pb.SnapshotPart(data=snapshot, total_bytes=len(snapshot), count=1,
                                                                          next_shot_index=1)))
                await conn.send(pb.ServerMessage(shot_started=pb.ShotStarted(event_id=b["eventId"], shot_index=1)))
                gw.notes.put(("ask-1", await conn.recv_kind("snapshot")))
                await conn.chunk(2, event_id=b["eventId"])
                if kind == "resume-snapshot":
                    gw.notes.put(("queued", [await conn.recv_kind("cue"), await conn.recv_kind("cue")]))
            if kind == "resume-draining":
                await conn.send(pb.ServerMessage(closed=pb.SessionClosed(reason="server draining")))
                await conn.ws.close()
            else:
                conn.ws.transport.abort()  # the server is gone: no close frame
            return
        gw.notes.put(("open-2", open_))
        replay = await conn.recv_kind("cue")
        gw.notes.put(("replay", replay))
        await conn.send(pb.ServerMessage(shot_started=pb.ShotStarted(event_id=replay["eventId"],
                                                                     shot_index=0 if kind == "resume-new-story" else 1)))
        after = [await conn.recv() for _ in range(3 if kind == "resume-snapshot" else 2 if kind == "resume-new-story" else 1)]
        gw.notes.put(("after", after))
        if kind == "resume-draining":
            await conn.closed.wait()
            gw.notes.put(("gone", None))

    return script


def _notes(gateway, n: int) -> dict:
    out = {}
    for _ in range(n):
        key, value = gateway.notes.get(timeout=30)
        out[key] = value
    return out


def test_client_resumes_the_story_from_its_snapshot_when_the_connection_drops(built):
    """Resume Story On Reconnect (on by default), issue 13: the client asks for a snapshot (wait_for_boundary) as every shot starts
    and keeps the latest. Shot 0 ("a") ends, its snapshot (next shot 1) comes, shot 1 ("b", 3 chunks) starts, the game cues a cut at
    chunk 1 ("c") and a wait ("d"), and the connection drops mid-shot 1. The reconnect opens from that snapshot (no caption or seed
    of its own), cues "b" again from its start (WAIT, its 3 chunks), and holds the cut and "d" until "b" has started on the new
    session (a cut sent earlier would drop "b" from the server's queue); then they go, in order, and a new snapshot is asked for.
    storyResumed says: from the snapshot, next shot 1, the cues sent again. PlayShot("a") is done (the server made it); the
    cut's PlayShot waits on."""
    import base64

    snapshot = bytes(range(200))
    got = {}

    def drive(mono, gw):
        got.update(_notes(gw, 6))
        mono.send("replayed")

    gateway, mono = _fake(built, "resume-snapshot", _resume_script("resume-snapshot", snapshot), drive=drive)
    assert len(gateway.connections) == 2
    assert got["ask-0"] == {"waitForBoundary": True} and got["ask-1"] == {"waitForBoundary": True}
    assert [(c["eventId"], c["prompt"], c.get("mode"), c.get("atChunk")) for c in got["queued"]] == [
        ("unity-3", "c", "CUE_MODE_CUT", 1), ("unity-4", "d", "CUE_MODE_WAIT", None)], got["queued"]
    open2 = got["open-2"]
    assert base64.b64decode(open2["snapshot"]["data"]) == snapshot, open2
    assert "globalCaption" not in open2 and "seed" not in open2, open2
    assert got["replay"] == {"eventId": "unity-2", "prompt": "b", "numChunks": 3, "mode": "CUE_MODE_WAIT"}, got["replay"]
    after = got["after"]
    assert [list(m) for m in after] == [["cue"], ["cue"], ["snapshot"]], after
    assert after[0]["cue"] == {"eventId": "unity-3", "prompt": "c", "mode": "CUE_MODE_CUT", "atChunk": 1}, after
    assert after[1]["cue"]["eventId"] == "unity-4" and after[2]["snapshot"] == {"waitForBoundary": True}, after
    resumed = mono.kind("RESUMED")
    assert len(resumed) == 1 and resumed[0].startswith("True next 1 session fake-2 recued unity-2,unity-3,unity-4 reason connection lost"), mono.lines
    assert mono.kind("AFTER-RESUME") == ["first done cut pending kept 200 next 1"], mono.lines
    assert mono.kind("REMEMBERED") == ["3"], "shot 0 is forgotten: the snapshot is after it"
    closed = mono.kind("CLOSED")
    assert len(closed) == 1 and closed[0].startswith("connection lost"), closed


def test_client_opens_a_new_story_when_it_has_no_snapshot_yet(built):
    """The connection drops mid-shot 0, before any snapshot: the reconnect opens a new story with the same caption and seed, cues
    the shot in progress again from its start ("a", 2 chunks) and then the queued "b"; storyResumed says it is not from a snapshot,
    next shot 0."""
    got = {}

    def drive(mono, gw):
        got.update(_notes(gw, 5))
        mono.send("replayed")

    gateway, mono = _fake(built, "resume-new-story", _resume_script("resume-new-story", b""), drive=drive)
    assert len(gateway.connections) == 2
    open2 = got["open-2"]
    assert "snapshot" not in open2 and open2["globalCaption"] == "Sea." and open2["seed"] == "5", open2
    assert got["replay"] == {"eventId": "unity-1", "prompt": "a", "numChunks": 2, "mode": "CUE_MODE_WAIT"}, got["replay"]
    assert [list(m) for m in got["after"]] == [["cue"], ["snapshot"]], got["after"]
    assert got["after"][0]["cue"]["eventId"] == "unity-2", got["after"]
    resumed = mono.kind("RESUMED")
    assert len(resumed) == 1 and resumed[0].startswith("False next 0 session fake-2 recued unity-1,unity-2 reason connection lost"), mono.lines
    assert mono.kind("AFTER-RESUME") == ["first pending cut - kept none"], mono.lines


def test_client_resumes_on_a_draining_server_and_not_after_its_own_close(built):
    """closed "server draining" (a server taken out of rotation) is the server going away: the story resumes from its snapshot on
    the next session ("b" replayed, storyResumed with reason "server draining"). The game's own Close() afterwards ends it for good:
    no third session, no storyResumed."""
    got = {}

    def drive(mono, gw):
        got.update(_notes(gw, 5))
        mono.send("replayed")
        assert gw.notes.get(timeout=30) == ("gone", None)
        mono.send("closed")

    gateway, mono = _fake(built, "resume-draining", _resume_script("resume-draining", b"snap"), drive=drive)
    assert len(gateway.connections) == 2
    assert got["replay"]["eventId"] == "unity-2" and "globalCaption" not in got["open-2"], got
    assert mono.kind("RESUMED") == ["True next 1 session fake-2 recued unity-2 reason server draining"], mono.lines
    assert mono.kind("CLOSED") == ["server draining"], mono.lines
    assert list(gateway.connections[1].received[-1]) == ["close"]


def test_client_without_resume_story_starts_over(built):
    """ResumeStory off: the connection drops mid-shot 1 and the reconnect opens a new story (caption and seed), sends no cue again
    and raises no storyResumed; no automatic snapshot requests."""
    from service.protocol import pb

    async def script(gw, conn):
        open_ = await conn.recv_kind("open")
        await conn.opened()
        if conn.index == 1:
            a = await conn.recv_kind("cue")
            await conn.send(pb.ServerMessage(shot_started=pb.ShotStarted(event_id=a["eventId"], shot_index=0)))
            await conn.chunk(1, event_id=a["eventId"])
            await gw.wait("drop")
            gw.notes.put([list(m) for m in conn.received])
            conn.ws.transport.abort()
        else:
            gw.notes.put(open_)

    def drive(mono, gw):
        mono.expect("STARTED unity-1")
        gw.signal("drop")

    gateway, mono = _fake(built, "resume-off", script, drive=drive)
    first = gateway.notes.get(timeout=5)
    assert ["snapshot"] not in first, first
    open2 = gateway.notes.get(timeout=5)
    assert "snapshot" not in open2 and open2["globalCaption"] == "Sea.", open2
    assert not [m for m in gateway.connections[1].received if "cue" in m], gateway.connections[1].received
    assert not mono.kind("RESUMED")


def test_client_sends_no_stale_ack_to_a_new_session(built):
    """Session 1 drops while its chunk 7 is still playing; the client reconnects, and chunk 7's last frame is
    presented once session 2 is live but before its opened event is handled. Chunk 7's ack belonged to session 1:
    session 2 must get only the ack of its own chunk."""
    async def script(gw, conn):
        await conn.recv_kind("open")
        await conn.opened()
        if conn.index == 1:
            await conn.chunk(7)
            await gw.wait("drop")
            conn.ws.transport.abort()  # a dropped connection: no close frame
        else:
            await conn.chunk(1)
            ack = await conn.recv_kind("ack")
            gw.notes.put("acked " + ack["chunkSeq"])

    def drive(mono, gw):
        mono.expect("PUSHED")
        gw.signal("drop")
        assert mono.expect("PRESENTED") == "PRESENTED 1"  # chunk 7's last frame is on screen: its ack is due
        assert gw.notes.get(timeout=30) == "acked 1", "session 2's first ack must be its own chunk's"
        mono.send("acked")

    gateway, mono = _fake(built, "stale-ack", script, drive=drive)
    assert len(gateway.connections) == 2
    assert gateway.connections[0].acks() == []
    assert gateway.connections[1].acks() == ["1"], gateway.connections[1].received


def test_client_connects_when_enabled_and_closes_at_once_when_disabled(built):
    """Connect On Start: OnEnable connects. OnDisable returns at once with the client stopped and sends `close`;
    what the gateway sends after that never reaches the listeners."""
    from service.protocol import pb

    async def script(gw, conn):
        await conn.recv_kind("open")
        await conn.opened()
        await conn.recv_kind("close")
        with contextlib.suppress(Exception):  # the client may have gone already
            await conn.send(pb.ServerMessage(shot_started=pb.ShotStarted(event_id="late")))
            await conn.send(pb.ServerMessage(closed=pb.SessionClosed(reason="client")))
        gw.notes.put("closed")

    def drive(mono, gw):
        assert mono.expect("DISABLED") == "DISABLED running False connected False session False blocked no"
        assert gw.notes.get(timeout=30) == "closed"
        mono.send("closed")

    gateway, mono = _fake(built, "lifecycle", script, drive=drive)
    assert len(gateway.connections) == 1
    assert mono.kind("OPENED") == ["fake-1 TRANSPORT_INLINE"]
    assert not mono.kind("STARTED") and not mono.kind("CLOSED") and not mono.kind("ERROR"), mono.lines


def _nunit(built: Path) -> Path:
    """nunit.framework.dll (the stub) and the runner, next to the runtime."""
    nunit = built / "nunit.framework.dll"
    if not nunit.exists():
        _mcs("-target:library", f"-out:{nunit}", TESTS / "stubs" / "NUnitStub.cs")
        _mcs(f"-r:{nunit}", f"-out:{built / 'NUnitRunner.exe'}", TESTS / "NUnitRunner.cs")
    return nunit


def _run_nunit(built: Path, dll: Path) -> tuple[int, int, str]:
    proc = subprocess.run(["mono", str(built / "NUnitRunner.exe"), str(dll)], capture_output=True, text=True, timeout=120, cwd=built)
    out = proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", last)
    assert m, out
    assert proc.returncode == (0 if m[2] == "0" and m[1] != "0" else 1), out
    return int(m[1]), int(m[2]), out


def test_package_nunit_tests(built):
    """Tests/Editor is the package's Edit Mode test assembly, laid out as Unity's Test Framework expects (an
    asmdef referencing nunit.framework.dll and the test runners, compiled only when the project lists the
    package under "testables"). Here it compiles against a stub of the NUnit API it uses (stubs/NUnitStub.cs)
    and every [Test] runs under mono (tests/unity/NUnitRunner.cs)."""
    asmdef = json.loads((PKG / "Tests" / "Editor" / "ShotStream.Tests.asmdef").read_text())
    assert asmdef["name"] == "ShotStream.Tests"
    assert asmdef["references"] == ["ShotStream.Core", "ShotStream.Runtime", "UnityEngine.TestRunner", "UnityEditor.TestRunner"]
    assert asmdef["includePlatforms"] == ["Editor"]
    assert asmdef["overrideReferences"] is True and asmdef["precompiledReferences"] == ["nunit.framework.dll"]
    assert asmdef["defineConstraints"] == ["UNITY_INCLUDE_TESTS"] and asmdef["autoReferenced"] is False
    nunit = _nunit(built)
    sources = sorted((PKG / "Tests").rglob("*.cs"))
    dll = built / "ShotStream.Tests.dll"
    _mcs("-target:library", *_refs(built, "UnityEngine", "ShotStream.Core", "ShotStream.Runtime"), f"-r:{nunit}", f"-out:{dll}", *sources)
    declared = sum(len(re.findall(r"^\s*\[Test\]", f.read_text(), re.M)) for f in sources)
    passed, failed, out = _run_nunit(built, dll)
    assert (passed, failed) == (declared, 0), out
    assert declared >= 25


def test_nunit_runner_reports_failures(built, tmp_path):
    """The stub and runner fail what NUnit fails: a wrong value, Throws<T> given a subclass of T, a [Test]
    that Unity would not run as a plain test."""
    nunit = _nunit(built)
    src = tmp_path / "Failing.cs"
    src.write_text("""using System; using NUnit.Framework;
public class Failing {
    [Test] public void Ok() { Assert.AreEqual(3u, 3L); Assert.AreEqual(new[] { 1, 2 }, new System.Collections.Generic.List<int> { 1, 2 }); }
    [Test] public void WrongValue() { Assert.AreEqual(3, 4); }
    [Test] public void Subclass() { Assert.Throws<FormatException>(() => { throw new ShotStream.Core.JsonException("x"); }); }
    [Test] public int NotVoid() { return 0; }
}""")
    dll = tmp_path / "Failing.dll"
    _mcs("-target:library", f"-r:{built / 'ShotStream.Core.dll'}", f"-r:{nunit}", f"-out:{dll}", src)
    for dep in ("ShotStream.Core.dll", "nunit.framework.dll"):
        (tmp_path / dep).write_bytes((built / dep).read_bytes())
    passed, failed, out = _run_nunit(built, dll)
    assert (passed, failed) == (1, 3), out
    assert "FAIL Failing.WrongValue: AssertionException: Expected: 3" in out, out


IMPORTER = {".cs": "MonoImporter", ".asmdef": "AssemblyDefinitionImporter", ".md": "TextScriptImporter", ".json": "TextScriptImporter",
            ".unity": "DefaultImporter", ".asset": "NativeFormatImporter"}


def _needs_meta(rel: Path) -> bool:
    """Outside ~ folders: every file and folder. Inside Samples~: what lies inside a sample folder
    (Samples~/<sample>/...), which Package Manager > Import copies, .meta files included, into Assets/."""
    parts = rel.parts
    if rel.suffix == ".meta" or any(part.startswith(".") for part in parts):
        return False
    if parts[0] == "Samples~":
        return len(parts) >= 3 and not any(part.endswith("~") for part in parts[1:])
    return not any(part.endswith("~") for part in parts)


def test_every_shipped_asset_has_a_meta():
    """Unity ignores an asset without a .meta in an immutable (git URL) package: every file and folder the
    package ships outside ~ folders has one, with a valid GUID unique in the package and the importer for
    its type. So does every file inside a sample (Samples~/<sample>/...): Unity copies a sample's content
    with its .meta files into Assets/ on import, so the sample scene's reference to the sample script's GUID
    holds; Samples~ and the sample folder itself get none (the copy lands in a folder Unity names and
    GUIDs), nor does anything in Documentation~. No .meta is left without its asset; and they are exactly
    what unity_plugin/tools/make_meta.py expects (run it after adding a file; move .meta files with their assets)."""
    shipped = sorted(p for p in PKG.rglob("*") if _needs_meta(p.relative_to(PKG)))
    assert {"package.json", "Runtime", "Runtime/Core/Messages.cs", "Editor/ShotStream.Editor.asmdef", "Tests/Editor",
            "Samples~/EventShots/EventShots.unity", "Samples~/EventShots/EventShotsSample.cs",
            "Samples~/EventShots/README.md", "Samples~/EventShots/EventShotsPromptMap.asset", "Runtime/Core/ShotStream.Core.asmdef"} <= {
        p.relative_to(PKG).as_posix() for p in shipped}
    guids: dict[str, Path] = {}
    for asset in shipped:
        meta = asset.with_name(asset.name + ".meta")
        assert meta.is_file(), f"{asset.relative_to(PKG)} has no .meta (run unity_plugin/tools/make_meta.py)"
        raw = meta.read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf") and b"\r" not in raw, f"{meta}: BOM or CRLF (Unity misreads it)"
        text = raw.decode("utf-8")
        assert text.startswith("fileFormatVersion: 2\n"), meta
        m = re.search(r"^guid: ([0-9a-f]{32})$", text, re.M)
        assert m, f"{meta}: no valid guid"
        assert m[1] not in guids, f"{meta} and {guids.get(m[1])} share a GUID"
        guids[m[1]] = meta
        if asset.is_dir():
            want = "DefaultImporter"
            assert "\nfolderAsset: yes\n" in text, meta
        else:
            want = "PackageManifestImporter" if asset.name == "package.json" else IMPORTER[asset.suffix]
        assert re.search(rf"^{want}:$", text, re.M), f"{meta}: expected {want}"
        if asset.suffix == ".asset":  # a ScriptableObject asset: its one object is the main object
            assert "\n  mainObjectFileID: 11400000\n" in text, meta
    metas = sorted(PKG.rglob("*.meta"))
    orphans = [m.relative_to(PKG) for m in metas if not m.with_suffix("").exists()]
    assert not orphans, f"orphaned .meta files: {orphans}"
    stray = [m.relative_to(PKG) for m in metas if not _needs_meta(m.with_suffix("").relative_to(PKG))]
    assert not stray, f".meta files Unity never reads (~ folders, the sample folder itself): {stray}"
    assert not (PKG / "Samples~" / "EventShots.meta").exists() and not (PKG / "Samples~.meta").exists()
    assert not (PKG.parent / "com.shotstream.bridge.meta").exists(), "the package root has no .meta"
    check = subprocess.run([sys.executable, str(ROOT / "unity_plugin" / "tools" / "make_meta.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def _make_meta(package: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "unity_plugin" / "tools" / "make_meta.py"), "--package", str(package), *args],
                          capture_output=True, text=True)


def _guids(package: Path) -> dict[str, str]:
    """asset path (package-relative, without .meta) -> GUID of its .meta."""
    return {m.relative_to(package).as_posix()[:-5]: re.search(r"^guid: ([0-9a-f]{32})$", m.read_text(), re.M)[1]
            for m in package.rglob("*.meta")}


def test_make_meta_keeps_guids_when_files_move(tmp_path):
    """GUIDs are stored once (the committed .meta files) and kept (issue 11, defect 4): the tool never changes an
    existing GUID, even one it would not have chosen; a script moved without its .meta takes the left-behind .meta's
    GUID along (so users' scenes keep their references); a script moved with its .meta keeps it as is; a new file gets
    a new random GUID, unique, which a second run leaves alone; a deleted file's .meta goes."""
    import shutil

    pkg = tmp_path / "com.shotstream.bridge"
    shutil.copytree(PKG, pkg)
    before = _guids(pkg)
    assert _make_meta(pkg, "--check").returncode == 0
    # a GUID the tool would never pick stays
    meta = pkg / "Runtime" / "Unity" / "ShotStreamDirector.cs.meta"
    meta.write_text(re.sub(r"^guid: \w+$", "guid: 0123456789abcdef0123456789abcdef", meta.read_text(), flags=re.M))
    # moved without its .meta (into a new folder)
    (pkg / "Runtime" / "Unity" / "Screen").mkdir()
    (pkg / "Runtime" / "Unity" / "ShotStreamScreen.cs").rename(pkg / "Runtime" / "Unity" / "Screen" / "ShotStreamScreen.cs")
    # moved with its .meta (git mv both)
    for suffix in ("", ".meta"):
        (pkg / "Runtime" / "Unity" / ("ShotPromptMap.cs" + suffix)).rename(pkg / "Runtime" / ("ShotPromptMap.cs" + suffix))
    # a new file, and a deleted one
    (pkg / "Runtime" / "Unity" / "NewThing.cs").write_text("class NewThing { }\n")
    (pkg / "Runtime" / "Unity" / "AssemblyInfo.cs").unlink()
    check = _make_meta(pkg, "--check")
    assert check.returncode == 1 and "moved: Runtime/Unity/ShotStreamScreen.cs.meta -> Runtime/Unity/Screen/ShotStreamScreen.cs.meta" in check.stdout, check.stdout
    assert (pkg / "Runtime" / "Unity" / "ShotStreamScreen.cs.meta").exists(), "--check writes nothing"
    run = _make_meta(pkg)
    assert run.returncode == 0, run.stdout + run.stderr
    after = _guids(pkg)
    assert after["Runtime/Unity/Screen/ShotStreamScreen.cs"] == before["Runtime/Unity/ShotStreamScreen.cs"]
    assert after["Runtime/ShotPromptMap.cs"] == before["Runtime/Unity/ShotPromptMap.cs"]
    assert after["Runtime/Unity/ShotStreamDirector.cs"] == "0123456789abcdef0123456789abcdef"
    assert "Runtime/Unity/ShotStreamScreen.cs" not in after and "Runtime/Unity/AssemblyInfo.cs" not in after
    new = {after["Runtime/Unity/NewThing.cs"], after["Runtime/Unity/Screen"]}
    assert len(new) == 2 and not new & set(before.values()), "new assets get new GUIDs"
    kept = {k: v for k, v in before.items() if k in after and k != "Runtime/Unity/ShotStreamDirector.cs"}
    assert kept and all(after[k] == v for k, v in kept.items()), "no other GUID changed"
    assert len(set(after.values())) == len(after), "unique"
    again = _make_meta(pkg, "--check")
    assert again.returncode == 0, again.stdout
    assert _make_meta(pkg).returncode == 0 and _guids(pkg) == after, "a second run changes nothing"


# ---------------------------------------------------------------------------------------------------------
# The sample scene (Samples~/EventShots/EventShots.unity), hand-written in Unity 2021.3's text format.

SCENE = PKG / "Samples~" / "EventShots" / "EventShots.unity"
# Unity class IDs used by the scene -> the type name Unity writes under the document header.
UNITY_CLASSES = {1: "GameObject", 4: "Transform", 20: "Camera", 29: "OcclusionCullingSettings", 81: "AudioListener",
                 104: "RenderSettings", 114: "MonoBehaviour", 157: "LightmapSettings", 196: "NavMeshSettings",
                 222: "CanvasRenderer", 223: "Canvas", 224: "RectTransform"}
# The scene-settings objects every scene starts with, at fileIDs 1-4, with the serializedVersion Unity 2021.3
# writes for each.
SCENE_SETTINGS = {1: ("OcclusionCullingSettings", "2"), 2: ("RenderSettings", "9"), 3: ("LightmapSettings", "12"),
                  4: ("NavMeshSettings", "2")}
# com.unity.ugui (2019.2+, 1.0.0 in 2021.3) ships its components as C# sources, so a scene references them as
# {fileID: 11500000, guid: <the script's .meta GUID>, type: 3} (the {fileID: <hash>, guid:
# f70555f144d8491a825f0804e09c671c} form is the pre-2019.2 UnityEngine.UI.dll) -> the fields Unity 2021.3
# serializes for each.
UGUI_SCRIPTS = {
    "1344c3c82d62a2a41a3576d8abb8e3ea": ("RawImage", {"m_Material", "m_Color", "m_RaycastTarget", "m_RaycastPadding",
                                                      "m_Maskable", "m_OnCullStateChanged", "m_Texture", "m_UVRect"}),
    "0cd44c1031e13a943bb63640046fad76": ("CanvasScaler", {
        "m_UiScaleMode", "m_ReferencePixelsPerUnit", "m_ScaleFactor", "m_ReferenceResolution", "m_ScreenMatchMode",
        "m_MatchWidthOrHeight", "m_PhysicalUnit", "m_FallbackScreenDPI", "m_DefaultSpriteDPI", "m_DynamicPixelsPerUnit",
        "m_PresetInfoIsWorld"}),
    "dc42784cf147c0c48a680349fa168899": ("GraphicRaycaster", {"m_IgnoreReversedGraphics", "m_BlockingObjects",
                                                              "m_BlockingMask"}),
}
# What Unity writes at the top of every MonoBehaviour document, before the script's own fields.
MONO_HEADER = {"m_ObjectHideFlags", "m_CorrespondingSourceObject", "m_PrefabInstance", "m_PrefabAsset", "m_GameObject",
               "m_Enabled", "m_EditorHideFlags", "m_Script", "m_Name", "m_EditorClassIdentifier"}
BUILTIN_RESOURCE_GUID = re.compile(r"0{16}[ef]0{15}")  # unity default resources / builtin extra


def _parse_unity_scene(text: str) -> dict[int, tuple[int, str, dict]]:
    """fileID -> (class ID, type name, fields) for every document of a Unity text-serialized file. Each body is
    read with yaml.BaseLoader (every scalar a string, as Unity's YAML is untyped: GUIDs stay strings)."""
    head = "%YAML 1.1\n%TAG !u! tag:unity3d.com,2011:\n"
    assert text.startswith(head), "missing Unity's %YAML / %TAG header"
    chunks = re.split(r"^--- !u!(-?\d+) &(-?\d+)( stripped)?\n", text[len(head):], flags=re.M)
    assert chunks[0] == "", f"text before the first document: {chunks[0][:80]!r}"
    docs: dict[int, tuple[int, str, dict]] = {}
    for i in range(1, len(chunks), 4):
        cls, fid, stripped, body = int(chunks[i]), int(chunks[i + 1]), chunks[i + 2], chunks[i + 3]
        assert not stripped, f"&{fid}: stripped (prefab) documents are not expected here"
        assert fid not in docs, f"fileID {fid} used twice"
        parsed = yaml.load(body, Loader=yaml.BaseLoader)
        assert isinstance(parsed, dict) and len(parsed) == 1, f"&{fid}: not one top-level type"
        ((name, fields),) = parsed.items()
        docs[fid] = (cls, name, fields)
    return docs


def _walk_refs(value, path=""):
    """(path, dict) for every {fileID: ...} object reference in a parsed document."""
    if isinstance(value, dict):
        if "fileID" in value:
            yield path, value
        for k, v in value.items():
            yield from _walk_refs(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_refs(v, f"{path}[{i}]")


_CS_TOKEN = re.compile(r'//[^\n]*|/\*.*?\*/|@"(?:[^"]|"")*"|\$?"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])+\'', re.S)
_ASSIGN = re.compile(r"(?<![=!<>])=(?![>=])")  # an assignment `=`, not `=>`, `==`, `<=`, `>=`, `!=`
_MODIFIERS = {"public", "private", "protected", "internal", "static", "readonly", "const", "new", "volatile",
              "unsafe", "fixed", "extern", "override", "abstract", "virtual", "sealed", "partial", "async"}


def _cs_strip(source: str) -> str:
    """C# source without comments, string and char literal contents (so braces in them do not count)."""
    def repl(m):
        t = m.group()
        return " " if t.startswith("/") else ("''" if t.startswith("'") else '""')
    return _CS_TOKEN.sub(repl, source)


def _split_top(text: str, sep: str = ",") -> list[str]:
    parts, depth, cur = [], 0, []
    for k, c in enumerate(text):
        if c in "<([{":
            depth += 1
        elif c in ">)]}" and text[k - 1:k + 1] != "=>":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def _class_statements(source: str, class_name: str) -> list[str]:
    """The `;`-terminated member declarations directly in the body of `class class_name` (method, property
    and nested type bodies skipped; a brace initializer after `=` kept)."""
    src = _cs_strip(source)
    m = re.search(rf"\bclass\s+{class_name}\b[^{{;]*\{{", src)
    assert m, f"class {class_name} not found"
    statements, buf, i = [], [], m.end()
    while i < len(src):
        c = src[i]
        if c == "}":
            break  # end of the class body
        if c == ";":
            statements.append("".join(buf).strip())
            buf = []
        elif c == "{":
            text = "".join(buf)
            depth, j = 1, i + 1
            while depth:
                depth += {"{": 1, "}": -1}.get(src[j], 0)
                j += 1
            if _ASSIGN.search(text):  # `x = new T { ... }`, `f = x => { ... }`: part of the statement
                buf.append(src[i:j])
            else:  # a method, property, indexer or nested type: not a field
                buf = []
            i = j
            continue
        else:
            buf.append(c)
        i += 1
    return statements


def _serialized_fields(source: str, class_name: str) -> dict[str, str]:
    """name -> declared type of every field Unity serializes on `class_name` (declaration order): instance
    fields that are public or [SerializeField], not [NonSerialized], static, readonly or const. Properties,
    methods, events and nested types are not fields."""
    fields: dict[str, str] = {}
    for stmt in _class_statements(source, class_name):
        attrs = []
        while stmt.startswith("["):
            depth = 0
            for k, c in enumerate(stmt):
                depth += {"[": 1, "]": -1}.get(c, 0)
                if depth == 0:
                    break
            attrs.append(stmt[1:k])
            stmt = stmt[k + 1:].strip()
        parts = [p.strip() for p in _split_top(stmt)]
        assign, arrow = _ASSIGN.search(parts[0]), parts[0].find("=>")
        if arrow >= 0 and (assign is None or arrow < assign.start()):
            continue  # an expression-bodied property or method
        first = parts[0][:assign.start()] if assign else parts[0]
        if not stmt or "(" in first or re.search(r"\b(event|delegate|using|operator)\b", first):
            continue
        words = first.split()
        mods = set()
        while words and words[0] in _MODIFIERS:
            mods.add(words.pop(0))
        if len(words) < 2:
            continue
        ftype, names = " ".join(words[:-1]), [words[-1]] + [_ASSIGN.split(p, 1)[0].strip() for p in parts[1:]]
        attr_text = " ".join(attrs)
        if mods & {"static", "readonly", "const"} or re.search(r"\bNonSerialized\b", attr_text):
            continue
        if "public" in mods or re.search(r"\bSerializeField\b", attr_text):
            for name in names:
                fields[name] = ftype
    return fields


def _enums(*sources: str) -> dict[str, set[int]]:
    """enum name -> its member values, for the enums declared in the given C# sources."""
    out: dict[str, set[int]] = {}
    for source in sources:
        for m in re.finditer(r"\benum\s+(\w+)\s*(?::\s*\w+\s*)?\{([^}]*)\}", _cs_strip(source)):
            values, nxt = set(), 0
            for member in filter(None, (p.strip() for p in m[2].split(","))):
                if "=" in member:
                    nxt = int(member.split("=", 1)[1].strip(), 0)
                values.add(nxt)
                nxt += 1
            out[m[1]] = values
    return out


def test_csharp_field_parser():
    """The field parser the scene test relies on: what Unity serializes and what it does not."""
    src = """
    public sealed class Probe : MonoBehaviour {
        [Header("A {b}")] [SerializeField] string a = "x;{";
        [SerializeField, Tooltip("t")] int b, c;
        public float d = 1f;
        public UnityEvent e = new UnityEvent();
        public Dictionary<string, int> f = new Dictionary<string, int> { { "k", 1 } };
        [System.NonSerialized] public int hidden;
        public static int s; public const int K = 1; public readonly int r = 2; [SerializeField] static int ss;
        int priv; internal int inter; protected int prot;
        public int Prop { get { return 1; } set { } }
        public int Expr => 3;
        public event System.Action Ev;
        struct Nested { public int inner; }
        void M() { int local = 0; }
        public System.Func<int, int> g = x => { return x; };
        byte[] buf;
        [SerializeField] byte[] arr = null;
    }"""
    assert _serialized_fields(src, "Probe") == {"a": "string", "b": "int", "c": "int", "d": "float", "e": "UnityEvent",
                                                "f": "Dictionary<string, int>", "g": "System.Func<int, int>",
                                                "arr": "byte[]"}
    assert _enums("enum E { A = 1, B, C = 5 } enum F : byte { X }") == {"E": {1, 2, 5}, "F": {0}}


def _script_guids() -> dict[str, Path]:
    """GUID -> C# script, for every runtime or sample script the package ships with its .meta (a scene
    cannot use Editor/ or Tests/ scripts: they are not in a player build)."""
    out = {}
    for meta in [*(PKG / "Runtime").rglob("*.cs.meta"), *(PKG / "Samples~").rglob("*.cs.meta")]:
        m = re.search(r"^guid: ([0-9a-f]{32})$", meta.read_text(), re.M)
        assert m, meta
        out[m[1]] = meta.with_suffix("")
    return out


def _asset_guids() -> dict[str, Path]:
    """GUID -> asset, for every ScriptableObject asset a sample ships with its .meta."""
    out = {}
    for meta in (PKG / "Samples~").rglob("*.asset.meta"):
        m = re.search(r"^guid: ([0-9a-f]{32})$", meta.read_text(), re.M)
        assert m, meta
        out[m[1]] = meta.with_suffix("")
    return out


def _check_value(where: str, ftype: str, value, enums: dict[str, set[int]], events: set[str]) -> None:
    """A serialized field's value has the kind of its C# type (Unity's YAML scalars are strings)."""
    if ftype == "string":
        assert isinstance(value, str), where
    elif ftype == "bool":
        assert value in ("0", "1"), where
    elif ftype in ("int", "long", "uint", "ulong", "short", "byte"):
        assert re.fullmatch(r"-?\d+", value), where
    elif ftype in ("float", "double"):
        assert re.fullmatch(r"-?\d+(\.\d+)?(e[-+]?\d+)?", value), where
    elif ftype in enums:
        assert re.fullmatch(r"-?\d+", value) and int(value) in enums[ftype], where
    elif ftype in events:
        assert value == {"m_PersistentCalls": {"m_Calls": []}}, where
    else:  # a UnityEngine.Object reference: in this file, or the main object of an asset the sample ships
        assert isinstance(value, dict) and (set(value) == {"fileID"} or (
            value.get("guid") in _asset_guids() and (value["fileID"], value["type"]) == ("11400000", "2"))), where


def test_sample_prompt_map_asset():
    """Samples~/EventShots/EventShotsPromptMap.asset is a ShotPromptMap as Unity 2021.3 writes a ScriptableObject:
    one MonoBehaviour document &11400000 whose m_Script is ShotPromptMap.cs's GUID, serializing exactly the fields of
    ShotPromptMap, each entry exactly those of ShotPromptEntry with values of their kinds; it maps the three game
    events the sample's keys fire, and every template resolves with the sample's one parameter."""
    asset = PKG / "Samples~" / "EventShots" / "EventShotsPromptMap.asset"
    raw = asset.read_bytes()
    assert b"\r" not in raw and b"\t" not in raw and raw.endswith(b"\n"), "Unity writes LF, spaces, a final newline"
    docs = _parse_unity_scene(raw.decode("utf-8"))
    assert list(docs) == [11400000] and docs[11400000][:2] == (114, "MonoBehaviour")
    fields = docs[11400000][2]
    assert MONO_HEADER <= set(fields) and fields["m_GameObject"] == {"fileID": "0"} and fields["m_Name"] == asset.stem
    source = (PKG / "Runtime" / "Unity" / "ShotPromptMap.cs").read_text()
    guid = _script_guids()
    assert fields["m_Script"]["guid"] in guid and guid[fields["m_Script"]["guid"]].name == "ShotPromptMap.cs"
    assert (fields["m_Script"]["fileID"], fields["m_Script"]["type"]) == ("11500000", "3")
    declared = _serialized_fields(source, "ShotPromptMap")
    assert {k for k in fields if k not in MONO_HEADER} == set(declared) == {"entries"}
    entry_fields = _serialized_fields(source, "ShotPromptEntry")
    entries = fields["entries"]
    assert isinstance(entries, list) and entries
    for i, entry in enumerate(entries):
        assert set(entry) == set(entry_fields), f"entries[{i}]: {sorted(set(entry) ^ set(entry_fields))}"
        for key, ftype in entry_fields.items():
            _check_value(f"entries[{i}].{key} ({ftype}) = {entry[key]!r}", ftype, entry[key], {}, set())
    sample = (PKG / "Samples~" / "EventShots" / "EventShotsSample.cs").read_text()
    fired = re.findall(r'Fire\("(\w+)"\)', sample)
    assert fired and sorted(e["eventName"] for e in entries) == sorted(fired)
    for e in entries:
        assert set(re.findall(r"\{(\w+)\}", e["promptTemplate"])) <= {"character"}, e
        assert int(e["chunks"]) >= 0
    assert [e["eventName"] for e in entries if e["cut"] == "1"] == ["dragon_attacks"]


def test_sample_scene_is_wired():
    """Samples~/EventShots/EventShots.unity is a valid Unity 2021.3 text scene, checked structurally (there is
    no editor here): Unity's header; unique fileIDs; the four scene-settings objects; every local reference
    resolves; GameObjects and their components point at each other; the Transform hierarchy is consistent;
    every script reference is a uGUI script or a script the package ships with its .meta; each package or
    sample MonoBehaviour serializes exactly the fields its C# class declares (renaming a field without
    updating the scene fails here), with values of the field's kind; and the objects are wired: client ->
    screen -> RawImage on a full-screen overlay Canvas, director -> client, sample -> director."""
    raw = SCENE.read_bytes()
    assert b"\r" not in raw and b"\t" not in raw and raw.endswith(b"\n"), "Unity writes LF, spaces, a final newline"
    text = raw.decode("utf-8")
    docs = _parse_unity_scene(text)

    # Document types and the scene settings.
    for fid, (cls, name, _) in docs.items():
        assert UNITY_CLASSES.get(cls) == name, f"&{fid}: class {cls} is not {name}"
    for fid, (name, version) in SCENE_SETTINGS.items():
        assert docs[fid][1] == name and docs[fid][2]["serializedVersion"] == version, (fid, name)
    assert list(docs) == sorted(docs), "Unity writes documents in fileID order"

    # Every local reference resolves; the only external ones are scripts and Unity's built-in resources.
    for fid, (_, name, fields) in docs.items():
        for path, ref in _walk_refs(fields):
            if "guid" in ref:
                if path == ".m_Script" or ref["guid"] in _asset_guids():
                    continue
                assert BUILTIN_RESOURCE_GUID.fullmatch(ref["guid"]), f"&{fid}{path}: external reference {ref}"
            else:
                assert set(ref) == {"fileID"}, f"&{fid}{path}: {ref}"
                assert ref["fileID"] == "0" or int(ref["fileID"]) in docs, f"&{fid}{path} -> missing &{ref['fileID']}"

    def ref(value) -> int:
        return int(value["fileID"])

    # GameObjects <-> components.
    objects = {fid: f for fid, (cls, _, f) in docs.items() if cls == 1}
    components = {fid: f for fid, (_, _, f) in docs.items() if "m_GameObject" in f}
    for go, fields in objects.items():
        listed = [ref(c["component"]) for c in fields["m_Component"]]
        assert len(set(listed)) == len(listed), go
        for comp in listed:
            assert comp in components and ref(components[comp]["m_GameObject"]) == go, (go, comp)
        assert [docs[c][0] for c in listed].count(4) + [docs[c][0] for c in listed].count(224) == 1, \
            f"GameObject &{go} needs exactly one Transform or RectTransform"
        assert docs[listed[0]][0] in (4, 224), f"GameObject &{go}: the Transform comes first"
    for comp, fields in components.items():
        go = ref(fields["m_GameObject"])
        assert go in objects and comp in [ref(c["component"]) for c in objects[go]["m_Component"]], comp

    # The Transform hierarchy.
    transforms = {fid: f for fid, (cls, _, f) in docs.items() if cls in (4, 224)}
    roots = []
    for t, fields in transforms.items():
        children = [ref(c) for c in fields["m_Children"]]
        for index, child in enumerate(children):
            assert child in transforms and ref(transforms[child]["m_Father"]) == t, (t, child)
            assert transforms[child]["m_RootOrder"] == str(index), (t, child)
        father = ref(fields["m_Father"])
        if father == 0:
            roots.append(int(fields["m_RootOrder"]))
        else:
            assert t in [ref(c) for c in transforms[father]["m_Children"]], (father, t)
    assert sorted(roots) == list(range(len(roots))), f"root orders {roots}"

    # Scripts, and the serialized fields of the package's own.
    scripts = _script_guids()
    runtime = [p.read_text() for p in sorted((PKG / "Runtime").rglob("*.cs"))]
    enums = _enums(*runtime, (TESTS / "stubs" / "UnityEngineStub.cs").read_text())
    events = set(re.findall(r"class\s+(\w+)\s*:\s*UnityEvent\b", "\n".join(runtime)))
    by_script: dict[str, list[int]] = {}
    for fid, (cls, _, fields) in docs.items():
        if cls != 114:
            continue
        script = fields["m_Script"]
        assert (script["fileID"], script["type"]) == ("11500000", "3"), f"&{fid}: m_Script {script}"
        guid = script["guid"]
        own = {k for k in fields if k not in MONO_HEADER}
        assert MONO_HEADER <= set(fields), f"&{fid}: missing MonoBehaviour header fields"
        by_script.setdefault(guid, []).append(fid)
        if guid in UGUI_SCRIPTS:
            name, expected = UGUI_SCRIPTS[guid]
            assert own == expected, f"&{fid} ({name}): {sorted(own ^ expected)}"
            continue
        assert guid in scripts, f"&{fid}: m_Script GUID {guid} is neither uGUI's nor a shipped script's"
        cs = scripts[guid]
        declared = _serialized_fields(cs.read_text(), cs.stem)
        assert own == set(declared), (f"&{fid} ({cs.name}): scene has {sorted(own - set(declared))} extra, "
                                      f"{sorted(set(declared) - own)} missing")
        for key, ftype in declared.items():
            _check_value(f"&{fid} {cs.stem}.{key} ({ftype}) = {fields[key]!r}", ftype, fields[key], enums, events)

    def one(guid: str) -> tuple[int, dict]:
        assert len(by_script.get(guid, [])) == 1, f"expected one MonoBehaviour with script {guid}"
        fid = by_script[guid][0]
        return fid, docs[fid][2]

    guid_of = {path.relative_to(PKG).as_posix(): guid for guid, path in scripts.items()}
    client_id, client = one(guid_of["Runtime/Unity/ShotStreamClient.cs"])
    screen_id, screen = one(guid_of["Runtime/Unity/ShotStreamScreen.cs"])
    director_id, director = one(guid_of["Runtime/Unity/ShotStreamDirector.cs"])
    sample_id, sample = one(guid_of["Samples~/EventShots/EventShotsSample.cs"])
    raw_id, raw_image = one("1344c3c82d62a2a41a3576d8abb8e3ea")

    # The ShotStream object: client -> screen -> RawImage, director -> client, sample -> director.
    go = ref(client["m_GameObject"])
    assert objects[go]["m_Name"] == "ShotStream" and objects[go]["m_IsActive"] == "1"
    assert all(ref(c["m_GameObject"]) == go and c["m_Enabled"] == "1" for c in (screen, director, sample))
    assert ref(client["screen"]) == screen_id
    assert ref(screen["rawImage"]) == raw_id
    assert ref(director["client"]) == client_id
    assert ref(sample["director"]) == director_id
    assert client["serverUrl"] == "ws://127.0.0.1:50052/v1/direct"
    assert client["transport"] == "1"  # ShotTransport.Inline
    assert client["connectOnStart"] == "1" and client["globalCaption"].strip()
    # the director's prompts come from the sample's asset (the GUID its .meta gives it, the main object)
    assert {guid: p.name for guid, p in _asset_guids().items()}.get(director["promptMap"].get("guid")) == "EventShotsPromptMap.asset"
    assert (director["promptMap"]["fileID"], director["promptMap"]["type"]) == ("11400000", "2")
    assert sample["character"]

    # The RawImage: full-screen child of a screen-space overlay Canvas, with a CanvasRenderer.
    image_go = ref(raw_image["m_GameObject"])
    kinds = {docs[ref(c["component"])][0]: ref(c["component"]) for c in objects[image_go]["m_Component"]}
    assert 222 in kinds and 224 in kinds, "the RawImage needs a RectTransform and a CanvasRenderer"
    rect = transforms[kinds[224]]
    assert (rect["m_AnchorMin"], rect["m_AnchorMax"]) == ({"x": "0", "y": "0"}, {"x": "1", "y": "1"})
    assert rect["m_SizeDelta"] == {"x": "0", "y": "0"} and raw_image["m_Enabled"] == "1"
    canvas_go = ref(transforms[ref(rect["m_Father"])]["m_GameObject"])
    canvas_parts = [ref(c["component"]) for c in objects[canvas_go]["m_Component"]]
    canvas = [docs[c][2] for c in canvas_parts if docs[c][0] == 223]
    assert len(canvas) == 1 and canvas[0]["m_RenderMode"] == "0", "the RawImage's parent holds a overlay Canvas"
    ugui_on_canvas = {docs[c][2]["m_Script"]["guid"] for c in canvas_parts if docs[c][0] == 114}
    assert ugui_on_canvas == {"0cd44c1031e13a943bb63640046fad76", "dc42784cf147c0c48a680349fa168899"}
    assert objects[canvas_go]["m_Layer"] == objects[image_go]["m_Layer"] == "5"  # the UI layer

    # A main camera clearing to a solid colour, with the scene's AudioListener.
    cameras = [f for (cls, _, f) in docs.values() if cls == 20]
    assert len(cameras) == 1 and cameras[0]["m_ClearFlags"] == "2"
    cam_go = objects[ref(cameras[0]["m_GameObject"])]
    assert cam_go["m_TagString"] == "MainCamera"
    assert 81 in {docs[ref(c["component"])][0] for c in cam_go["m_Component"]}
    # the scene's own .meta: a scene is imported by the DefaultImporter
    assert "\nDefaultImporter:\n" in SCENE.with_name(SCENE.name + ".meta").read_text()


def test_unity_story_moves_to_another_server_behind_haproxy(built, tmp_path):
    """Issue 13 live: two real servers (tiny model, CPU; tests/fork_servers.py via test_scaleout's Fleet) behind a real HAProxy
    (deploy/haproxy_local.py through test_scaleout's Haproxy helper). The Unity client plays a three-shot story through the proxy
    uninterrupted ("ref"), then again ("moved"): as soon as shot 1's first chunk is in (the snapshot of shot 0's end kept) the
    server holding the session is killed (SIGKILL). The client reconnects through the proxy, lands on the other server, continues
    from the snapshot (storyResumed: from snapshot, next shot 1, shots 1 and 2 cued again). Shots 0 and 2 on screen equal the
    uninterrupted run's frame for frame; shot 1 plays again from its start, so its frames are those already shown before the move
    (whatever was presented before the snapshot came: a prefix of the shot) followed by the whole shot, equal to the uninterrupted
    run's. Skips without haproxy."""
    import signal

    import test_scaleout as so

    binary = so.require_haproxy()
    fleet = so.Fleet(2, tmp_path)
    proxy = None
    try:
        for s in fleet.servers:
            s.started()
        proxy = so.Haproxy(binary, fleet.servers, tmp_path)
        so.run(so.until("both servers UP in HAProxy", lambda: all(proxy.status(i) == ("UP", "UP") for i in range(2))))
        mono = _Mono(["mono", str(built / "UnityLayerTests.exe"), "failover", f"ws://127.0.0.1:{proxy.gateway_port}/v1/direct"], built)
        try:
            mono.expect("MOVE-KILL", timeout=300)
            loads = so.run(so.loads(fleet.servers))
            (host,) = [i for i, n in enumerate(loads) if n == 1]
            fleet.servers[host].send_signal(signal.SIGKILL)
            mono.send("killed")
            mono.expect("MOVE DONE", timeout=300)
            rc = mono.read_to_end()
        finally:
            mono.kill()
        assert rc == 0, mono.lines[-30:]
    finally:
        if proxy is not None:
            proxy.stop()
        fleet.stop()
    lines = mono.lines
    resumed = [line for line in lines if line.startswith("MOVE moved resumed ")]
    assert len(resumed) == 1 and resumed[0].startswith("MOVE moved resumed True next 1 recued unity-2,unity-3 reason "), lines
    assert not [line for line in lines if line.startswith("MOVE ref resumed")], lines
    for name in ("ref", "moved"):
        (summary,) = [line for line in lines if line.startswith(f"MOVE {name} playbacks ")]
        assert summary.startswith(f"MOVE {name} playbacks done,done,done finished ") and summary.endswith(" errors 0"), summary
    for shot in range(3):
        (ref,) = [line.split(" ")[-1].split(",") for line in lines if line.startswith(f"MOVE ref shot {shot} ")]
        (got,) = [line.split(" ")[-1].split(",") for line in lines if line.startswith(f"MOVE moved shot {shot} ")]
        assert len(ref) > 1, ref
        if shot != 1:
            assert got == ref, (shot, ref, got)
            continue
        # shot 1 played again from its start on the new server: what was on screen before the move, then the whole shot
        shown_before = len(got) - len(ref)
        assert 0 <= shown_before < len(ref) and got[shown_before:] == ref and got[:shown_before] == ref[:shown_before], (ref, got)
        print(f"shot 1: {shown_before} of its {len(ref)} frames were on screen before the move and are shown again")
