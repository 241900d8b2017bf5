"""``shotstream soak``: many careless clients against one in-process server for a fixed time.

Each client thread loops until the deadline: open a session (random transport and credits), then a
random mix of cues (wait / cut / too many / bad), pauses and resumes, takes, bad acks, reading, and
an end that is a clean close or a kill (the channel dropped mid-session). The report counts sessions,
chunks and errors by status code, and the server process's RSS, open fds, threads and ring files
before and after (after: once every session has been freed), so leaks show as growth.
"""

from __future__ import annotations

import gc
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from .background import BackgroundServer
from .protocol import pb
from .sdk import Chunk, ServerError, ShotFinished, ShotStreamClient, ShotStreamError
from .settings import ServerSettings

PROMPTS = ("The door opens.", "Rain on the window.", "A car passes.", "The hero turns around.", "Lights flicker.")


def process_figures(ring_dir: Path) -> dict[str, Any]:
    """RSS (MiB), open fds, threads and ring files of this process (Linux /proc)."""
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1), "fds": len(os.listdir("/proc/self/fd")),
            "threads": int(fields["Threads"]), "ring_files": sum(1 for _ in ring_dir.iterdir())}


class _Client(threading.Thread):
    def __init__(self, address: str, deadline: float, seed: int, tally: Counter, lock: threading.Lock):
        super().__init__(name=f"soak-{seed}", daemon=True)
        self.address, self.deadline, self.rng, self.tally, self.lock = address, deadline, random.Random(seed), tally, lock

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.tally[key] += n

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            try:
                self.one_session()
            except ShotStreamError as exc:
                self.count(f"error:{exc.code.name}")
            except Exception as exc:  # noqa: BLE001 - a soak reports client-side surprises, it does not stop
                self.count(f"client_exception:{type(exc).__name__}")

    def one_session(self) -> None:
        rng = self.rng
        client = ShotStreamClient(self.address)
        killed = False
        try:
            session = client.open_session("A soak test city.", seed=rng.randrange(1000),
                                          transport=rng.choice(["inline", "shared_memory"]),
                                          chunks_in_flight=rng.randint(1, 4), client_name=f"soak/{rng.random()}")
            self.count("sessions")
            session.cue(rng.choice(PROMPTS), num_chunks=rng.randint(1, 3))
            for step in range(rng.randint(5, 40)):  # bounded: each step reads at most one event
                action = rng.random()
                if action < 0.15:
                    session.cue(rng.choice(PROMPTS), num_chunks=rng.randint(1, 3), mode=rng.choice(["wait", "cut"]))
                elif action < 0.18:
                    for _ in range(20):  # floods the cue queue: draws RESOURCE_EXHAUSTED
                        session.cue(rng.choice(PROMPTS), num_chunks=1)
                elif action < 0.21:
                    session.cue("", num_chunks=1)  # INVALID_ARGUMENT
                elif action < 0.24:
                    session._send(pb.ClientMessage(ack=pb.Ack(chunk_seq=rng.randrange(1, 10**6))))  # bad ack
                elif action < 0.27:
                    session.pause()
                    session.resume()
                elif action < 0.29:
                    session.start_take(f"soak-{rng.getrandbits(48):012x}")
                elif action < 0.31:
                    session.stop_take()
                ev = session.next_event()
                if ev is None:
                    break
                if isinstance(ev, Chunk):
                    self.count("chunks")
                elif isinstance(ev, ShotFinished):
                    self.count("shots")
                    session.cue(rng.choice(PROMPTS), num_chunks=rng.randint(1, 3))
                elif isinstance(ev, ServerError):
                    self.count(f"error:{ev.code.name}")
            if rng.random() < 0.3:
                killed = True
                self.count("kills")
            else:
                session.close()
        finally:
            client.close()  # a kill: the channel goes away with the session still open
            if killed:
                time.sleep(0)


def run_soak(engine: Any, duration_s: float, clients: int, seed: int, work_dir: Path) -> dict[str, Any]:
    """Run the soak; returns the report (also what ``shotstream soak`` prints)."""
    ring_dir, takes_dir = work_dir / "rings", work_dir / "takes"
    ring_dir.mkdir(parents=True, exist_ok=True)
    settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, ring_dir=ring_dir, takes_dir=takes_dir,
                              max_sessions=clients, max_sessions_per_peer=clients)
    tally: Counter = Counter()
    lock = threading.Lock()
    with BackgroundServer(engine, settings, grace=5.0) as server:
        gc.collect()
        before = process_figures(ring_dir)
        t0 = time.monotonic()
        threads = [_Client(server.address, t0 + duration_s, seed + i, tally, lock) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(duration_s + 120)
        wall = time.monotonic() - t0
        for _ in range(300):  # bounded: sessions of killed clients are freed within a few seconds
            if not server.server.registry.sessions:
                break
            time.sleep(0.05)
        open_after = len(server.server.registry.sessions)
        for _ in range(100):  # bounded: the GPU worker frees a closed session's ring between chunks
            if not any(ring_dir.iterdir()):
                break
            time.sleep(0.05)
        gc.collect()
        after = process_figures(ring_dir)
    errors = {k.split(":", 1)[1]: v for k, v in sorted(tally.items()) if k.startswith("error:")}
    surprises = {k.split(":", 1)[1]: v for k, v in sorted(tally.items()) if k.startswith("client_exception:")}
    return {"duration_s": round(wall, 1), "clients": clients, "sessions": tally["sessions"], "chunks": tally["chunks"],
            "shots": tally["shots"], "kills": tally["kills"], "errors_by_code": errors,
            "client_exceptions": surprises, "sessions_open_after": open_after, "before": before, "after": after,
            "takes_written": sum(1 for p in takes_dir.glob("*.mp4")) if takes_dir.exists() else 0,
            "grpc": grpc.__version__}
