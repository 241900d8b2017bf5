"""Prometheus metrics of one server, in their own registry (never the process-global one).

Counters and the latency histogram are fed by :meth:`ServerMetrics.on_chunk`, which the GPU worker
calls after every chunk (the registry's ``on_chunk`` hook); gauges (open sessions and slots, whether
it takes sessions, queue depth, GPU memory, recent FPS) are computed when scraped, from the live
session registry and NVML.

``start_http(port)`` serves ``/metrics`` (port 0: any free port; the bound port is returned).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

from .telemetry import gpu_info

if TYPE_CHECKING:
    from .sessions import SessionRegistry

log = logging.getLogger(__name__)

# Chunk latencies: tens of ms (tiny, CPU) to ~1 s (1.3B on a GPU).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.5, 5.0, 10.0)


class ServerMetrics:
    def __init__(self, fps_window_s: float = 10.0):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.chunk_seconds = Histogram("shotstream_chunk_seconds", "GPU time to generate, decode and pack one chunk",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.chunks = Counter("shotstream_chunks", "Frame chunks generated", registry=r)
        self.frames = Counter("shotstream_frames", "Video frames generated", registry=r)
        self.sessions = Gauge("shotstream_sessions", "Open sessions (Direct, gateway and RenderStory)", registry=r)
        self.sessions_max = Gauge("shotstream_sessions_max", "Session slots (max_sessions): capacity", registry=r)
        self.accepting = Gauge("shotstream_accepting_sessions",
                               "1 while the server takes new sessions (a free slot, not draining), else 0 "
                               "(what /ready and the gRPC health status say)", registry=r)
        self.queue_depth = Gauge("shotstream_queue_depth",
                                 "Queued cues plus sessions ready for the GPU (work waiting for the worker)",
                                 registry=r)
        self.gpu_memory_used = Gauge("shotstream_gpu_memory_used_bytes",
                                     "GPU memory in use on the engine's device (all processes; 0 without a GPU)",
                                     registry=r)
        self.gpu_memory_total = Gauge("shotstream_gpu_memory_total_bytes", "GPU memory of the engine's device",
                                      registry=r)
        self.fps = Gauge("shotstream_generated_fps",
                         f"Frames generated per second of wall time over the last {fps_window_s:g} s", registry=r)
        self._window = fps_window_s
        self._recent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._httpd = None
        self._thread: threading.Thread | None = None
        self.fps.set_function(self.recent_fps)

    # -- feeding ------------------------------------------------------------------------------

    def on_chunk(self, elapsed_s: float, frames: int) -> None:
        """One chunk was generated (GPU worker thread)."""
        self.chunk_seconds.observe(elapsed_s)
        self.chunks.inc()
        self.frames.inc(frames)
        now = time.monotonic()
        with self._lock:
            self._recent.append((now, frames))
            self._trim(now)

    def bind(self, registry: SessionRegistry) -> None:
        """Compute the gauges from ``registry`` (and its engine's device) at scrape time."""
        device = registry.engine.device
        self.sessions.set_function(lambda: len(registry.sessions))
        self.sessions_max.set(registry.settings.max_sessions)
        self.accepting.set_function(lambda: 1 if registry.not_ready() is None else 0)
        self.queue_depth.set_function(lambda: _queue_depth(registry))
        self.gpu_memory_used.set_function(lambda: (gpu_info(device) or {}).get("memory_used_bytes", 0))
        self.gpu_memory_total.set_function(lambda: (gpu_info(device) or {}).get("memory_total_bytes", 0))

    def recent_fps(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            frames = sum(n for _, n in self._recent)
        return frames / self._window

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self._window:
            self._recent.popleft()

    # -- exposition ---------------------------------------------------------------------------

    def start_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on ``host:port`` in a daemon thread; 0 = any free port. Returns the bound port."""
        if self._httpd is not None:
            raise RuntimeError("the metrics endpoint is already running")
        self._httpd, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return self._httpd.server_port

    def stop_http(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            if self._thread is not None:
                self._thread.join(5)


def _queue_depth(registry: SessionRegistry) -> int:
    depth = 0
    for session in list(registry.sessions.values()):
        depth += session.queued_cues + (1 if session.next_unit() is not None else 0)  # no stats(): it queries NVML
    return depth
