"""The Unity package unity_plugin/com.shotstream.bridge as a whole: the UPM manifest and assembly
definition parse with the expected names; Runtime/Core + Runtime/Unity compile (C# 7.2, unsafe,
warnings as errors) against tests/unity/stubs/UnityEngineStub.cs, a stub of only the UnityEngine APIs
the package uses (so a call to a missing API fails here); tests/unity/UnityLayerTests.cs runs under
mono. Skips only when mcs/mono are missing (apt-get install -y --no-install-recommends mono-mcs)."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "unity_plugin" / "com.shotstream.bridge"
TESTS = ROOT / "tests" / "unity"
MCS = ["mcs", "-langversion:7.2", "-warnaserror+"]

pytestmark = pytest.mark.skipif(not (shutil.which("mcs") and shutil.which("mono")),
                                reason="mcs/mono not installed (apt-get install -y --no-install-recommends mono-mcs)")


def _mcs(*args) -> None:
    proc = subprocess.run([*MCS, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unitypkg")
    _mcs("-target:library", f"-out:{out / 'UnityEngine.dll'}", TESTS / "stubs" / "UnityEngineStub.cs")
    sources = sorted((PKG / "Runtime" / "Core").glob("*.cs")) + sorted((PKG / "Runtime" / "Unity").glob("*.cs"))
    _mcs("-unsafe", "-target:library", f"-r:{out / 'UnityEngine.dll'}", f"-out:{out / 'ShotStream.Runtime.dll'}", *sources)
    return out


def test_package_manifest_and_asmdef():
    manifest = json.loads((PKG / "package.json").read_text())
    assert manifest["name"] == "com.shotstream.bridge"
    assert manifest["version"] == "0.1.0"
    assert manifest["unity"] == "2021.3"
    assert manifest["displayName"] and manifest["description"]
    # only Unity's own uGUI (RawImage), which ships with the editor: nothing third-party to install
    assert manifest.get("dependencies") == {"com.unity.ugui": "1.0.0"}
    asmdef = json.loads((PKG / "Runtime" / "ShotStream.Runtime.asmdef").read_text())
    assert asmdef["name"] == "ShotStream.Runtime"
    assert asmdef["allowUnsafeCode"] is True
    assert (PKG / "CHANGELOG.md").is_file()


def test_runtime_compiles_against_unity_stub(built):
    assert (built / "ShotStream.Runtime.dll").is_file()


def test_unity_layer(built):
    exe = built / "UnityLayerTests.exe"
    _mcs(f"-r:{built / 'UnityEngine.dll'}", f"-r:{built / 'ShotStream.Runtime.dll'}", f"-out:{exe}", TESTS / "UnityLayerTests.cs")
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
    if not exe.exists():
        _mcs(f"-r:{built / 'UnityEngine.dll'}", f"-r:{built / 'ShotStream.Runtime.dll'}", f"-out:{exe}", TESTS / "UnityLayerTests.cs")
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1)
    with BackgroundServer(engine, settings, grace=2.0) as server:
        proc = subprocess.run(["mono", str(exe), "live", server.gateway_url, transport], capture_output=True, text=True, timeout=300, cwd=built)
    assert proc.returncode == 0 and "LIVE OK" in proc.stdout, proc.stdout + proc.stderr


def test_editor_window_and_sample_compile(built):
    """Editor/*.cs (Editor-only asmdef referencing the runtime) compiles against the UnityEditor stub
    (tests/unity/stubs/UnityEditorStub.cs, only the editor APIs used) and the UnityEngine stub; the
    Samples~/EventShots script compiles against the runtime; package.json lists the sample."""
    asmdef = json.loads((PKG / "Editor" / "ShotStream.Editor.asmdef").read_text())
    assert asmdef["name"] == "ShotStream.Editor"
    assert asmdef["includePlatforms"] == ["Editor"] and asmdef["references"] == ["ShotStream.Runtime"]
    samples = json.loads((PKG / "package.json").read_text())["samples"]
    assert [s["path"] for s in samples] == ["Samples~/EventShots"] and all(s["displayName"] and s["description"] for s in samples)
    assert (PKG / "Samples~" / "EventShots" / "README.md").is_file()
    assert (PKG / "Documentation~" / "index.md").is_file()
    editor = built / "UnityEditor.dll"
    _mcs("-target:library", f"-r:{built / 'UnityEngine.dll'}", f"-out:{editor}", TESTS / "stubs" / "UnityEditorStub.cs")
    _mcs("-target:library", f"-r:{built / 'UnityEngine.dll'}", f"-r:{editor}", f"-r:{built / 'ShotStream.Runtime.dll'}",
         f"-out:{built / 'ShotStream.Editor.dll'}", *sorted((PKG / "Editor").glob("*.cs")))
    _mcs("-target:library", f"-r:{built / 'UnityEngine.dll'}", f"-r:{built / 'ShotStream.Runtime.dll'}",
         f"-out:{built / 'EventShotsSample.dll'}", PKG / "Samples~" / "EventShots" / "EventShotsSample.cs")
