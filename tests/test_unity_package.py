"""The Unity package unity_plugin/com.shotstream.bridge as a whole: the UPM manifest and assembly
definition parse with the expected names; Runtime/Core + Runtime/Unity compile (C# 7.2, unsafe,
warnings as errors) against tests/unity/stubs/UnityEngineStub.cs, a stub of only the UnityEngine APIs
the package uses (so a call to a missing API fails here); tests/unity/UnityLayerTests.cs runs under
mono. Skips only when mcs/mono are missing (apt-get install -y --no-install-recommends mono-mcs)."""
import json
import re
import shutil
import subprocess
import sys
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
    assert asmdef["references"] == ["ShotStream.Runtime", "UnityEngine.TestRunner", "UnityEditor.TestRunner"]
    assert asmdef["includePlatforms"] == ["Editor"]
    assert asmdef["overrideReferences"] is True and asmdef["precompiledReferences"] == ["nunit.framework.dll"]
    assert asmdef["defineConstraints"] == ["UNITY_INCLUDE_TESTS"] and asmdef["autoReferenced"] is False
    nunit = _nunit(built)
    sources = sorted((PKG / "Tests").rglob("*.cs"))
    dll = built / "ShotStream.Tests.dll"
    _mcs("-target:library", f"-r:{built / 'UnityEngine.dll'}", f"-r:{built / 'ShotStream.Runtime.dll'}", f"-r:{nunit}",
         f"-out:{dll}", *sources)
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
    _mcs("-target:library", f"-r:{built / 'ShotStream.Runtime.dll'}", f"-r:{nunit}", f"-out:{dll}", src)
    for dep in ("ShotStream.Runtime.dll", "UnityEngine.dll", "nunit.framework.dll"):
        (tmp_path / dep).write_bytes((built / dep).read_bytes())
    passed, failed, out = _run_nunit(built, dll)
    assert (passed, failed) == (1, 3), out
    assert "FAIL Failing.WrongValue: AssertionException: Expected: 3" in out, out


IMPORTER = {".cs": "MonoImporter", ".asmdef": "AssemblyDefinitionImporter", ".md": "TextScriptImporter", ".json": "TextScriptImporter"}


def test_every_shipped_asset_has_a_meta():
    """Unity ignores an asset without a .meta in an immutable (git URL) package: every file and folder the
    package ships outside ~ folders has one, with a valid GUID unique in the package and the importer for
    its type; no .meta is left without its asset; and they are exactly what unity_plugin/tools/make_meta.py
    writes (so GUIDs never change: run it after adding or renaming a file)."""
    shipped = sorted(p for p in PKG.rglob("*") if p.suffix != ".meta"
                     and not any(part.startswith(".") or part.endswith("~") for part in p.relative_to(PKG).parts))
    assert {"package.json", "Runtime", "Runtime/Core/Messages.cs", "Editor/ShotStream.Editor.asmdef", "Tests/Editor"} <= {
        p.relative_to(PKG).as_posix() for p in shipped}
    guids: dict[str, Path] = {}
    for asset in shipped:
        meta = asset.with_name(asset.name + ".meta")
        assert meta.is_file(), f"{asset.relative_to(PKG)} has no .meta (run unity_plugin/tools/make_meta.py)"
        text = meta.read_text()
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
    metas = sorted(PKG.rglob("*.meta"))
    orphans = [m.relative_to(PKG) for m in metas if not m.with_suffix("").exists()]
    assert not orphans, f"orphaned .meta files: {orphans}"
    inside_tilde = [m.relative_to(PKG) for m in metas if any(part.endswith("~") for part in m.relative_to(PKG).parts)]
    assert not inside_tilde, f"Unity ignores ~ folders: {inside_tilde}"
    assert not (PKG.parent / "com.shotstream.bridge.meta").exists(), "the package root has no .meta"
    check = subprocess.run([sys.executable, str(ROOT / "unity_plugin" / "tools" / "make_meta.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
