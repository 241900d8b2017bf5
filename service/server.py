"""The composition root: engine + settings -> GPU worker, sessions, gRPC door, WebSocket gateway, metrics.

``ShotStreamServer`` is the embeddable form (tests, notebooks); :func:`serve` is the blocking entry
point for a process: SIGINT (Ctrl-C) stops gracefully, SIGTERM drains first.

Graceful stop, in order: health turns NOT_SERVING; no new sessions are admitted; every open session
is sent ``closed{reason: "server shutdown"}`` and ends; after ``grace`` seconds whatever is still
open is cancelled; the gRPC server and the gateway stop; the GPU worker finishes its chunk, frees
every story and removes every shared-memory ring file.

Drain (SIGTERM, e.g. Kubernetes stopping a pod): readiness (``/ready``) answers 503 "draining", the
health status of ``shotstream.v1.ShotStream`` turns NOT_SERVING and a new session is refused with
UNAVAILABLE, so a proxy's health check sends new sessions elsewhere; open sessions go on for up to
``drain_grace_s``. The server stops as soon as the last one ends; sessions still open at the grace's
end get ``closed{reason: "server draining"}`` (a client may reconnect through the proxy and continue
from its snapshot), then the graceful stop above runs and the process exits 0.

Load: the health status of ``shotstream.v1.ShotStream`` is SERVING only while a session slot is free
and the server is not draining (the overall ``""`` status stays SERVING while the process serves).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from grpc_health.v1 import health_pb2

from engine_core import ShotStreamEngine

from . import ring
from .gateway import PATH as GATEWAY_PATH
from .gateway import start_gateway
from .grpc_server import SERVICE_NAME, build_grpc_server
from .metrics import ServerMetrics
from .readiness import ReadinessServer
from .sessions import SessionRegistry
from .settings import ServerSettings, url_host
from .worker import GpuWorker

log = logging.getLogger(__name__)
METRICS_HOST = "127.0.0.1"  # /metrics has no auth of its own, so it is never exposed beyond this machine


def warm_up(engine: ShotStreamEngine) -> None:
    """A throwaway two-shot story driven as the worker drives one, so the first client pays no cold start:
    a full first shot reaches every chunk position (compiled-block variants, cuDNN autotuning, lazy
    allocations); the second runs the prepared-ahead path (history encode). Runs before the server accepts
    anyone (no worker race). Each new story still captures its own CUDA graphs during its first shot."""
    t0 = time.perf_counter()
    log.info("warming up the engine (a throwaway full shot and a 1-chunk shot) ...")
    story = engine.open_story("warm-up", 0)
    try:
        for prompt, chunks in (("warm-up", None), ("warm-up, second shot", 1)):
            story.start_shot(prompt, chunks)
            while story.has_work or story.frames_pending:
                if not story.advance() and not story.has_work:
                    story.wait_frames()
            story.prepare_next_shot()
    finally:
        story.close()
    log.info("engine warm-up took %.2f s", time.perf_counter() - t0)


class ShotStreamServer:
    def __init__(self, engine: ShotStreamEngine, settings: ServerSettings | None = None):
        self.engine = engine
        self.settings = settings or ServerSettings()
        if self.settings.default_decoder not in engine.decoders:
            raise ValueError(f"default_decoder {self.settings.default_decoder!r} is not loaded (the engine has "
                             f"{list(engine.decoders)}): give the server a tiny decoder (`--tae FILE`)")
        self.metrics = ServerMetrics()
        self.worker: GpuWorker | None = None
        self.registry: SessionRegistry | None = None
        self.health = None
        self.grpc_port: int | None = None
        self.gateway_port: int | None = None
        self.metrics_port: int | None = None
        self.ready_port: int | None = None
        self._grpc = None
        self._gateway = None
        self._readiness: ReadinessServer | None = None
        self._stopped: asyncio.Event | None = None
        self._stopping = False
        self._draining = False
        self._changed: asyncio.Event | None = None  # a session opened or closed (drain waits on it)
        self._serving: bool | None = None  # the health status last set for SERVICE_NAME
        self._health_updates: set[asyncio.Task] = set()

    async def start(self) -> ShotStreamServer:
        s = self.settings
        self._stopped = asyncio.Event()
        removed = len(ring.cleanup_stale_rings(s.ring_dir))
        if removed:
            log.info("removed %d stale shared-memory ring file(s) left by a previous run", removed)
        if s.warm_up:
            await asyncio.to_thread(warm_up, self.engine)
        self.worker = GpuWorker(self.engine.device, s.max_queued_units)
        self.registry = SessionRegistry(self.engine, s, self.worker, on_chunk=self.metrics.on_chunk)
        self.metrics.bind(self.registry)
        self._changed = asyncio.Event()
        try:
            self._grpc, self.health, self.grpc_port = build_grpc_server(self.registry, s)
            await self._grpc.start()
            self._serving = True
            await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
            self.registry.on_change = self._load_changed
            if s.gateway_port >= 0:
                self._gateway = await start_gateway(self.registry, s)
                self.gateway_port = self._gateway.port
            if s.metrics_port >= 0:
                self.metrics_port = self.metrics.start_http(s.metrics_port, METRICS_HOST)
            if s.ready_port >= 0:
                self._readiness = ReadinessServer(self.registry.not_ready)
                self.ready_port = await self._readiness.start(s.host, s.ready_port)
        except BaseException:
            await self._teardown(0)
            raise
        self._announce()
        return self

    def _announce(self) -> None:
        s, e = self.settings, self.engine
        scheme = "TLS" if s.tls_cert else "plaintext"
        host = url_host(s.host)
        log.info("ShotStream gRPC listening on %s:%d (%s%s)", host, self.grpc_port, scheme,
                 ", bearer token required" if s.token else "")
        if self.gateway_port is not None:
            log.info("engine gateway (WebSocket) on %s://%s:%d%s", "wss" if s.tls_cert else "ws", host,
                     self.gateway_port, GATEWAY_PATH)
        if self.ready_port is not None:
            log.info("readiness on http://%s:%d/ready and /live (status only, no auth)", host, self.ready_port)
        if self.metrics_port is not None:
            log.info("Prometheus metrics on http://%s:%d/metrics (loopback only, whatever --host is)", METRICS_HOST,
                     self.metrics_port)
        log.info("model %s on %s; weights: %s; up to %d sessions", e.config.name, e.device, e.weights_label,
                 s.max_sessions)
        log.info("takes (StartTake) are saved in %s", s.takes_dir.expanduser().resolve())
        if e.random_weights:
            bar = "!" * 100
            log.warning("%s\n!!! RANDOM WEIGHTS: model %r has no checkpoint loaded, so every frame is noise-like.\n"
                        "!!! This only proves the wiring works. Start the server with real weights for real video.\n%s",
                        bar, e.config.name, bar)

    def _load_changed(self) -> None:
        """A session opened or closed, or admission changed: wake a drain; keep the health status in step."""
        if self._changed is not None:
            self._changed.set()
        serving = self.registry is not None and self.registry.not_ready() is None
        if self.health is None or serving == self._serving or self._stopping:
            return
        self._serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        task = asyncio.get_running_loop().create_task(self.health.set(SERVICE_NAME, status))
        self._health_updates.add(task)  # set() only takes a lock: in order, and done at the next turns
        task.add_done_callback(self._health_updates.discard)

    @property
    def draining(self) -> bool:
        return self._draining

    async def drain(self, grace: float | None = None, stop_grace: float = 5.0) -> None:
        """Drain, then stop (see the module docstring); ``grace`` defaults to ``drain_grace_s``. Returns once
        the server has stopped. A stop meanwhile (Ctrl-C) ends the drain at once."""
        if self._stopping or self._draining:
            await self.wait()
            return
        grace = self.settings.drain_grace_s if grace is None else grace
        self._draining = True
        deadline = time.monotonic() + grace
        self.registry.drain()
        log.info("draining: no new sessions; %d open session(s) may go on for up to %.1f s",
                 len(self.registry.sessions), grace)
        while self.registry.sessions and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        if self._stopping:  # stopped by someone else meanwhile
            await self.wait()
            return
        if self.registry.sessions:
            log.info("drain grace over: closing %d session(s) with \"server draining\"", len(self.registry.sessions))
        else:
            log.info("drained: every session ended")
        await self.stop(stop_grace, reason="server draining")

    async def stop(self, grace: float = 5.0, reason: str = "server shutdown") -> None:
        """Graceful stop (idempotent): see the module docstring. Open sessions get ``closed{reason}``."""
        if self._stopping:
            await self.wait()
            return
        self._stopping = True
        deadline = time.monotonic() + grace
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        if self.registry is not None:
            self.registry.shutdown(reason)
            while self.registry.sessions and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if self.registry.sessions:
                log.warning("%d session(s) did not end within %.1f s; cancelling them", len(self.registry.sessions),
                            grace)
        await self._teardown(max(0.0, deadline - time.monotonic()))

    async def _teardown(self, grace: float) -> None:
        if self._gateway is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._gateway.close(), max(grace, 1.0))
            self._gateway = None
        if self._grpc is not None:
            await self._grpc.stop(grace)  # cancels what is left; their sessions are freed on the way out
            self._grpc = None
        if self.registry is not None:  # anything a door failed to free (should be nothing)
            for session in list(self.registry.sessions.values()):
                self.registry.close(session)
        if self.worker is not None:
            await asyncio.to_thread(self.worker.stop)  # frees every story and ring file
        self.metrics.stop_http()
        if self._readiness is not None:
            await self._readiness.close()
            self._readiness = None
        if self._stopped is not None:
            self._stopped.set()
        log.info("ShotStream server stopped")

    async def wait(self) -> None:
        """Until the server has stopped."""
        if self._stopped is None:
            raise RuntimeError("the server was never started")
        await self._stopped.wait()


def serve(settings: ServerSettings, engine: ShotStreamEngine, *, grace: float = 5.0) -> None:
    """Run a server until SIGINT (graceful stop) or SIGTERM (drain for up to ``settings.drain_grace_s``, then
    the graceful stop). Blocks. A SIGINT during a drain stops at once; another SIGTERM changes nothing."""

    async def main() -> None:
        server = ShotStreamServer(engine, settings)
        await server.start()
        loop = asyncio.get_running_loop()
        stop, drain = asyncio.Event(), asyncio.Event()

        def on_sigterm() -> None:
            if drain.is_set():
                log.info("SIGTERM again: already draining (Ctrl-C / SIGINT stops at once)")
            drain.set()

        for sig, handler in ((signal.SIGINT, stop.set), (signal.SIGTERM, on_sigterm)):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows / not the main thread
                loop.add_signal_handler(sig, handler)
        waiter = asyncio.ensure_future(server.wait())
        stopper = asyncio.ensure_future(stop.wait())
        drainer = asyncio.ensure_future(drain.wait())
        try:
            await asyncio.wait({waiter, stopper, drainer}, return_when=asyncio.FIRST_COMPLETED)
            if drain.is_set() and not stop.is_set() and not waiter.done():
                log.info("SIGTERM: draining (grace %.1f s)", settings.drain_grace_s)
                draining = asyncio.ensure_future(server.drain())
                await asyncio.wait({draining, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if draining.done():
                    draining.result()
        finally:
            if not waiter.done():
                log.info("shutting down (grace %.1f s)", grace)
            for task in (waiter, stopper, drainer):
                task.cancel()
            await server.stop(grace)  # at once after a drain (it stopped the server); else the graceful stop

    asyncio.run(main())
