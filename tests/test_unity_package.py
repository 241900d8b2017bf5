"""The Unity package unity_plugin/com.shotstream.bridge as a whole: the UPM manifest and assembly
definition parse with the expected names; Runtime/Core + Runtime/Unity compile (C# 7.2, unsafe,
warnings as errors) against tests/unity/stubs/UnityEngineStub.cs, a stub of only the UnityEngine APIs
the package uses (so a call to a missing API fails here); tests/unity/UnityLayerTests.cs runs under
mono; every shipped asset has its .meta; and the sample scene (Samples~/EventShots/EventShots.unity) is
checked as Unity YAML against the C# classes it uses. The tests that compile or run C# skip only when
mcs/mono are missing (apt-get install -y --no-install-recommends mono-mcs); the others always run."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "unity_plugin" / "com.shotstream.bridge"
TESTS = ROOT / "tests" / "unity"
MCS = ["mcs", "-langversion:7.2", "-warnaserror+"]

HAVE_MONO = bool(shutil.which("mcs") and shutil.which("mono"))
NO_MONO = "mcs/mono not installed (apt-get install -y --no-install-recommends mono-mcs)"


def _mcs(*args) -> None:
    proc = subprocess.run([*MCS, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    if not HAVE_MONO:
        pytest.skip(NO_MONO)
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


IMPORTER = {".cs": "MonoImporter", ".asmdef": "AssemblyDefinitionImporter", ".md": "TextScriptImporter", ".json": "TextScriptImporter",
            ".unity": "DefaultImporter"}


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
    what unity_plugin/tools/make_meta.py writes (so GUIDs never change: run it after adding or renaming a
    file)."""
    shipped = sorted(p for p in PKG.rglob("*") if _needs_meta(p.relative_to(PKG)))
    assert {"package.json", "Runtime", "Runtime/Core/Messages.cs", "Editor/ShotStream.Editor.asmdef", "Tests/Editor",
            "Samples~/EventShots/EventShots.unity", "Samples~/EventShots/EventShotsSample.cs",
            "Samples~/EventShots/README.md", "Samples~/EventShots/EventShotsPromptMap.json"} <= {
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
                if path == ".m_Script":
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
            value = fields[key]
            where = f"&{fid} {cs.stem}.{key} ({ftype}) = {value!r}"
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
            else:  # a UnityEngine.Object reference
                assert isinstance(value, dict) and set(value) == {"fileID"}, where

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
    assert client["transport"] == "1" and client["frameFormat"] == "2"  # ShotTransport.Inline, ShotFrameFormat.Rgba8
    assert client["connectOnStart"] == "1" and client["globalCaption"].strip()
    assert ref(director["promptMap"]) == 0  # the sample builds EventShotsPromptMap.json's map in code
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
