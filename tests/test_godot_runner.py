"""The Godot 4.6 test harness itself (tests/godot_runner.py): a passing, a failing and a broken script end the
way they must, an error printed to stderr fails a run unless it is declared (and a declared one must appear),
output lines keep their order, the pinned engine is verified, nothing is left running, and the GDScript helpers
pass gdtoolkit. The runs skip only when chromium/npm are missing, and fail instead under CI (CI=true)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import godot_runner
from godot_runner import (GODOT_TESTS, EngineChecksumError, GodotRun, assert_passed, build_project, engine_available,
                          global_class_cache, require_engine, run_godot)

BLOB = bytes(range(256)) * 3 + b"\x00\xff\xfe"  # every byte value, NULs and invalid UTF-8


@pytest.fixture
def godot() -> None:
    """For the tests that start Godot: skip without chromium/npm (fail instead under CI=true)."""
    require_engine()


def _checks_in(script: Path) -> int:
    return len(re.findall(r"^\s+(?:check|eq)\(", script.read_text(), re.M))


def test_passing_script_uses_class_names_args_and_files(godot, tmp_path):
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "a.txt").write_text("nested text\n")
    script = GODOT_TESTS / "selftest_pass.gd"
    run = run_godot(script, files={"res://data/blob.bin": BLOB, "fixtures": tmp_path},
                    args={"word": "hello", "count": 3, "blob_size": len(BLOB), "blob_hex": BLOB.hex()})
    # assert_passed also means Godot printed no error at all: in particular not "Could not load global script
    # cache", which the generated cache file prevents.
    assert_passed(run)
    assert run.errors() == []
    assert run.summary() == (_checks_in(script), 0), run.output  # every check ran (none skipped by an error)
    assert run.lines[0].startswith("Godot Engine v4.6.stable.official"), run.output


def test_printed_errors_fail_the_run_unless_declared(godot):
    run = run_godot(GODOT_TESTS / "selftest_errors.gd")
    assert run.rc == 0 and run.summary() == (1, 0), run.output  # the checks alone would pass
    errors = run.errors()
    assert [e.splitlines()[0] for e in errors] == [
        "ERROR: selftest: deliberate error", "WARNING: selftest: deliberate warning",
        'ERROR: Condition "p_offset < 0 || p_offset > (int64_t(size) - 4)" is true. Returning: 0'], run.output
    assert all("\n   at: " in e for e in errors), errors  # each error keeps its location line
    with pytest.raises(AssertionError) as err:
        assert_passed(run)
    assert str(err.value).count("unexpected error") == 3, err.value

    declared = ["selftest: deliberate error", re.compile(r"^WARNING: selftest"), "func_PackedByteArray_decode_u32"]
    assert_passed(run, declared)
    with pytest.raises(AssertionError, match="unexpected error: 'WARNING: selftest"):
        assert_passed(run, declared[::2])  # one left undeclared
    with pytest.raises(AssertionError, match="expected error never printed: 'Buffer payload full'"):
        assert_passed(run, [*declared, "Buffer payload full"])
    # what run_godot is told is the default; an expected error the run never prints fails it
    assert_passed(run_godot(GODOT_TESTS / "selftest_errors.gd", expected_errors=declared))
    clean = run_godot(GODOT_TESTS / "selftest_fail.gd", expected_errors=["selftest: deliberate error"])
    assert clean.error_problems() == ["expected error never printed: 'selftest: deliberate error'"]


def test_error_records_group_location_lines():
    run = GodotRun(rc=0, output="", lines=[
        "ERR: ERROR: first", "ERR:    at: f (a.cpp:1)", "printed", "ERR: WARNING: second", "ERR:    at: g (b.cpp:2)",
        "ERR: plain printerr"])
    assert run.errors() == ["ERROR: first\n   at: f (a.cpp:1)", "WARNING: second\n   at: g (b.cpp:2)",
                            "plain printerr"]
    assert run.error_problems(["first", re.compile("second$", re.M), "printerr"]) == []
    assert run.error_problems([re.compile("^at:")]) == [
        "unexpected error: 'ERROR: first\\n   at: f (a.cpp:1)'",
        "unexpected error: 'WARNING: second\\n   at: g (b.cpp:2)'", "unexpected error: 'plain printerr'",
        "expected error never printed: re.compile('^at:')"]


def test_a_log_batch_is_recorded_before_the_page_gets_its_answer(tmp_path):
    # The page posts its next batch only after this one is answered; answering before recording would let two
    # batches be recorded out of order. So the reply must not reach the page while feed() runs: feed() looks for
    # it for a moment (a reply sent first arrives within microseconds on loopback; the right order sends none),
    # and the page reads its reply only after that look.
    relay = godot_runner._Relay()
    pages: list[socket.socket] = []
    answered_before_recorded: list[bool] = []
    looked = threading.Event()
    feed = relay.feed

    def checking_feed(batch: list[list[str]]) -> None:
        answered_before_recorded.append(bool(select.select(pages[-1:], [], [], 0.25)[0]))
        looked.set()
        feed(batch)

    relay.feed = checking_feed
    server = godot_runner._serve(tmp_path, b"", relay)
    try:
        for n in range(2):  # one connection per POST, as the runner's HTTP/1.0 server answers
            looked.clear()
            pages.append(socket.create_connection(server.server_address, timeout=10))
            body = json.dumps([["OUT", f"line {n}"], ["ERR", "oops"]]).encode()
            pages[-1].sendall(b"POST /log HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            assert looked.wait(10)
            reply = pages[-1].makefile("rb").readline()
            assert reply.split(b" ")[1] == b"204", reply
    finally:
        server.shutdown()
        server.server_close()
        for sock in pages:
            sock.close()
    assert answered_before_recorded == [False, False]
    assert relay.lines == ["line 0", "ERR: oops", "line 1", "ERR: oops"]


def test_failing_check_gives_rc_1_and_a_fail_line(godot):
    run = run_godot(GODOT_TESTS / "selftest_fail.gd")
    assert run.rc == 1, run.output
    assert "FAIL deliberately wrong sum: expected 2, got 3" in run.lines, run.output
    assert run.summary() == (1, 1)
    with pytest.raises(AssertionError, match="FAIL deliberately wrong sum"):
        assert_passed(run)


def test_type_error_fails_fast_with_its_location(godot):
    timeout = 90.0
    started = time.monotonic()
    run = run_godot(GODOT_TESTS / "selftest_type_error.gd", timeout=timeout)
    elapsed = time.monotonic() - started
    assert run.rc == 1, run.output
    assert "SCRIPT ERROR: Parse Error" in run.output
    assert "res://tests/selftest_type_error.gd:6" in run.output  # the 'at:' line arrives with the error
    assert run.summary() is None
    assert elapsed < timeout / 3, f"took {elapsed:.1f} s: it waited instead of failing fast"
    with pytest.raises(AssertionError, match="SCRIPT ERROR"):
        assert_passed(run)


def test_headless_flag_picks_the_display_server(godot):
    windowed = run_godot(GODOT_TESTS / "selftest_windowed.gd", headless=False)
    assert_passed(windowed)
    assert "WebGL 2.0" in windowed.output  # Godot's renderer banner
    headless = run_godot(GODOT_TESTS / "selftest_windowed.gd")
    assert headless.rc == 1 and "FAIL a real display server" in headless.lines, headless.output


def test_corrupt_cached_engine_is_refused_and_deleted(godot, tmp_path, monkeypatch):
    real = godot_runner.ensure_engine()
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in godot_runner.ENGINE_FILES:
        shutil.copyfile(real / name, cache / name)
    corrupt = (real / "index.js").read_bytes() + b"\n"
    (cache / "index.js").write_bytes(corrupt)
    monkeypatch.setenv("SHOTSTREAM_GODOT_WEB", str(cache))

    with pytest.raises(EngineChecksumError) as err:
        run_godot(GODOT_TESTS / "selftest_pass.gd")
    message = str(err.value)
    assert godot_runner.ENGINE_FILES["index.js"] in message  # expected
    assert hashlib.sha256(corrupt).hexdigest() in message  # got
    assert str(cache / "index.js") in message
    assert not (cache / "index.js").exists()  # never used again: the next run fetches a good copy
    assert (cache / "index.wasm").exists()


# Runs one Godot test as a child subreaper: processes orphaned by Chromium (its crashpad handlers setsid away)
# are re-parented to it instead of to init, so any descendant still alive after run_godot returns is a leak.
_LEAK_PROBE = """
import ctypes, json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import godot_runner
PR_SET_CHILD_SUBREAPER = 36
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
run = godot_runner.run_godot(Path(sys.argv[2]))
while True:  # reap the descendants that already exited; they are not leaks
    try:
        if os.waitpid(-1, os.WNOHANG) == (0, 0):
            break
    except ChildProcessError:
        break
alive = []
for task in Path("/proc/self/task").iterdir():
    for pid in (task / "children").read_text().split():
        alive.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\\0", b" ").decode(errors="replace"))
print(json.dumps({"rc": run.rc, "output": run.output, "alive": alive}))
"""


def test_no_processes_or_temp_dirs_left_behind(godot):
    # A short TMPDIR: Chromium's singleton socket path (under TMPDIR) must stay under about 107 characters.
    with tempfile.TemporaryDirectory(prefix="sgr-") as tmpdir:
        proc = subprocess.run([sys.executable, "-c", _LEAK_PROBE, str(Path(__file__).parent),
                               str(GODOT_TESTS / "selftest_fail.gd")],
                              capture_output=True, text=True, timeout=180, env={**os.environ, "TMPDIR": tmpdir})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout.splitlines()[-1])
        assert result["rc"] == 1, result["output"]  # it really ran Godot
        assert result["alive"] == []
        assert list(Path(tmpdir).iterdir()) == []


def test_engine_trap_is_a_javascript_error(godot):
    run = run_godot(GODOT_TESTS / "selftest_trap.gd", args={"zero": 0}, timeout=90)
    assert run.rc == 99, run.output  # not 124: the JavaScript error ended the run, it did not time out
    assert "JSERR: RuntimeError: divide by zero" in run.lines, run.output
    assert "FAIL never reached" not in run.output


def test_chromium_dying_ends_the_run_at_once(godot, tmp_path, monkeypatch):
    # Chromium aborts at start-up when its singleton socket path is too long; the run must notice, not wait.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / ("long" * 20)))
    (tmp_path / ("long" * 20)).mkdir()
    timeout = 90.0
    started = time.monotonic()
    run = run_godot(GODOT_TESTS / "selftest_fail.gd", timeout=timeout)
    assert run.rc == 99, run.output
    assert "HARNESS: chromium exited with code" in run.output
    assert "Socket path too long" in run.output  # Chromium's own log tail says why
    assert time.monotonic() - started < timeout / 3


def test_missing_tools_skip_locally_and_fail_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOTSTREAM_GODOT_WEB", str(tmp_path / "empty-cache"))
    tools = {"chromium": None, "npm": "/usr/bin/npm"}
    monkeypatch.setattr(godot_runner.shutil, "which", lambda name: tools.get(name))
    assert "chromium" in (engine_available() or "")

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        require_engine()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium"):
        require_engine()

    tools.update(chromium="/usr/bin/chromium", npm=None)
    assert "npm" in (engine_available() or "")  # nothing cached and nothing to fetch it with
    (tmp_path / "empty-cache").mkdir()
    for name in godot_runner.ENGINE_FILES:
        (tmp_path / "empty-cache" / name).write_bytes(b"")
    assert engine_available() is None  # cached: npm is not needed (run_godot still verifies the checksums)
    require_engine()


def test_project_holds_addon_helpers_files_and_args(tmp_path, monkeypatch):
    addon = tmp_path / "addon"
    (addon / "icons").mkdir(parents=True)
    (addon / "plugin.cfg").write_text('[plugin]\nname="ShotStream"\n')
    (addon / "icons" / "logo.svg").write_bytes(b"<svg/>\x00\xff")
    monkeypatch.setattr(godot_runner, "ADDON", addon)
    extra = tmp_path / "extra.bin"
    extra.write_bytes(BLOB)
    script = tmp_path / "test_outside.gd"
    script.write_text('extends "res://tests/test_base.gd"\n')

    project = build_project(script, files={"a/b.bin": b"\x01", "res://c.bin": extra}, args={"url": "ws://x"})
    assert project["addons/shotstream/plugin.cfg"] == (addon / "plugin.cfg").read_bytes()
    assert project["addons/shotstream/icons/logo.svg"] == b"<svg/>\x00\xff"
    assert project["tests/test_base.gd"] == (GODOT_TESTS / "test_base.gd").read_bytes()
    assert project["tests/test_outside.gd"] == script.read_bytes()
    assert project["a/b.bin"] == b"\x01" and project["c.bin"] == BLOB
    assert json.loads(project["args.json"]) == {"url": "ws://x"}
    assert 'path="res://tests/test_outside.gd"' in project["main.tscn"].decode()
    assert 'run/main_scene="res://main.tscn"' in project["project.godot"].decode()
    assert "args.json" not in build_project(script)

    monkeypatch.setattr(godot_runner, "ADDON", tmp_path / "not-written-yet")
    assert not [k for k in build_project(script) if k.startswith("addons/")]
    with pytest.raises(ValueError, match="res-relative"):
        build_project(script, files={"../outside.txt": b""})


def test_class_cache_entries_match_what_the_editor_writes():
    project = {
        "a/base.gd": b'@tool\n@icon("res://icon.svg")\nclass_name Base\nextends Node\n'
                     b"\nclass Inner:\n\textends Object\n"  # an inner class's extends is not the file's
                     b"\n@abstract\nfunc later() -> void\n",  # an @abstract that belongs to a method
        "a/mid.gd": b'extends "res://a/base.gd"\n',  # no class_name: not listed, but passes Base on
        "a/leaf.gd": b'class_name Leaf extends "res://a/mid.gd"\n',
        "a/plain.gd": b"@abstract\nclass_name Plain\n",
        "a/other.txt": b"class_name NotAScript\n",
    }
    text = global_class_cache(project).decode()
    assert text.startswith("list=Array[Dictionary]([{") and text.endswith("}])\n")
    entries = re.findall(r"\{\n(.*?)\n\}", text, re.S)
    parsed = [dict(re.fullmatch(r'"(\w+)": (.*)', line).groups() for line in e.split(",\n")) for e in entries]
    assert parsed == [
        {"base": '&"Node"', "class": '&"Base"', "icon": '"res://icon.svg"', "is_abstract": "false",
         "is_tool": "true", "language": '&"GDScript"', "path": '"res://a/base.gd"'},
        {"base": '&"Base"', "class": '&"Leaf"', "icon": '""', "is_abstract": "false", "is_tool": "false",
         "language": '&"GDScript"', "path": '"res://a/leaf.gd"'},
        {"base": '&"RefCounted"', "class": '&"Plain"', "icon": '""', "is_abstract": "true", "is_tool": "false",
         "language": '&"GDScript"', "path": '"res://a/plain.gd"'},
    ]


def test_summary_takes_the_last_summary_line():
    run = GodotRun(rc=0, output="", lines=["3 passed, 1 failed", "noise", "5 passed, 0 failed", "bye"])
    assert run.summary() == (5, 0)
    assert GodotRun(rc=0, output="", lines=["nothing"]).summary() is None


@pytest.mark.parametrize("tool", ["gdparse", "gdlint", "gdformat"])
def test_gdscript_helpers_pass_gdtoolkit(tool):
    binary = Path(sys.executable).parent / tool
    assert binary.exists(), f"{binary} missing: gdtoolkit is pinned in requirements/lock.txt (scripts/setup.sh)"
    scripts = sorted(map(str, GODOT_TESTS.glob("*.gd")))
    assert scripts
    extra = ["--check"] if tool == "gdformat" else []
    proc = subprocess.run([str(binary), *extra, *scripts], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
