"""Takes: a session's frames recorded into an MP4 on the server's host (``StartTake`` / ``StopTake``).

Encoding runs on the take's own thread so the GPU worker only enqueues frames it already holds;
the queue is unbounded because H.264 at the model's resolution encodes far faster than the model
generates. A take is never lost: stopping it, or the session ending for any reason, finishes the file. A take
that recorded no frames leaves no file (``TakeSaved.frames`` and ``bytes`` are 0).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from concurrent.futures import Future
from pathlib import Path

import grpc
import numpy as np

from .protocol import ProtocolError, pb
from .video_io import Mp4Writer

log = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_STOP = object()


def take_path(takes_dir: Path, name: str) -> Path:
    """Where take ``name`` goes; raises ProtocolError for a bad name, an existing take or an unusable folder."""
    if not _NAME.fullmatch(name):
        raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT,
                            f"take name {name!r} is not allowed: use 1-64 of A-Z a-z 0-9 - _ . "
                            "(not starting with '.'), without the .mp4 extension")
    folder = takes_dir.expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                            f"cannot create the takes folder {folder}: {exc}; start the server with "
                            "--takes-dir pointing at a writable folder") from None
    path = folder / f"{name}.mp4"
    if path.exists():
        raise ProtocolError(grpc.StatusCode.ALREADY_EXISTS,
                            f"a take named {name!r} already exists ({path}): choose another name")
    return path


class TakeRecorder:
    """One take being written. ``add`` from the worker thread; ``stop`` from any thread, once."""

    def __init__(self, name: str, path: Path, width: int, height: int, fps: int):
        self.name, self.path, self.fps = name, path, fps
        self._writer = Mp4Writer(path, width, height, fps)  # fails here (not on the thread) if ffmpeg cannot start
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
        except Exception as exc:  # noqa: BLE001
            error = error or exc
        if error is not None:
            log.error("take %s failed: %s", self.name, error)
            self._saved.set_exception(error)
            return
        frames = self._writer.frames
        if frames == 0:  # ffmpeg leaves an unplayable file: leave none
            self.path.unlink(missing_ok=True)
            log.info("take %s had no frames; no file written", self.name)
            self._saved.set_result(pb.TakeSaved(name=self.name, path=str(self.path)))
            return
        log.info("take %s saved: %s (%d frames)", self.name, self.path, frames)
        self._saved.set_result(pb.TakeSaved(name=self.name, path=str(self.path), frames=frames,
                                            bytes=self.path.stat().st_size, duration_s=frames / self.fps))
