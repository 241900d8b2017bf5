"""Unity plugin core (C#): RingReader + JitterBuffer under mono, and the C# ring reader against a
real Python FrameRing writer running in another process (tests/unity/ring_writer.py).

Needs ``mcs`` and ``mono`` (Debian: ``apt-get install -y --no-install-recommends mono-mcs``);
skipped without them. Sources must stay within C# 7.2 (mcs's ceiling).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "unity_plugin" / "com.shotstream.bridge" / "Runtime" / "Core"
SOURCES = [CORE / "RingReader.cs", CORE / "JitterBuffer.cs", ROOT / "tests" / "unity" / "RingJitterTests.cs"]
WRITER = ROOT / "tests" / "unity" / "ring_writer.py"

sys.path.insert(0, str(WRITER.parent))
from line_process import LineProcess  # noqa: E402
from ring_writer import chunk, fnv1a64  # noqa: E402
from system_tools import require_mono  # noqa: E402

MCS, MONO = shutil.which("mcs"), shutil.which("mono")
TIMEOUT = 30


@pytest.fixture(scope="module", autouse=True)
def _mono():
    require_mono()



@pytest.fixture(scope="module")
def exe(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unity_ring") / "RingJitterTests.exe"
    res = subprocess.run([MCS, "-langversion:7.2", "-unsafe", "-warnaserror+", f"-out:{out}", *map(str, SOURCES)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def child(args: list[str]) -> LineProcess:
    return LineProcess(args, ROOT, TIMEOUT)


@pytest.fixture
def writer_factory():
    procs: list[LineProcess] = []

    def make(slots: int, payload: int) -> tuple[LineProcess, list[str]]:
        w = child([sys.executable, str(WRITER), str(slots), str(payload)])
        procs.append(w)
        head = w.get().split()
        assert head[0] == "layout", head
        return w, head[1:]

    yield make
    for w in procs:
        if w.proc.poll() is None:
            w.send("quit")
            assert w.get() == "bye"
            w.close()


def reader(exe: Path, layout: list[str]) -> LineProcess:
    r = child([MONO, str(exe), "--follow", *layout])
    return r


def test_csharp_unit_tests(exe):
    res = subprocess.run([MONO, str(exe)], capture_output=True, text=True, timeout=120)
    last = res.stdout.strip().splitlines()[-1]
    assert res.returncode == 0 and last.endswith(" passed, 0 failed"), res.stdout + res.stderr
    assert int(last.split()[0]) >= 16


def _write(w: LineProcess, slot: int, seq: int, shape) -> tuple[int, int, str]:
    ans = w.ask(f"write {slot} {seq} {' '.join(map(str, shape))}").split()
    assert ans[0] == "wrote", ans
    return int(ans[1]), int(ans[2]), ans[3]


def test_reads_python_chunks_and_reports_stale_when_lapped(exe, writer_factory):
    shape = (3, 16, 20, 3)
    w, layout = writer_factory(2, 3 * 16 * 20 * 4)
    r = reader(exe, layout)
    try:
        refs = {seq: _write(w, seq % 2, seq, shape) for seq in range(4)}
        for seq in (2, 3):  # the newest chunk in each slot
            off, n, h = refs[seq]
            assert h == f"{fnv1a64(chunk(seq, shape).tobytes()):016x}"
            assert r.ask(f"{seq % 2} {seq} {off} {n}") == f"ok {h} {n}"
        for seq in (0, 1):  # a slow reader: the writer lapped it
            off, n, _ = refs[seq]
            assert r.ask(f"{seq % 2} {seq} {off} {n}").split()[0] == "stale"
        # lapped *while copying*: the reader copies chunk 2, the writer reuses slot 0 for chunk 4,
        # then the reader's final seq_begin check must reject the copy
        off, n, _ = refs[2]
        assert r.ask(f"0 2 {off} {n} pause") == "copied"
        _write(w, 0, 4, shape)
        assert r.ask("go").split() == ["stale", "9", "6"]  # begin re-read after the copy; end from R1
        # the same pause without an interleaved write is accepted
        off, n, h = refs[3]
        assert r.ask(f"1 3 {off} {n} pause") == "copied"
        assert r.ask("go") == f"ok {h} {n}"
        # a ref that does not fit the layout
        assert r.ask(f"0 4 {off} {n}") == "badref"
        assert r.ask(f"0 4 {refs[2][0]} {n - 1}") == "mismatch"
    finally:
        assert r.close() == 0


def test_torn_write_is_stale_never_wrong_data(exe, writer_factory):
    shape = (2, 8, 8, 4)
    w, layout = writer_factory(2, 2 * 8 * 8 * 4)
    r = reader(exe, layout)
    try:
        off, n, h5 = _write(w, 1, 5, shape)
        assert r.ask(f"1 5 {off} {n}") == f"ok {h5} {n}"
        assert w.ask("begin 1 7") == "begun"  # seq_begin = 15, seq_end still 12
        assert r.ask(f"1 7 {off} {n}").split() == ["stale", "15", "12"]
        assert r.ask(f"1 5 {off} {n}").split() == ["stale", "15", "12"]
        assert r.ask(f"latest 1 {off} {n}").split()[0] == "stale"  # committed 5, but 7 has begun
        _, _, h7 = _write(w, 1, 7, shape)  # the write completes
        assert r.ask(f"1 7 {off} {n}") == f"ok {h7} {n}"
        assert r.ask(f"latest 1 {off} {n}") == f"ok {h7} {n} 7"
        assert r.ask(f"latest 0 {layout_pixels(layout, 0)} {n}") == "none"
    finally:
        assert r.close() == 0


def layout_pixels(layout: list[str], slot: int) -> int:
    _, _, slot_bytes, header_bytes, slot_header_bytes = layout
    return int(header_bytes) + slot * int(slot_bytes) + int(slot_header_bytes)


def test_concurrent_writer_never_yields_wrong_bytes(exe, writer_factory):
    """The Python writer laps the ring as fast as it can while C# keeps reading each slot's latest
    chunk: every accepted read must hash exactly like that chunk; the rest must be stale."""
    shape = (2, 32, 32, 4)
    n = 2 * 32 * 32 * 4
    slots = 2
    w, layout = writer_factory(slots, n)
    r = reader(exe, layout)
    offsets = [layout_pixels(layout, s) for s in range(slots)]
    results: list[list[str]] = []
    try:
        for rnd in range(3):
            w.send(f"spin {1 + rnd * 4000} 4000 {' '.join(map(str, shape))}")
            done = False
            i = 0
            while not done:
                s = i % slots
                results.append(r.ask(f"latest {s} {offsets[s]} {n}").split())
                i += 1
                if i % 16 == 0 and w.has_line():
                    assert w.get() == "spun"
                    done = True
    finally:
        assert r.close() == 0
    ok = [x for x in results if x[0] == "ok"]
    stale = [x for x in results if x[0] == "stale"]
    assert len(ok) + len(stale) + sum(x == ["none"] for x in results) == len(results), set(x[0] for x in results)
    assert len(ok) > 50, (len(ok), len(stale))
    hashes: dict[int, str] = {}
    for _, h, length, seq in ok:
        seq = int(seq)
        assert int(length) == n
        if seq not in hashes:
            hashes[seq] = f"{fnv1a64(chunk(seq, shape).tobytes()):016x}"
        assert h == hashes[seq], f"chunk {seq}: C# read wrong bytes"
    print(f"{len(results)} reads: {len(ok)} ok ({len(hashes)} distinct chunks), {len(stale)} stale")


def test_layout_mismatch_and_missing_file(exe, writer_factory, tmp_path):
    w, layout = writer_factory(3, 1000)
    bad = list(layout)
    bad[1] = "4"  # slot count differs from the file header
    res = subprocess.run([MONO, str(exe), "--follow", *bad], capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 2 and res.stdout.startswith("error InvalidDataException"), res.stdout
    res = subprocess.run([MONO, str(exe), "--follow", str(tmp_path / "none.ring"), *layout[1:]],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 2 and res.stdout.startswith("error FileNotFoundException"), res.stdout
    not_ring = tmp_path / "not.ring"
    not_ring.write_bytes(b"\0" * (int(layout[3]) + 3 * int(layout[2])))
    res = subprocess.run([MONO, str(exe), "--follow", str(not_ring), *layout[1:]],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 2 and "bad magic" in res.stdout, res.stdout
