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
4. A full-quality take (``quality = FULL``) of a session that previews with the tiny decoder also
   reserves ``<name>.full.mp4`` and keeps the recorded shots' latents; when it stops, the GPU
   worker re-decodes them with the Wan VAE at low priority (:mod:`service.full_takes`) and one
   ``take_saved`` carries both paths once both files are written.
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
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from engine_core import ChunkResult, ShotStreamEngine

from .full_takes import FullRender, KeptLatents, Renderer
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

    def reserve(self, name: str, suffix: str = ".mp4") -> Path:
        """Create ``<name><suffix>`` exclusively (empty, no symlink followed); raises ProtocolError."""
        if not _NAME.fullmatch(name):
            raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"take name {name[:80]!r} is not allowed: use 1-64 of A-Z a-z 0-9 - _ . "
                                "(not starting with '.'), without the .mp4 extension")
        path = self.folder / f"{name}{suffix}"
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

    @property
    def saved(self) -> Future[pb.TakeSaved]:
        """Completes once the file is written (after :meth:`stop`)."""
        return self._saved

    def stop(self, error: BaseException | None = None) -> Future[pb.TakeSaved]:
        """Finish the file after the frames queued so far; the future holds the ``TakeSaved`` message.
        With ``error`` (the frames cannot be completed) no file is left and the future fails with it."""
        if error is not None:
            self._frames.put(error)
        self._frames.put(_STOP)
        return self._saved

    def _run(self) -> None:
        error: BaseException | None = None
        while (item := self._frames.get()) is not _STOP:
            if isinstance(item, BaseException):
                error = error or item
            elif error is None:  # after a failure, keep draining so stop() still completes
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


@dataclass(frozen=True)
class FullQuality:
    """What a session's takes need to offer ``quality = FULL``."""

    engine: ShotStreamEngine
    preview: bool  # the session decodes with the tiny decoder (else its live take is already full quality)
    renderer: Renderer | None  # the GPU worker, which runs the re-decodes; None: FULL unavailable
    max_shots: int  # max_take_full_shots
    max_renders: int  # max_full_renders


class SessionTakes:
    """The takes of one session: at most one recording, plus stopped ones still encoding.

    ``start``/``stop`` on the loop thread, ``add`` on the worker thread; messages go out through ``emit``.
    """

    def __init__(self, folder: TakeFolder, session_id: str, width: int, height: int, fps: int, emit: Emit,
                 full: FullQuality | None = None):
        self._folder, self._session_id, self._size, self._fps, self._emit = folder, session_id, (width, height), fps, emit
        self._full = full
        self._lock = threading.Lock()
        self._take: TakeRecorder | None = None
        self._quality = pb.TAKE_QUALITY_LIVE
        self._full_path: Path | None = None  # the recording take's <name>.full.mp4 (re-decoded after it stops)
        self._kept = KeptLatents(full.max_shots) if full is not None and full.preview else None
        self._stopped: list[Future[pb.ServerMessage]] = []  # their take_saved goes out through emit
        self._started = 0

    def start(self, name: str, quality: int = pb.TAKE_QUALITY_LIVE) -> None:
        """Reserve the file(s) and start recording from the next chunk; raises ProtocolError (non-fatal)."""
        quality = quality or pb.TAKE_QUALITY_LIVE
        if quality not in (pb.TAKE_QUALITY_LIVE, pb.TAKE_QUALITY_FULL):
            raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown take quality {quality}: use "
                                "TAKE_QUALITY_LIVE or TAKE_QUALITY_FULL")
        with self._lock:
            if self._take is not None:
                raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"take {self._take.name!r} is already recording: send stop_take first")
            rerender = quality == pb.TAKE_QUALITY_FULL and self._kept is not None
            if rerender:
                self._reserve_render()
            name = name or f"{self._session_id}-take{self._started + 1}"
            path = full_path = None
            try:
                path = self._folder.reserve(name)
                full_path = self._folder.reserve(name, ".full.mp4") if rerender else None
                self._take = TakeRecorder(name, path, self._folder, *self._size, self._fps)
            except (ProtocolError, OSError) as exc:
                for reserved in (path, full_path):
                    if reserved is not None:
                        reserved.unlink(missing_ok=True)
                if rerender:
                    self._full.renderer.release_render()
                if isinstance(exc, ProtocolError):
                    raise
                raise ProtocolError(grpc.StatusCode.INTERNAL, f"cannot start take {name!r}: {exc}") from None
            self._started += 1
            self._quality, self._full_path = quality, full_path
            shown = full_path or (path if quality == pb.TAKE_QUALITY_FULL else None)
            self._emit(pb.ServerMessage(take_started=pb.TakeStarted(
                name=name, path=str(path), quality=quality, full_path=str(shown) if shown else "")))

    def _reserve_render(self) -> None:
        full = self._full
        if full.renderer is None:
            raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION, "full-quality takes need the server's GPU "
                                "worker, which this session has not got: record a live take")
        if not full.renderer.reserve_render(full.max_renders):
            raise ProtocolError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{full.max_renders} full-quality takes are recording or waiting for their re-decode "
                                f"(max_full_renders={full.max_renders}): try again when one is saved, or record a "
                                "live take")

    @property
    def recording(self) -> bool:
        with self._lock:
            return self._take is not None

    def stop(self) -> None:
        """Finish the recording take; its ``take_saved`` (or error) is emitted when the file is complete."""
        with self._lock:
            if self._take is None:
                raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION, "no take is recording: send start_take first")
            self._stop_and_report_locked()

    def add(self, frames_rgb: np.ndarray, chunk: ChunkResult | None = None) -> None:
        """A chunk's frames (worker thread), recorded if a take is running; ``chunk`` carries its latents."""
        with self._lock:
            rerender = self._full_path is not None and self._take is not None
            if self._kept is not None and chunk is not None:
                self._kept.add(chunk)
                if rerender and self._kept.full(chunk):
                    name = self._take.name
                    self._emit(error_message(ProtocolError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"take {name!r} recorded {self._kept.max_shots} shots, the most a full-quality take keeps "
                        f"(max_take_full_shots); it was stopped and is being saved: start another take to go on")))
                    self._stop_and_report_locked()
                    return
            if self._take is not None:
                self._take.add(frames_rgb)
                if rerender and chunk is not None:
                    self._kept.record(chunk)

    def _stop_and_report_locked(self) -> None:
        done = self._stop_locked()
        self._stopped = [f for f in self._stopped if not f.done()] + [done]  # bounded
        done.add_done_callback(lambda d: self._emit(d.result()))

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
        full_path, self._full_path = self._full_path, None
        quality = self._quality
        done: Future[pb.ServerMessage] = Future()
        live = take.stop()
        full = self._start_render(take.name, full_path) if full_path is not None else None
        reporting = threading.Lock()  # the two files finish on two threads: report once

        def report(_: Future) -> None:
            with reporting:
                if done.done() or not live.done() or (full is not None and not full.done()):
                    return  # reported, or the other file is still being written
                _report()

        def _report() -> None:
            exc = live.exception()
            if exc is not None:
                done.set_result(error_message(ProtocolError(grpc.StatusCode.INTERNAL, f"take {take.name!r} failed: {exc}")))
                return
            saved = live.result()
            if full is not None and full.exception() is not None:
                self._emit(error_message(ProtocolError(
                    grpc.StatusCode.INTERNAL, f"the full-quality render of take {take.name!r} failed: "
                    f"{full.exception()}; the live take {saved.path} is saved")))
            elif full is not None and full.result().frames:
                saved.full_path, saved.full_bytes = full.result().path, full.result().bytes
            elif quality == pb.TAKE_QUALITY_FULL and saved.frames:  # decoded with the Wan VAE already
                saved.full_path, saved.full_bytes = saved.path, saved.bytes
            done.set_result(pb.ServerMessage(take_saved=saved))

        live.add_done_callback(report)
        if full is not None:
            full.add_done_callback(report)
        return done

    def _start_render(self, name: str, full_path: Path) -> Future[pb.TakeSaved]:
        """Hand the recorded shots' Wan re-decode to the GPU worker; the future is the full file's TakeSaved."""
        shots = self._kept.take_recorded()
        try:
            recorder = TakeRecorder(name, full_path, self._folder, *self._size, self._fps)
        except OSError as exc:
            full_path.unlink(missing_ok=True)
            self._full.renderer.release_render()
            failed: Future[pb.TakeSaved] = Future()
            failed.set_exception(exc)
            return failed
        saved = recorder.saved
        self._full.renderer.render(FullRender(self._full.engine, shots, recorder.add, recorder.stop, name))
        return saved

    async def _finished(self, done: Future[pb.ServerMessage]) -> pb.ServerMessage | None:
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(done)), FINISH_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.error("session %s: a take is still encoding after %.0f s; it finishes in the background",
                      self._session_id, FINISH_TIMEOUT_S)
            return None
