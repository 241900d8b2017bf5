"""Shared-memory frame ring: the same-host fast path for frames (``TRANSPORT_SHARED_MEMORY``).

One ring per session. The server (the only writer) creates a plain file, maps it and writes each
chunk's pixels into a slot; the ``FrameChunk`` then carries only a ``RingSlot`` (slot, sequence,
offset, length). Clients in other processes and other languages (C#, C, Python) map the same file
*by path* (``RingLayout.path``) and copy the pixels out. Slots are reused only after the client acks
the chunk (credits), so a well-behaved client never sees a stale slot; the seqlock below makes a
misbehaving or late client get a clean "stale" error instead of mixed pixels.

File location and lifetime
--------------------------
* ``/dev/shm`` (tmpfs: RAM, no disk I/O) where it exists and is writable, else
  ``tempfile.gettempdir()`` (macOS, Windows), or the configured directory.
* Name: ``shotstream-<writer pid>-<session id>.ring`` (session id limited to ``[A-Za-z0-9_-]``,
  at most 64 characters). Created with ``O_CREAT|O_EXCL`` and mode ``0600``: only the server's user
  can map it, so a client must run as the same user.
* On Linux the space is reserved up front (``posix_fallocate``), so a too-small tmpfs (Docker's
  default 64 MB ``/dev/shm``) fails at session open with ``ENOSPC`` instead of killing the server
  with ``SIGBUS`` on a later write; the default location then falls back to the temp folder.
* The server unlinks the file when the session ends. A reader's mapping stays valid after that
  (POSIX), but nothing new is written. A killed server's files are removed at the next server
  start by :func:`cleanup_stale_rings`.
* Windows: a file that a client still has open cannot be deleted; close it after the session.

Layout (version 1)
------------------
All integers little-endian. Every u64 is 8-byte aligned; the header, each slot and each slot's
pixels start on a 64-byte boundary.

File header, ``header_bytes`` (= 128) bytes at offset 0::

    off size  field
      0   8   magic              b"SSRING01"
      8   4   layout_version     u32 = 1
     12   4   header_bytes       u32 = 128   bytes before slot 0
     16   4   slot_count         u32
     20   4   slot_header_bytes  u32 = 64    bytes before the pixels inside a slot
     24   8   slot_bytes         u64         bytes per slot, header included; multiple of 64
     32   4   writer_pid         u32         the server process
     36   4   reserved           u32 = 0
     40   8   writer_start_ticks u64         Linux: field 22 of /proc/<pid>/stat (pid-reuse check), else 0
     48   8   created_unix_ns    u64
     56   8   reserved           0
     64  64   session_id         UTF-8, NUL-padded (informational)

File size is ``header_bytes + slot_count * slot_bytes``. Slot ``i`` starts at
``slot_base(i) = header_bytes + i * slot_bytes``; its pixels start at
``slot_base(i) + slot_header_bytes`` (this is ``RingSlot.offset``) and may use up to
``slot_bytes - slot_header_bytes`` bytes.

Slot header, ``slot_header_bytes`` (= 64) bytes at ``slot_base(i)``::

    off size  field
      0   8   seq_begin       u64   2*s + 1 : the write of chunk sequence s has begun
      8   8   seq_end         u64   2*s + 2 : the write of chunk sequence s is complete
     16   8   chunk_sequence  u64   s (= FrameChunk.chunk_seq = RingSlot.sequence)
     24   4   num_frames      u32
     28   4   height          u32
     32   4   width           u32
     36   4   channels        u32   3 = RGB8, 4 = RGBA8
     40   8   payload_length  u64   num_frames * height * width * channels
     48  16   reserved        0

A never-written slot has ``seq_begin == seq_end == 0``. Pixels are ``num_frames`` frames of
``height`` rows (top row first) of ``width`` pixels of ``channels`` bytes, tightly packed.

Seqlock protocol
----------------
Chunk sequences only grow, so ``2*s+1`` / ``2*s+2`` identify one write of one slot uniquely.

Writer, for chunk sequence ``s`` into slot ``i`` (order matters)::

    W1  seq_begin = 2*s + 1          (one aligned 8-byte store)
        -- store-store fence (C11: atomic_thread_fence(memory_order_release)) --
    W2  metadata (chunk_sequence .. payload_length), then the pixels
        -- release fence --
    W3  seq_end = 2*s + 2            (one aligned 8-byte store)

Reader, for a ``RingSlot`` ref ``(slot=i, sequence=s, offset, length)``: the opposite order --
``seq_end`` *first*, ``seq_begin`` *last*::

    R0  check i < slot_count, offset == slot_base(i) + slot_header_bytes,
        length <= slot_bytes - slot_header_bytes                      else: bad ref
    R1  e = seq_end   (acquire load; C: atomic_load_explicit(.., memory_order_acquire),
                       C#: Volatile.Read)
        e != 2*s + 2  -> STALE (slot overwritten, or a write in progress)
    R2  b = seq_begin; b != 2*s + 1 -> STALE (optional early exit: a newer write has begun)
    R3  read the metadata and copy `length` pixel bytes into your own buffer
    R4  acquire fence (C11: atomic_thread_fence(memory_order_acquire); C#: Thread.MemoryBarrier())
    R5  b = seq_begin; b != 2*s + 1 -> STALE: discard the copy (overwritten while copying)
    R6  chunk_sequence != s or payload_length != length -> bad ref (not stale: a protocol bug)

Why this order: ``e == 2s+2`` proves W3 (and so all of W2) of write ``s`` was visible before the
copy; ``b == 2s+1`` after the copy proves W1 of any later write was not yet visible, so no byte of
a later write can have been copied. Reading ``seq_begin`` first and ``seq_end`` last would NOT be
safe (it accepts a copy taken while write ``s`` itself, or a later write, was still running).
Never hand out or use the copy before R5 passes; retrying a stale ref is pointless (the
sequence is gone), so ask the server for the next chunk instead.

Memory ordering notes: 8-byte fields must be read/written with single aligned 8-byte accesses
(C: ``_Atomic``/``__atomic`` builtins or ``volatile``; C#: ``Volatile.Read(ref *(long*)p)`` on a
pointer from ``SafeMemoryMappedViewHandle.AcquirePointer`` plus ``view.PointerOffset``). Copy the
pixels with a pointer copy (``Buffer.MemoryCopy``/``Marshal.Copy``); mono's ``view.ReadArray`` is
about 25x slower. C# opens the file by path, ``MemoryMappedFile.CreateFromFile(path,
FileMode.Open, null, 0, access)`` (the tested mono reference used ``ReadWrite``), never with
``OpenExisting(name)``. This Python writer stores the sequence words through a NumPy ``uint64``
view (one 8-byte store each) and relies on the CPU keeping stores in program order, which x86-64
(TSO) does; Python has no way to emit a fence, so on weakly ordered CPUs (aarch64, Apple silicon)
the protocol is best-effort for Python writers and readers. The C reader
``tests/ring_reader.c`` is a complete reference implementation.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import re
import struct
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from .protocol import pb

__all__ = ["FrameRing", "RingReader", "StaleSlotError", "cleanup_stale_rings", "default_ring_dir",
           "MAGIC", "LAYOUT_VERSION", "HEADER_BYTES", "SLOT_HEADER_BYTES"]

log = logging.getLogger(__name__)

MAGIC = b"SSRING01"
LAYOUT_VERSION = 1
HEADER_BYTES = 128
SLOT_HEADER_BYTES = 64
ALIGN = 64

# File header: magic, layout_version, header_bytes, slot_count, slot_header_bytes, slot_bytes,
# writer_pid, reserved, writer_start_ticks, created_unix_ns, reserved  (64 bytes) + session_id[64].
_HEADER = struct.Struct("<8sIIIIQIIQQQ64s")
assert _HEADER.size == HEADER_BYTES
# Slot header fields as u64 word indexes within the slot (8-byte words).
_W_BEGIN, _W_END, _W_SEQ = 0, 1, 2
# Metadata after chunk_sequence: num_frames, height, width, channels (u32), payload_length (u64).
_SLOT_META = struct.Struct("<IIIIQ")
_SLOT_META_OFFSET = 24
_MAX_SEQUENCE = (1 << 63) - 2  # 2*s + 2 must fit in a u64

_NAME_RE = re.compile(r"^shotstream-([1-9][0-9]{0,9})-([A-Za-z0-9_-]{1,64})\.ring$")
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")

# (st_dev, st_ino) of the rings this process created and has not closed: tells an old
# incarnation's file that happens to carry our pid (containers restart with the same pid) from
# our own live ones, whatever path (symlinks, relative) either side used.
_LIVE_FILES: set[tuple[int, int]] = set()
_LIVE_LOCK = threading.Lock()


class StaleSlotError(Exception):
    """The slot no longer holds (or does not yet fully hold) the requested chunk sequence.

    The copy was discarded; no mixed data is ever returned. Raised when a reader is lapped by the
    writer (it read after acking, or too late) or races an in-progress write.
    """

    def __init__(self, slot: int, expected: int, seq_begin: int, seq_end: int, when: str):
        self.slot, self.expected, self.seq_begin, self.seq_end = slot, expected, seq_begin, seq_end
        super().__init__(f"ring slot {slot} no longer holds chunk {expected} ({when}: seq_begin={seq_begin}, "
                         f"seq_end={seq_end}, want {2 * expected + 1}/{2 * expected + 2})")


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def default_ring_dir() -> Path:
    """``/dev/shm`` where it exists and is writable (Linux: RAM-backed), else the temp folder."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Linux: (state, start time in clock ticks) of ``pid`` from /proc, or None if unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        rest = data[data.rindex(b")") + 2:].split()  # comm may contain spaces and parentheses
        return rest[0].decode(), int(rest[19])  # field 3 = state, field 22 = starttime
    except (ValueError, IndexError):
        return None


def _start_ticks(pid: int) -> int:
    st = _proc_stat(pid) if sys.platform.startswith("linux") else None
    return st[1] if st else 0


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would *terminate* the process on Windows
        import ctypes
        from ctypes import wintypes
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.restype = wintypes.HANDLE
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: exists, not ours
        try:
            code = wintypes.DWORD()
            ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return bool(ok) and code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    st = _proc_stat(pid) if sys.platform.startswith("linux") else None
    return not (st is not None and st[0] in ("Z", "X"))  # a zombie is dead


def _release(state: dict) -> None:
    """Unmap and unlink; shared by close() and the finalizer (never references the FrameRing)."""
    state.pop("u8", None)
    state.pop("u64", None)
    mm = state.pop("mm", None)
    if mm is not None:
        try:
            mm.close()
        except BufferError:  # a caller still holds a view; the OS drops the mapping at exit
            log.warning("ring %s: mapping still exported, leaving it mapped", state.get("path"))
    path = state.pop("path", None)
    if path is not None:
        with _LIVE_LOCK:
            _LIVE_FILES.discard(state.get("file_id"))
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # e.g. Windows, a client still has it open
            log.warning("could not remove ring file %s: %s", path, exc)
    state["released"] = True  # last: `closed` means unmapped *and* unlinked


class FrameRing:
    """The writer side: a ``slot_count``-slot ring file, each slot holding up to
    ``slot_payload_bytes`` (rounded up to 64) pixel bytes. Not for concurrent writes to one slot."""

    def __init__(self, session_id: str, slot_count: int, slot_payload_bytes: int, directory: Path | None = None):
        if not isinstance(slot_count, int) or not 1 <= slot_count <= 0xFFFF_FFFF:
            raise ValueError(f"slot_count must be a positive u32, got {slot_count!r}")
        if not isinstance(slot_payload_bytes, int) or slot_payload_bytes < 1:
            raise ValueError(f"slot_payload_bytes must be positive, got {slot_payload_bytes!r}")
        safe_id = _BAD_ID_CHARS.sub("_", str(session_id))[:64] or "_"
        self.session_id = session_id
        self.slot_count = slot_count
        self.slot_bytes = _align(SLOT_HEADER_BYTES + slot_payload_bytes)
        self.capacity = self.slot_bytes - SLOT_HEADER_BYTES
        self.file_bytes = HEADER_BYTES + slot_count * self.slot_bytes
        self._lock = threading.Lock()
        self._last_seq = [-1] * slot_count
        self._state: dict = {}

        pid = os.getpid()
        name = f"shotstream-{pid}-{safe_id}.ring"
        if directory is not None:
            self.path = self._create(Path(directory) / name)
        else:
            first = default_ring_dir()
            try:
                self.path = self._create(first / name)
            except OSError as exc:
                fallback = Path(tempfile.gettempdir())
                if exc.errno not in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG) or fallback == first:
                    raise
                log.warning("ring for session %s does not fit in %s (%s); using %s", session_id, first, exc, fallback)
                self.path = self._create(fallback / name)

    def _create(self, path: Path) -> Path:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)  # mode is already 0600 unless an odd umask; make it exact
            except (AttributeError, OSError):
                pass
            reserved = False
            if hasattr(os, "posix_fallocate"):
                try:
                    os.posix_fallocate(fd, 0, self.file_bytes)
                    reserved = True
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
                        raise
            if not reserved:
                os.ftruncate(fd, self.file_bytes)
            mm = mmap.mmap(fd, self.file_bytes, access=mmap.ACCESS_WRITE)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        os.close(fd)  # the mapping keeps the file alive
        path = path.absolute()
        file_id = (st.st_dev, st.st_ino)
        self._state.update(mm=mm, path=str(path), file_id=file_id, u8=np.frombuffer(mm, np.uint8),
                           u64=np.frombuffer(mm, np.dtype("<u8")))
        with _LIVE_LOCK:
            _LIVE_FILES.add(file_id)
        self._finalizer = weakref.finalize(self, _release, self._state)
        sid = str(self.session_id).encode("utf-8")[:64]
        mm[0:HEADER_BYTES] = _HEADER.pack(MAGIC, LAYOUT_VERSION, HEADER_BYTES, self.slot_count, SLOT_HEADER_BYTES,
                                          self.slot_bytes, os.getpid(), 0, _start_ticks(os.getpid()),
                                          time.time_ns(), 0, sid)
        return path

    # -- API ------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._state.get("released", False) or not self._state  # (empty: construction failed)

    def layout(self) -> pb.RingLayout:
        return pb.RingLayout(path=str(self.path), layout_version=LAYOUT_VERSION, slot_count=self.slot_count,
                             slot_bytes=self.slot_bytes, header_bytes=HEADER_BYTES,
                             slot_header_bytes=SLOT_HEADER_BYTES)

    def slot_offset(self, slot: int) -> int:
        """Byte offset of slot ``slot``'s header (its pixels start ``SLOT_HEADER_BYTES`` later)."""
        return HEADER_BYTES + slot * self.slot_bytes

    def write(self, slot: int, sequence: int, frames: np.ndarray) -> tuple[int, int]:
        """Write one chunk (uint8 ``[n, H, W, C]``) as chunk ``sequence`` into ``slot``.

        Returns ``(offset, length)`` of the pixels in the file. ``sequence`` must be greater than
        the last one written to this slot (chunk sequences only grow).
        """
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
            raise ValueError("frames must be a uint8 array [n, H, W, C]")
        n, h, w, c = (int(x) for x in frames.shape)
        if max(n, h, w, c) > 0xFFFF_FFFF:
            raise ValueError(f"frame dimensions {frames.shape} do not fit the slot header")
        length = frames.nbytes
        if length > self.capacity:
            raise ValueError(f"chunk of {length} bytes does not fit a ring slot of {self.capacity} bytes")
        if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)) or not 0 <= slot < self.slot_count:
            raise ValueError(f"slot {slot!r} out of range [0, {self.slot_count})")
        if isinstance(sequence, bool) or not isinstance(sequence, (int, np.integer)) \
                or not 0 <= sequence <= _MAX_SEQUENCE:
            raise ValueError(f"bad chunk sequence {sequence!r}")
        slot, sequence = int(slot), int(sequence)
        with self._lock:
            if self.closed:
                raise ValueError("ring is closed")
            if sequence <= self._last_seq[slot]:
                raise ValueError(f"sequence {sequence} is not after {self._last_seq[slot]} already in slot {slot}")
            u8, u64 = self._state["u8"], self._state["u64"]
            base = self.slot_offset(slot)
            word = base // 8
            data = base + SLOT_HEADER_BYTES
            self._last_seq[slot] = sequence
            # W1: mark the write as begun (readers of any older sequence in this slot now fail)
            u64[word + _W_BEGIN] = 2 * sequence + 1
            # W2: metadata, then the pixels
            u64[word + _W_SEQ] = sequence
            u8[base + _SLOT_META_OFFSET:base + _SLOT_META_OFFSET + _SLOT_META.size] = np.frombuffer(
                _SLOT_META.pack(n, h, w, c, length), np.uint8)
            if length:
                u8[data:data + length] = frames.reshape(-1)
            # W3: mark it complete
            u64[word + _W_END] = 2 * sequence + 2
        return data, length

    def _begin_only(self, slot: int, sequence: int) -> None:
        """Test hook: perform only step W1 (a write that has begun and not finished)."""
        with self._lock:
            self._state["u64"][self.slot_offset(slot) // 8 + _W_BEGIN] = 2 * sequence + 1

    def close(self) -> None:
        """Unmap and remove the file. Idempotent; safe on half-constructed rings."""
        lock = getattr(self, "_lock", None)
        fin = getattr(self, "_finalizer", None)
        if lock is None or fin is None:
            return
        with lock:
            fin()

    def __enter__(self) -> FrameRing:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FrameRing({str(self.path)!r}, slots={self.slot_count}, slot_bytes={self.slot_bytes})"


class RingReader:
    """A client-side reader (Python reference implementation; same rules as the C/C# readers)."""

    def __init__(self, layout: pb.RingLayout):
        if layout.layout_version != LAYOUT_VERSION:
            raise ValueError(f"unsupported ring layout version {layout.layout_version}")
        self.path = layout.path
        fd = os.open(layout.path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_BYTES:
                raise ValueError(f"{layout.path}: not a ring file (too small)")
            self._mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        try:
            (magic, version, header_bytes, slot_count, slot_header_bytes, slot_bytes, writer_pid, _r, _t, _c, _r2,
             _sid) = _HEADER.unpack_from(self._mm, 0)
            if magic != MAGIC or version != LAYOUT_VERSION:
                raise ValueError(f"{layout.path}: not a ring file of layout {LAYOUT_VERSION}")
            got = (header_bytes, slot_count, slot_header_bytes, slot_bytes)
            want = (layout.header_bytes, layout.slot_count, layout.slot_header_bytes, layout.slot_bytes)
            if got != want:
                raise ValueError(f"{layout.path}: header {got} does not match the layout {want}")
            if header_bytes % ALIGN or slot_header_bytes % ALIGN or slot_bytes % ALIGN or \
                    slot_bytes <= slot_header_bytes or header_bytes + slot_count * slot_bytes > size:
                raise ValueError(f"{layout.path}: inconsistent ring header")
        except BaseException:
            self._mm.close()
            raise
        self.header_bytes, self.slot_count = header_bytes, slot_count
        self.slot_header_bytes, self.slot_bytes = slot_header_bytes, slot_bytes
        self.capacity = slot_bytes - slot_header_bytes
        self.writer_pid = writer_pid
        self._u8 = np.frombuffer(self._mm, np.uint8)
        self._u64 = np.frombuffer(self._mm, np.dtype("<u8"))

    def _copy(self, src: np.ndarray, dst: np.ndarray) -> None:  # separate so tests can interleave a writer
        np.copyto(dst, src)

    def read(self, ref: pb.RingSlot, out: np.ndarray | None = None) -> np.ndarray:
        """Copy chunk ``ref.sequence`` out of slot ``ref.slot``: a uint8 1-D array of ``ref.length`` bytes.

        ``out`` (uint8, 1-D, contiguous, at least ``ref.length`` long) is reused when given; the
        result is then ``out[:ref.length]``. Raises :class:`StaleSlotError` when the slot was or is
        being overwritten (the copy is discarded), ``ValueError`` for a ref that does not fit.
        """
        if self._mm is None:
            raise ValueError("reader is closed")
        slot, seq, length = int(ref.slot), int(ref.sequence), int(ref.length)
        if slot >= self.slot_count:
            raise ValueError(f"slot {slot} out of range [0, {self.slot_count})")
        base = self.header_bytes + slot * self.slot_bytes
        data = base + self.slot_header_bytes
        if ref.offset != data or length > self.capacity or seq > _MAX_SEQUENCE:
            raise ValueError(f"ring ref (slot={slot}, offset={ref.offset}, length={length}) does not fit the layout")
        if out is None:
            out = np.empty(length, np.uint8)
        else:
            if out.dtype != np.uint8 or out.ndim != 1 or not out.flags.c_contiguous or not out.flags.writeable \
                    or out.size < length:
                raise ValueError(f"out must be a writable contiguous uint8 1-D array of at least {length} bytes")
            out = out[:length]
        status = self._read_locked(base, slot, seq, length, out)
        if status is not None:  # raised here, so no traceback frame keeps a view of the mapping alive
            if status[0] == "stale":
                raise StaleSlotError(slot, seq, status[1], status[2], status[3])
            raise ValueError(f"ring ref for chunk {seq} ({length} bytes) does not match the slot header "
                             f"(chunk {status[1]}, {status[2]} bytes)")
        return out

    def _read_locked(self, base: int, slot: int, seq: int, length: int, out: np.ndarray) -> tuple | None:
        """The seqlock read (rules R1-R6). None when ``out`` holds chunk ``seq``, else why not."""
        word, data = base // 8, base + self.slot_header_bytes
        u64 = self._u64
        want_begin, want_end = 2 * seq + 1, 2 * seq + 2
        end = int(u64[word + _W_END])  # R1: seq_end first
        begin = int(u64[word + _W_BEGIN])  # R2: early exit
        if end != want_end or begin != want_begin:
            return "stale", begin, end, "before copying"
        # R3: metadata and pixels
        chunk_seq = int(u64[word + _W_SEQ])
        payload_length = _SLOT_META.unpack_from(self._mm, base + _SLOT_META_OFFSET)[4]
        self._copy(self._u8[data:data + length], out)
        begin = int(u64[word + _W_BEGIN])  # R5: seq_begin last (x86 keeps loads in order; no fence in Python)
        if begin != want_begin:
            return "stale", begin, end, "while copying"
        if chunk_seq != seq or payload_length != length:  # R6
            return "mismatch", chunk_seq, payload_length
        return None

    def slot_info(self, ref: pb.RingSlot) -> dict:
        """The slot header's frame metadata for ``ref`` (read under the same seqlock rules)."""
        base = self.header_bytes + int(ref.slot) * self.slot_bytes
        if int(ref.slot) >= self.slot_count:
            raise ValueError(f"slot {ref.slot} out of range")
        word, seq = base // 8, int(ref.sequence)
        end, begin = int(self._u64[word + _W_END]), int(self._u64[word + _W_BEGIN])
        if end != 2 * seq + 2 or begin != 2 * seq + 1:
            raise StaleSlotError(int(ref.slot), seq, begin, end, "before reading the header")
        n, h, w, c, length = _SLOT_META.unpack_from(self._mm, base + _SLOT_META_OFFSET)
        begin = int(self._u64[word + _W_BEGIN])
        if begin != 2 * seq + 1:
            raise StaleSlotError(int(ref.slot), seq, begin, end, "while reading the header")
        return {"num_frames": n, "height": h, "width": w, "channels": c, "payload_length": length}

    def close(self) -> None:
        self._u8 = self._u64 = None
        mm = self._mm
        if mm is not None and not mm.closed:
            try:
                mm.close()
            except BufferError:  # a view is still alive somewhere: unmapped when it goes away
                pass
        self._mm = None

    def __enter__(self) -> RingReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_header(path: Path) -> tuple | None:
    try:
        with open(path, "rb") as f:
            data = f.read(HEADER_BYTES)
    except OSError:
        return None
    if len(data) < HEADER_BYTES:
        return None
    fields = _HEADER.unpack(data)
    return fields if fields[0] == MAGIC else None


def cleanup_stale_rings(directory: Path | None = None) -> list[Path]:
    """Remove ring files whose writer process is gone; returns the removed paths.

    Call at server start with ``ServerSettings.ring_dir`` (None: ``/dev/shm`` and the temp folder). Only files that
    match ``shotstream-<pid>-<id>.ring`` exactly, belong to this user, start with the magic and
    carry the same pid in the header are considered. A file is stale when its writer pid is not
    alive, when (Linux) that pid now belongs to a process started at another time (pid reuse), or
    when it carries this process's own pid but this process did not create it (a restarted
    container reuses pids).
    """
    if directory is None:  # the default location and the temp folder a full /dev/shm falls back to
        dirs = list(dict.fromkeys([default_ring_dir(), Path(tempfile.gettempdir())]))
    else:
        dirs = [Path(directory)]
    entries = []
    for d in dirs:
        try:
            entries += list(os.scandir(d))
        except OSError:
            continue
    removed: list[Path] = []
    me = os.getpid()
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        m = _NAME_RE.match(entry.name)
        if not m:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if uid is not None and entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except OSError:
            continue
        header = _read_header(Path(entry.path))
        if header is None:
            continue
        pid, header_pid, start_ticks = int(m.group(1)), header[6], header[8]
        if pid != header_pid:
            continue
        path = Path(entry.path)
        if pid == me:
            try:
                st = os.stat(path)
            except OSError:
                continue
            with _LIVE_LOCK:
                stale = (st.st_dev, st.st_ino) not in _LIVE_FILES
        elif not _pid_alive(pid):
            stale = True
        else:
            now_ticks = _start_ticks(pid)
            stale = bool(start_ticks and now_ticks and now_ticks != start_ticks)
        if not stale:
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove stale ring %s: %s", path, exc)
            continue
        log.info("removed stale ring %s (writer pid %d is gone)", path, pid)
        removed.append(path)
    return removed
