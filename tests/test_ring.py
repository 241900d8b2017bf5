"""Shared-memory frame ring (service/ring.py): layout, seqlock safety across processes and languages, cleanup."""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from service import ring as ring_mod
from service.protocol import pb
from service.ring import (HEADER_BYTES, LAYOUT_VERSION, MAGIC, SLOT_HEADER_BYTES, FrameRing, RingReader,
                          StaleSlotError, cleanup_stale_rings)

REPO = Path(__file__).resolve().parents[1]
C_SOURCE = Path(__file__).with_name("ring_reader.c")
MASK64 = (1 << 64) - 1


# -- helpers (module level: spawned processes import them) ----------------------------------------

@functools.lru_cache(maxsize=64)
def _pattern(key: int, size: int) -> bytes:
    """Deterministic content for a chunk; neighbouring keys differ in (almost) every byte."""
    return ((np.arange(size, dtype=np.uint32) * 7 + key * 131 + (key >> 8)) % 251).astype(np.uint8).tobytes()


def chunk(seq: int, shape=(2, 8, 12, 3), modulo: int | None = None) -> np.ndarray:
    size = int(np.prod(shape))
    return np.frombuffer(_pattern(seq if modulo is None else seq % modulo, size), np.uint8).reshape(shape)


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def ref_for(ring: FrameRing, slot: int, seq: int, offset_length: tuple[int, int]) -> pb.RingSlot:
    return pb.RingSlot(slot=slot, sequence=seq, offset=offset_length[0], length=offset_length[1])


def _follow_reader(layout_bytes: bytes, conn, shape, modulo) -> None:
    """Another process: read every ref it is sent and report ok / stale / wrong (never expected)."""
    layout = pb.RingLayout.FromString(layout_bytes)
    with RingReader(layout) as reader:
        buf = np.empty(reader.capacity, np.uint8)
        conn.send(("ready", -1, -1))
        while True:
            msg = conn.recv()
            if msg is None:
                break
            ref = pb.RingSlot.FromString(msg)
            try:
                got = reader.read(ref, out=buf)
            except StaleSlotError:
                conn.send(("stale", ref.slot, ref.sequence))
                continue
            ok = got.tobytes() == chunk(ref.sequence, shape, modulo).tobytes()
            conn.send(("ok" if ok else "wrong", ref.slot, ref.sequence))
    conn.close()


@pytest.fixture
def ring(tmp_path):
    r = FrameRing("sess01", 3, 2 * 8 * 12 * 3, directory=tmp_path)
    yield r
    r.close()


# -- single process ------------------------------------------------------------------------------

def test_round_trip_layout_and_mode(ring, tmp_path):
    lay = ring.layout()
    assert isinstance(lay, pb.RingLayout)
    assert Path(lay.path) == ring.path and ring.path.parent == tmp_path
    assert ring.path.name == f"shotstream-{os.getpid()}-sess01.ring"
    assert (lay.layout_version, lay.slot_count, lay.header_bytes, lay.slot_header_bytes) == \
        (LAYOUT_VERSION, 3, HEADER_BYTES, SLOT_HEADER_BYTES)
    assert lay.slot_bytes % 64 == 0 and lay.slot_bytes >= SLOT_HEADER_BYTES + 2 * 8 * 12 * 3
    st = os.stat(ring.path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == lay.header_bytes + lay.slot_count * lay.slot_bytes

    raw = ring.path.read_bytes()
    magic, version, hb, sc, shb, sb, pid = struct.unpack_from("<8sIIIIQI", raw, 0)
    assert (magic, version, hb, sc, shb, sb, pid) == (MAGIC, 1, HEADER_BYTES, 3, SLOT_HEADER_BYTES, lay.slot_bytes,
                                                      os.getpid())
    assert raw[64:128].rstrip(b"\0") == b"sess01"

    frames = chunk(5)
    offset, length = ring.write(1, 5, frames)
    assert offset == HEADER_BYTES + lay.slot_bytes + SLOT_HEADER_BYTES and offset % 64 == 0
    assert length == frames.nbytes
    # slot header as documented
    raw = ring.path.read_bytes()
    base = HEADER_BYTES + lay.slot_bytes
    assert struct.unpack_from("<QQQIIIIQ", raw, base) == (11, 12, 5, 2, 8, 12, 3, length)

    with RingReader(lay) as reader:
        ref = ref_for(ring, 1, 5, (offset, length))
        got = reader.read(ref)
        assert got.dtype == np.uint8 and got.ndim == 1
        assert np.array_equal(got.reshape(frames.shape), frames)
        buf = np.zeros(reader.capacity + 10, np.uint8)
        got2 = reader.read(ref, out=buf)
        assert np.shares_memory(got2, buf) and got2.tobytes() == frames.tobytes()
        assert reader.slot_info(ref) == {"num_frames": 2, "height": 8, "width": 12, "channels": 3,
                                         "payload_length": length}


def test_close_removes_file_and_is_idempotent(tmp_path):
    r = FrameRing("gone", 2, 100, directory=tmp_path)
    path = r.path
    assert path.exists()
    r.close()
    assert not path.exists() and r.closed
    r.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        r.write(0, 1, np.zeros((1, 2, 2, 3), np.uint8))
    with FrameRing("ctx", 1, 100, directory=tmp_path) as r2:
        p2 = r2.path
    assert not p2.exists()


def test_default_directory_is_dev_shm_when_writable():
    r = FrameRing("defaultdir", 1, 64)
    try:
        shm = Path("/dev/shm")
        expected = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(ring_mod.tempfile.gettempdir())
        assert r.path.parent == expected and r.path.is_absolute()
        assert stat.S_IMODE(os.stat(r.path).st_mode) == 0o600
    finally:
        r.close()
    assert not r.path.exists()


def test_session_id_is_sanitized_and_exclusive(tmp_path):
    with FrameRing("../evil/id with spaces", 1, 64, directory=tmp_path) as r:
        assert r.path.parent == tmp_path
        assert ring_mod._NAME_RE.match(r.path.name)
        with pytest.raises(FileExistsError):  # O_EXCL: never reuse or follow an existing file
            FrameRing("../evil/id with spaces", 1, 64, directory=tmp_path)


def test_bad_writes_raise(ring):
    cap = ring.capacity
    with pytest.raises(ValueError, match="does not fit"):
        ring.write(0, 1, np.zeros((1, 1, cap + 1, 1), np.uint8))
    ring.write(0, 1, np.zeros((1, 1, cap, 1), np.uint8))  # exactly full is fine
    for bad_slot in (-1, 3, 99):
        with pytest.raises(ValueError, match="slot"):
            ring.write(bad_slot, 2, chunk(2))
    with pytest.raises(ValueError):
        ring.write(0, 2, chunk(2).astype(np.float32))
    with pytest.raises(ValueError):
        ring.write(0, 2, chunk(2)[0])
    with pytest.raises(ValueError, match="not after"):
        ring.write(0, 1, chunk(1))  # sequences only grow per slot
    with pytest.raises(ValueError):
        ring.write(0, -5, chunk(1))


def test_constructor_rejects_bad_sizes(tmp_path):
    with pytest.raises(ValueError):
        FrameRing("a", 0, 100, directory=tmp_path)
    with pytest.raises(ValueError):
        FrameRing("a", 2, 0, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_reader_rejects_bad_refs(ring):
    off, n = ring.write(0, 1, chunk(1))
    with RingReader(ring.layout()) as reader:
        with pytest.raises(ValueError):
            reader.read(pb.RingSlot(slot=3, sequence=1, offset=off, length=n))
        with pytest.raises(ValueError):
            reader.read(pb.RingSlot(slot=0, sequence=1, offset=off + 64, length=n))
        with pytest.raises(ValueError):
            reader.read(pb.RingSlot(slot=0, sequence=1, offset=off, length=reader.capacity + 1))
        with pytest.raises(ValueError, match="does not match"):
            reader.read(pb.RingSlot(slot=0, sequence=1, offset=off, length=n - 1))
        with pytest.raises(ValueError):
            reader.read(pb.RingSlot(slot=0, sequence=1, offset=off, length=n), out=np.empty(n - 1, np.uint8))
        # never-written slot: stale, not zeros
        off1 = off + ring.slot_bytes
        with pytest.raises(StaleSlotError):
            reader.read(pb.RingSlot(slot=1, sequence=2, offset=off1, length=n))
    bad = ring.layout()
    bad.slot_count = 4
    with pytest.raises(ValueError, match="does not match"):
        RingReader(bad)


def test_lapped_reader_gets_stale_never_wrong_data(ring):
    ol1 = ring.write(0, 1, chunk(1))
    ref1 = ref_for(ring, 0, 1, ol1)
    with RingReader(ring.layout()) as reader:
        assert reader.read(ref1).tobytes() == chunk(1).tobytes()
        ol3 = ring.write(0, 3, chunk(3))  # the writer laps the reader
        with pytest.raises(StaleSlotError) as info:
            reader.read(ref1)
        assert (info.value.slot, info.value.expected, info.value.seq_end) == (0, 1, 8)
        assert reader.read(ref_for(ring, 0, 3, ol3)).tobytes() == chunk(3).tobytes()


def test_torn_write_is_stale(ring):
    ol1 = ring.write(0, 1, chunk(1))
    with RingReader(ring.layout()) as reader:
        ring._begin_only(0, 2)  # seq_begin says "writing 2", seq_end still says "1 complete"
        with pytest.raises(StaleSlotError):
            reader.read(ref_for(ring, 0, 1, ol1))
        with pytest.raises(StaleSlotError):  # and 2 is not complete yet
            reader.read(ref_for(ring, 0, 2, ol1))
        # pixels half overwritten as well: still stale, never mixed
        base = ring.slot_offset(0) + SLOT_HEADER_BYTES
        ring._state["u8"][base:base + ol1[1] // 2] = 0
        with pytest.raises(StaleSlotError):
            reader.read(ref_for(ring, 0, 1, ol1))
        ol2 = ring.write(0, 2, chunk(2))  # the write completes
        assert reader.read(ref_for(ring, 0, 2, ol2)).tobytes() == chunk(2).tobytes()


def test_overwrite_while_copying_is_stale(ring):
    """Deterministic interleaving: the writer rewrites the slot between two halves of the reader's copy."""
    ol1 = ring.write(0, 1, chunk(1))
    with RingReader(ring.layout()) as reader:
        def racing_copy(src, dst):
            half = len(src) // 2
            dst[:half] = src[:half]
            ring.write(0, 4, chunk(4))
            dst[half:] = src[half:]

        reader._copy = racing_copy
        with pytest.raises(StaleSlotError, match="while copying"):
            reader.read(ref_for(ring, 0, 1, ol1))


def test_copy_overlapping_an_unfinished_overwrite_is_stale(ring):
    """The reader's copy ends while a newer write is still in progress (begun, pixels half written,
    seq_end still the old value): only the final seq_begin check can see it."""
    ol1 = ring.write(0, 1, chunk(1))
    with RingReader(ring.layout()) as reader:
        def racing_copy(src, dst):
            half = len(src) // 2
            dst[:half] = src[:half]
            ring._begin_only(0, 4)
            ring._state["u8"][ol1[0] + half:ol1[0] + ol1[1]] = 0
            dst[half:] = src[half:]

        reader._copy = racing_copy
        with pytest.raises(StaleSlotError, match="while copying"):
            reader.read(ref_for(ring, 0, 1, ol1))


# -- another Python process -----------------------------------------------------------------------

def _run_follower(ring, shape, modulo, n_seq, max_unreplied):
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_follow_reader, args=(ring.layout().SerializeToString(), child, shape, modulo))
    proc.start()
    child.close()
    results = []
    try:
        assert parent.recv()[0] == "ready"
        unreplied = 0
        for seq in range(1, n_seq + 1):
            while unreplied >= max_unreplied:
                results.append(parent.recv())
                unreplied -= 1
            slot = seq % ring.slot_count
            ol = ring.write(slot, seq, chunk(seq, shape, modulo))
            parent.send(ref_for(ring, slot, seq, ol).SerializeToString())
            unreplied += 1
        parent.send(None)
        while unreplied:
            results.append(parent.recv())
            unreplied -= 1
        proc.join(30)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
    return results


def test_reader_in_another_process_follows_the_writer(ring):
    """Credits as in the server: at most slot_count chunks unacked, the writer fills the other slots meanwhile."""
    results = _run_follower(ring, (2, 8, 12, 3), None, 300, ring.slot_count)
    assert len(results) == 300
    assert [r for r in results if r[0] != "ok"] == []
    assert sorted(r[2] for r in results) == list(range(1, 301))


def test_lapping_writer_in_another_process_never_yields_wrong_data(tmp_path):
    """No credits: the writer rewrites slots that the other process may be copying. Stale is fine, wrong never."""
    shape = (1, 128, 256, 4)  # 128 KiB per chunk
    with FrameRing("lap", 2, int(np.prod(shape)), directory=tmp_path) as r:
        results = _run_follower(r, shape, 16, 400, 3)
    kinds = [k for k, _, _ in results]
    assert len(kinds) == 400
    assert kinds.count("wrong") == 0
    assert kinds.count("ok") >= 1  # at least the last two can never be lapped


# -- a C reader -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def c_reader(tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: the C ring reader cannot be built")
    exe = tmp_path_factory.mktemp("ringc") / "ring_reader"
    proc = subprocess.run([gcc, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(C_SOURCE)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return exe


def _run_c(exe, path, *args):
    return subprocess.run([str(exe), str(path), *map(str, args)], capture_output=True, text=True, timeout=30)


def test_c_reader_single_reads_while_writer_runs(c_reader, tmp_path):
    shape = (3, 16, 24, 4)
    with FrameRing("cread", 4, int(np.prod(shape)), directory=tmp_path) as r:
        stop = threading.Event()

        def keep_writing():
            seq = 1000
            while not stop.is_set():
                seq += 1
                r.write(1 + seq % 3, seq, chunk(seq, shape, 8))

        t = threading.Thread(target=keep_writing, daemon=True)
        t.start()
        try:
            for seq in (1, 2, 3):
                off, n = r.write(0, seq, chunk(seq, shape))
                proc = _run_c(c_reader, r.path, 0, seq, n)
                assert proc.returncode == 0, proc.stdout + proc.stderr
                assert proc.stdout.split() == ["ok", f"{fnv1a64(chunk(seq, shape).tobytes()):016x}", str(n)]
        finally:
            stop.set()
            t.join()

        # stale cases: lapped, torn (begun, not finished), never written
        off, n = r.write(0, 10, chunk(10, shape))
        r.write(0, 12, chunk(12, shape))
        assert _run_c(c_reader, r.path, 0, 10).returncode == 3
        assert _run_c(c_reader, r.path, 0, 12).returncode == 0
        r._begin_only(0, 13)
        assert _run_c(c_reader, r.path, 0, 12).returncode == 3
        assert _run_c(c_reader, r.path, 0, 13).returncode == 3
        assert _run_c(c_reader, r.path, 3, 999999).returncode == 3
        assert _run_c(c_reader, r.path, 9, 1).returncode == 2  # bad slot
        assert _run_c(c_reader, tmp_path / "missing.ring", 0, 1).returncode == 1


def test_c_reader_overwritten_while_copying_is_stale(c_reader, tmp_path):
    """Deterministic interleaving via the reader's pause hook: a write begins after the C copy."""
    shape = (2, 8, 8, 4)
    with FrameRing("cpause", 2, int(np.prod(shape)), directory=tmp_path) as r:
        ol1 = r.write(0, 1, chunk(1, shape))
        proc = subprocess.Popen([str(c_reader), str(r.path), "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, bufsize=1)
        try:
            def ask(line):
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
                return proc.stdout.readline().split()

            assert ask("0 1 pause") == ["copied"]
            assert ask("") == ["ok", f"{fnv1a64(chunk(1, shape).tobytes()):016x}", str(ol1[1])]
            assert ask("0 1 pause") == ["copied"]
            r._begin_only(0, 3)  # unfinished overwrite: seq_end still says 1 is complete
            r._state["u8"][ol1[0]:ol1[0] + ol1[1] // 2] = 0
            assert ask("")[0] == "stale"
            r.write(0, 3, chunk(3, shape))
            assert ask("0 3 pause") == ["copied"]
            r.write(0, 5, chunk(5, shape))  # a complete overwrite during the copy
            assert ask("")[0] == "stale"
            proc.stdin.close()
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_c_reader_follows_the_writer_with_credits(c_reader, tmp_path):
    shape = (2, 16, 16, 3)
    want = {}
    with FrameRing("cfollow", 3, int(np.prod(shape)), directory=tmp_path) as r:
        proc = subprocess.Popen([str(c_reader), str(r.path), "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, bufsize=1)
        try:
            outstanding, answers = [], []
            for seq in range(1, 121):
                if len(outstanding) == r.slot_count:  # wait for an "ack" before reusing a slot
                    answers.append((outstanding.pop(0), proc.stdout.readline().split()))
                frames = chunk(seq, shape, 7)
                want[seq] = frames.tobytes()
                off, n = r.write(seq % 3, seq, frames)
                proc.stdin.write(f"{seq % 3} {seq}\n")
                proc.stdin.flush()
                outstanding.append(seq)
            proc.stdin.close()
            answers += [(s, proc.stdout.readline().split()) for s in outstanding]
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    hashes = {k: f"{fnv1a64(_pattern(k, int(np.prod(shape)))):016x}" for k in range(7)}
    assert len(answers) == 120
    for seq, words in answers:
        assert words == ["ok", hashes[seq % 7], str(len(want[seq]))], (seq, words)


def test_c_reader_lapped_by_a_fast_writer_never_returns_wrong_data(c_reader, tmp_path):
    shape = (1, 64, 256, 4)  # 64 KiB
    size = int(np.prod(shape))
    hashes = {k: f"{fnv1a64(_pattern(k, size)):016x}" for k in range(16)}
    with FrameRing("clap", 1, size, directory=tmp_path) as r:
        latest = [0]
        r.write(0, 1, chunk(1, shape, 16))
        latest[0] = 1
        stop = threading.Event()

        def hammer():
            seq = 1
            while not stop.is_set():
                seq += 1
                r.write(0, seq, chunk(seq, shape, 16))
                latest[0] = seq

        proc = subprocess.Popen([str(c_reader), str(r.path), "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, bufsize=1)
        t = threading.Thread(target=hammer, daemon=True)
        t.start()
        counts = {"ok": 0, "stale": 0}
        try:
            for _ in range(300):
                seq = latest[0]
                proc.stdin.write(f"0 {seq}\n")
                proc.stdin.flush()
                words = proc.stdout.readline().split()
                assert words and words[0] in counts, words
                counts[words[0]] += 1
                if words[0] == "ok":
                    assert words[1:] == [hashes[seq % 16], str(size)], (seq, words)
        finally:
            stop.set()
            t.join()
            proc.stdin.close()
            proc.wait(30)
    assert counts["ok"] + counts["stale"] == 300


# -- cleanup --------------------------------------------------------------------------------------

_VICTIM = """
import sys
from pathlib import Path
import numpy as np
from service.ring import FrameRing
r = FrameRing(sys.argv[2], 2, 4096, directory=Path(sys.argv[1]))
r.write(0, 1, np.ones((1, 8, 8, 3), np.uint8))
print(r.path, flush=True)
sys.stdin.read()
"""


def _spawn_ring_owner(directory: Path, session: str) -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-c", _VICTIM, str(directory), session], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line, "ring owner subprocess failed to start"
    return proc, Path(line)


def test_cleanup_removes_rings_of_killed_writers_only(tmp_path):
    killed, killed_path = _spawn_ring_owner(tmp_path, "victim")
    live, live_path = _spawn_ring_owner(tmp_path, "alive")
    mine = FrameRing("mine", 1, 64, directory=tmp_path)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        assert killed_path.exists()  # a killed writer cannot clean up after itself

        # things that are not ours or not stale
        (tmp_path / "notes.txt").write_text("keep")
        (tmp_path / "shotstream-999999-junk.ring").write_bytes(b"NOTARING" + bytes(200))  # no magic
        (tmp_path / "shotstream-999998-bak.ring.bak").write_bytes(killed_path.read_bytes())  # name mismatch
        (tmp_path / "shotstream-999997-other.ring").write_bytes(killed_path.read_bytes())  # pid != header pid
        (tmp_path / f"shotstream-{killed.pid}-dir.ring").mkdir()
        keep = {"notes.txt", "shotstream-999999-junk.ring", "shotstream-999998-bak.ring.bak",
                "shotstream-999997-other.ring", f"shotstream-{killed.pid}-dir.ring", live_path.name, mine.path.name}

        # an earlier incarnation of *this* pid (containers restart with the same pid): stale
        old_self = tmp_path / f"shotstream-{os.getpid()}-previous.ring"
        old_self.write_bytes(mine.path.read_bytes())
        expected = {killed_path, old_self}
        # the live pid now belongs to a process started at another time (pid reuse): stale (Linux)
        if sys.platform.startswith("linux"):
            reused = tmp_path / f"shotstream-{live.pid}-reused.ring"
            data = bytearray(live_path.read_bytes())
            assert struct.unpack_from("<Q", data, 40)[0] != 0
            struct.pack_into("<Q", data, 40, struct.unpack_from("<Q", data, 40)[0] + 12345)
            reused.write_bytes(bytes(data))
            expected.add(reused)

        removed = cleanup_stale_rings(tmp_path)
        assert set(removed) == expected
        assert {p.name for p in tmp_path.iterdir()} == keep
        assert cleanup_stale_rings(tmp_path) == []
        # the live rings still work
        with RingReader(mine.layout()) as reader:
            ol = mine.write(0, 1, np.full((1, 1, 8, 8), 7, np.uint8))
            assert set(reader.read(ref_for(mine, 0, 1, ol)).tolist()) == {7}
    finally:
        mine.close()
        live.stdin.close()
        live.wait(10)
        if killed.poll() is None:
            killed.kill()
            killed.wait()
    assert not live_path.exists()  # a writer that exits normally removes its ring (finalizer at exit)


def test_cleanup_missing_directory_is_noop(tmp_path):
    assert cleanup_stale_rings(tmp_path / "nope") == []
