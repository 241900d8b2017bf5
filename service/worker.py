"""The GPU worker: one thread that advances every open session, one chunk at a time, round-robin.

Only this thread runs the models (the loop thread only allocates a new story's caches), so the
models need no locking and sessions never race for the GPU. With nothing to do it blocks on a
condition variable (no polling, no GPU use).
"""

from __future__ import annotations

import logging
import threading

from .session import Session

log = logging.getLogger(__name__)


class GpuWorker:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sessions: list[Session] = []
        self._to_release: list[Session] = []
        self._next = 0
        self._stopping = False
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
        """Stop scheduling ``session`` and free its resources on the worker thread (never mid-chunk)."""
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

    def _pick(self) -> Session | None:
        """Round-robin: the first session at or after ``_next`` that has work and credits."""
        n = len(self._sessions)
        for i in range(n):
            s = self._sessions[(self._next + i) % n]
            if s.wants_gpu():
                self._next = (self._next + i + 1) % n
                return s
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    release, self._to_release = self._to_release, []
                    session = None if release else self._pick()
                    if release or session is not None or self._stopping:
                        break
                    self._cond.wait()
                stopping = self._stopping
            _release(release)
            if session is not None:
                try:
                    session.run_unit()
                except Exception as exc:  # noqa: BLE001
                    try:
                        session.fail(exc)
                    finally:
                        self.remove(session)
            elif stopping and not release:
                return


def _release(sessions: list[Session]) -> None:
    for s in sessions:
        try:
            s.release()
        except Exception:  # noqa: BLE001 - one bad session must not stop the worker (or the others' release)
            log.exception("releasing session %s failed", s.id)
