"""The GPU worker: one thread that runs every session's work, one unit (one DiT forward) at a time.

Only this thread runs the models (the loop thread only allocates a new story's caches), so the
models need no locking and sessions never race for the GPU. :mod:`service.scheduler` decides
which unit runs next; this module runs it, hands finished frames to their sessions, and keeps
the GPU's queue short (at most ``max_queued_units`` units launched ahead of the GPU), so that a
fresh cue's work is not stuck behind a long queue of another story's forwards. With nothing to
run it waits for frames still decoding, or blocks on a condition variable (no polling).

Full-quality take renders (:mod:`service.full_takes`) are the lowest priority of all: one latent
frame of one render runs only when no session has a unit to run and none has frames decoding, so
they fill the GPU's idle time (e.g. while clients hold their credits) and never delay live chunks
by more than one Wan latent decode.

Packing and copying a chunk's frames (RGBA packing, into the ring or an inline message) runs on
one sender thread (:meth:`GpuWorker.post`), in the order the worker hands chunks over, so the GPU
worker goes straight back to launching the next forward.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from .capacity import Capacity
from .full_takes import FullRender
from .scheduler import Scheduler
from .session import Session

log = logging.getLogger(__name__)


class GpuWorker:
    def __init__(self, device: torch.device | str = "cpu", max_queued_units: int = 2,
                 capacity: Capacity | None = None) -> None:
        self.capacity = capacity or Capacity()
        self._cuda = torch.device(device).type == "cuda"
        self._max_queued = max_queued_units
        self._launched: deque[torch.cuda.Event] = deque()
        self._scheduler = Scheduler()
        self._cond = threading.Condition()
        self._sessions: list[Session] = []
        self._to_release: list[Session] = []
        self._renders: deque[FullRender] = deque()  # full-quality takes to re-decode, oldest first
        self._render_slots = 0  # full-quality takes recording or waiting for (or in) their re-decode
        self._stopping = False
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shotstream-send")
        self._thread = threading.Thread(target=self._run, name="shotstream-gpu", daemon=True)
        self._thread.start()

    @property
    def sessions(self) -> int:
        with self._cond:
            return len(self._sessions)

    def add(self, session: Session) -> None:
        with self._cond:
            self._sessions.append(session)
            self._cond.notify()

    def remove(self, session: Session) -> None:
        """Stop scheduling ``session`` and free its resources on the worker thread (never mid-forward)."""
        with self._cond:
            session.closing = True
            if session in self._sessions:
                self._sessions.remove(session)
                self._to_release.append(session)
            self._cond.notify()
            stopped = not self._thread.is_alive()
        if stopped:  # after stop() nobody else will free it (and nothing else touches the engine)
            self._release_pending()

    def _release_pending(self) -> None:
        with self._cond:
            release, self._to_release = self._to_release, []
        _release(release)

    def post(self, fn: Callable[..., None], *args: object) -> Future:
        """Run ``fn(*args)`` on the sender thread, after everything posted before it."""
        return self._sender.submit(fn, *args)

    def reserve_render(self, limit: int) -> bool:
        """Take one of ``limit`` server-wide full-quality take slots (from StartTake until its full file is
        written or given up); False when all are taken. Any thread."""
        with self._cond:
            if self._render_slots >= limit:
                return False
            self._render_slots += 1
            return True

    def release_render(self) -> None:
        """Give back a slot whose take will never be rendered (it could not start)."""
        with self._cond:
            self._render_slots -= 1

    def render(self, job: FullRender) -> None:
        """Queue a reserved full-quality take's re-decode (any thread); it runs when the GPU has nothing live
        to do, and its slot is freed when it ends."""
        with self._cond:
            stopping = self._stopping
            if not stopping:
                self._renders.append(job)
                self._cond.notify()
        if stopping:
            job.fail(RuntimeError("the server is stopping"))
            self.release_render()

    def notify(self) -> None:
        """A session may have new work (a cue, an ack, a resume)."""
        with self._cond:
            self._cond.notify()

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            self._to_release.extend(self._sessions)
            for s in self._sessions:
                s.closing = True
            self._sessions.clear()
            self._cond.notify()
        self._thread.join(timeout)
        if not self._thread.is_alive():  # anything removed while the thread was exiting
            self._release_pending()
            with self._cond:
                renders, self._renders = list(self._renders), deque()
            for job in renders:  # the GPU is going away: their full files are not written
                job.fail(RuntimeError("the server stopped before the full-quality render finished"))
                self.release_render()
        self._sender.shutdown(wait=True)

    def _next(self) -> tuple[list[Session], tuple[Session, object] | None, Session | None, FullRender | None, bool]:
        """Under the lock, wait until there is something to do:
        (to release, a unit, a session to wait on, a render to advance, stop)."""
        with self._cond:
            while True:
                release, self._to_release = self._to_release, []
                picked = None if release else self._scheduler.pick(self._sessions)
                decoding = None if release or picked else next(
                    (s for s in self._sessions if s.frames_pending), None)
                idle = not (release or picked or decoding or self._stopping)
                render = self._renders[0] if idle and self._renders else None
                if not idle or render is not None:
                    return release, picked, decoding, render, self._stopping
                self._cond.wait()

    def _run(self) -> None:
        while True:
            release, picked, decoding, render, stopping = self._next()
            _release(release)
            if render is not None:
                self._advance(render)
                continue
            if picked is None and decoding is None:
                if stopping and not release:
                    return
                continue
            t0 = time.perf_counter()
            session = picked[0] if picked else decoding
            frames = 0
            try:
                if picked is not None:
                    self._throttle()
                    frames = session.run(picked[1])
                    self._mark_launched()
                else:
                    frames = session.wait_frames()
                for other in self._snapshot():  # hand out whatever else finished meanwhile
                    if other is not session and other.frames_pending:
                        frames += self._guarded(other, other.poll_frames)
            except Exception as exc:  # noqa: BLE001
                self._failed(session, exc)
            self.capacity.record(time.perf_counter() - t0, frames)

    def _advance(self, job: FullRender) -> None:
        """One latent frame of a full-quality render; a failure loses that take's full file only."""
        try:
            done = job.step()
        except Exception as exc:  # noqa: BLE001
            log.exception("full-quality render of take %s failed", job.name)
            job.fail(exc)
            done = True
        if done:
            with self._cond:
                self._renders.remove(job)
                self._render_slots -= 1

    def _snapshot(self) -> list[Session]:
        with self._cond:
            return list(self._sessions)

    def _guarded(self, session: Session, call) -> int:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001
            self._failed(session, exc)
            return 0

    def _failed(self, session: Session, exc: BaseException) -> None:
        try:
            session.fail(exc)
        finally:
            self.remove(session)

    def _throttle(self) -> None:
        """Keep at most ``max_queued_units`` units queued on the GPU ahead of it (CUDA only)."""
        while len(self._launched) >= self._max_queued:
            self._launched.popleft().synchronize()

    def _mark_launched(self) -> None:
        if self._cuda:
            event = torch.cuda.Event()
            event.record()
            self._launched.append(event)


def _release(sessions: list[Session]) -> None:
    for s in sessions:
        try:
            s.release()
        except Exception:  # noqa: BLE001 - one bad session must not stop the worker (or the others' release)
            log.exception("releasing session %s failed", s.id)
