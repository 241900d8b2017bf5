"""Takes: a session's frames recorded into an MP4 on the server's host (``StartTake`` / ``StopTake``).

This module owns a take from reservation to saved file:

1. ``StartTake`` reserves ``<takes_dir>/<name>.mp4`` at once by creating it exclusively (``O_EXCL``,
   ``O_NOFOLLOW``, mode ``take_file_mode``): one name has one owner, an existing file or a planted
   symlink (dangling or not) is ALREADY_EXISTS, and nothing is ever written through a link.
2. Frames go to the take's own encoder thread (the GPU worker only enqueues frames it already holds).
   ffmpeg writes into a private folder (``.partial-*``, mode 0700) inside the takes folder, which no
   other user can plant links in.
3. Stopping the take, or the session ending for any reason, finishes the file: it gets its mode and
   is renamed over the reservation (atomic; a rename replaces a directory entry and follows no link).
   A take with no frames, or one whose encoder failed, leaves no file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path

import grpc
import numpy as np

from .protocol import ProtocolError, error_message, pb
from .video_io import Mp4Writer

log = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_STOP = object()
FINISH_TIMEOUT_S = 60.0  # how long a closing session waits for its take's encoder to finish the file
Emit = Callable[[pb.ServerMessage], None]
Send = Callable[[pb.ServerMessage], Awaitable[None]]


class TakeFolder:
    """The takes folder: hands out exclusive reservations of take files."""

    def __init__(self, folder: Path, file_mode: int):
        self.folder = folder.expanduser().resolve()
        self.file_mode = file_mode

    def reserve(self, name: str) -> Path:
        """Create ``<name>.mp4`` exclusively (empty, no symlink followed); raises ProtocolError."""
        if not _NAME.fullmatch(name):
            raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"take name {name[:80]!r} is not allowed: use 1-64 of A-Z a-z 0-9 - _ . "
                                "(not starting with '.'), without the .mp4 extension")
        path = self.folder / f"{name}.mp4"
        try:
            self.folder.mkdir(mode=0o750 if self.file_mode & 0o040 else 0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, self.file_mode)
        except FileExistsError:
            raise ProtocolError(grpc.StatusCode.ALREADY_EXISTS,
                                f"a take named {name!r} already exists ({path}): choose another name") from None
        except OSError as exc:
            raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                                f"cannot create take {name!r} in {self.folder}: {exc.strerror or exc}; start the "
                                "server with --takes-dir pointing at a writable folder") from None
        os.fchmod(fd, self.file_mode)  # the umask may have narrowed it
        os.close(fd)
        return path


class TakeRecorder:
    """One take being written. ``add`` from the worker thread; ``stop`` from any thread, once."""

    def __init__(self, name: str, path: Path, folder: TakeFolder, width: int, height: int, fps: int):
        self.name, self.path, self.fps, self._mode = name, path, fps, folder.file_mode
        self._work = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.folder))  # 0700: only we write here
        self._partial = self._work / "take.mp4"
        try:
            self._writer = Mp4Writer(self._partial, width, height, fps)  # fails here if ffmpeg cannot start
        except BaseException:
            shutil.rmtree(self._work, ignore_errors=True)
            raise
        self._frames: queue.SimpleQueue = queue.SimpleQueue()
        self._saved: Future[pb.TakeSaved] = Future()
        self._thread = threading.Thread(target=self._run, name=f"take-{name}", daemon=True)
        self._thread.start()

    def started_message(self) -> pb.ServerMessage:
        return pb.ServerMessage(take_started=pb.TakeStarted(name=self.name, path=str(self.path)))

    def add(self, frames_rgb: np.ndarray) -> None:
        """Queue uint8 RGB frames ``[n, H, W, 3]``; the caller must not modify them afterwards."""
        self._frames.put(frames_rgb)

    def stop(self) -> Future[pb.TakeSaved]:
        """Finish the file after the frames queued so far; the future holds the ``TakeSaved`` message."""
        self._frames.put(_STOP)
        return self._saved

    def _run(self) -> None:
        error: BaseException | None = None
        while (item := self._frames.get()) is not _STOP:
            if error is None:  # after a failure, keep draining so stop() still completes
                try:
                    self._writer.write(item)
                except Exception as exc:  # noqa: BLE001 - e.g. disk full: reported to the client
                    error = exc
        try:
            self._writer.close()
            if error is None and self._writer.frames:
                size = self._publish()
        except Exception as exc:  # noqa: BLE001
            error = error or exc
        finally:
            shutil.rmtree(self._work, ignore_errors=True)
        frames = self._writer.frames
        if error is not None or frames == 0:  # ffmpeg leaves an unplayable file for no frames: leave none
            with contextlib.suppress(OSError):
                self.path.unlink()
        if error is not None:
            log.error("take %s failed: %s", self.name, error)
            self._saved.set_exception(error)
            return
        if frames == 0:
            log.info("take %s had no frames; no file written", self.name)
            self._saved.set_result(pb.TakeSaved(name=self.name, path=str(self.path)))
            return
        log.info("take %s saved: %s (%d frames)", self.name, self.path, frames)
        self._saved.set_result(pb.TakeSaved(name=self.name, path=str(self.path), frames=frames, bytes=size,
                                            duration_s=frames / self.fps))

    def _publish(self) -> int:
        """Give the finished file its mode and rename it over the reservation; returns its size."""
        fd = os.open(self._partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, self._mode)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        os.replace(self._partial, self.path)
        return size


class SessionTakes:
    """The takes of one session: at most one recording, plus stopped ones still encoding.

    ``start``/``stop`` on the loop thread, ``add`` on the worker thread; messages go out through ``emit``.
    """

    def __init__(self, folder: TakeFolder, session_id: str, width: int, height: int, fps: int, emit: Emit):
        self._folder, self._session_id, self._size, self._fps, self._emit = folder, session_id, (width, height), fps, emit
        self._lock = threading.Lock()
        self._take: TakeRecorder | None = None
        self._stopped: list[Future[pb.ServerMessage]] = []  # their take_saved goes out through emit
        self._started = 0

    def start(self, name: str) -> None:
        """Reserve the file and start recording from the next chunk; raises ProtocolError (non-fatal)."""
        with self._lock:
            if self._take is not None:
                raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"take {self._take.name!r} is already recording: send stop_take first")
            name = name or f"{self._session_id}-take{self._started + 1}"
            path = self._folder.reserve(name)
            try:
                self._take = TakeRecorder(name, path, self._folder, *self._size, self._fps)
            except OSError as exc:
                path.unlink(missing_ok=True)
                raise ProtocolError(grpc.StatusCode.INTERNAL, f"cannot start take {name!r}: {exc}") from None
            self._started += 1
            self._emit(self._take.started_message())

    def stop(self) -> None:
        """Finish the recording take; its ``take_saved`` (or error) is emitted when the file is complete."""
        with self._lock:
            if self._take is None:
                raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION, "no take is recording: send start_take first")
            done = self._stop_locked()
            self._stopped = [f for f in self._stopped if not f.done()] + [done]  # bounded
        done.add_done_callback(lambda d: self._emit(d.result()))

    def add(self, frames_rgb: np.ndarray) -> None:
        """A chunk's frames (worker thread), recorded if a take is running."""
        with self._lock:
            if self._take is not None:
                self._take.add(frames_rgb)

    async def finish(self, drain: Callable[[], Awaitable[None]] | None, send: Send | None) -> None:
        """The session is ending: finish every take. With ``send``, first ``drain`` what is queued (which
        includes the take_saved of takes stopped earlier), then send the recording take's take_saved."""
        with self._lock:
            stopped = [f for f in self._stopped if not f.done()]
            recording = self._stop_locked() if self._take is not None else None
        for done in stopped:
            await self._finished(done)
        if drain is not None:
            await drain()
        if recording is not None:
            msg = await self._finished(recording)
            if send is not None and msg is not None:
                await send(msg)

    def _stop_locked(self) -> Future[pb.ServerMessage]:
        take, self._take = self._take, None
        done: Future[pb.ServerMessage] = Future()

        def report(saved: Future[pb.TakeSaved]) -> None:
            exc = saved.exception()
            done.set_result(pb.ServerMessage(take_saved=saved.result()) if exc is None else error_message(
                ProtocolError(grpc.StatusCode.INTERNAL, f"take {take.name!r} failed: {exc}")))

        take.stop().add_done_callback(report)
        return done

    async def _finished(self, done: Future[pb.ServerMessage]) -> pb.ServerMessage | None:
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(done)), FINISH_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.error("session %s: a take is still encoding after %.0f s; it finishes in the background",
                      self._session_id, FINISH_TIMEOUT_S)
            return None
