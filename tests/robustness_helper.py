"""Child processes for tests/test_robustness.py (a real process is what SIGKILL needs).

``python tests/robustness_helper.py server RING_DIR``
    A ShotStream server (tiny random engine, gRPC on a free port, no gateway) whose shared-memory
    rings go to RING_DIR. Prints ``{"grpc_port": N, "pid": P}`` once it is serving, then runs until
    it is killed.

``python tests/robustness_helper.py client ADDRESS RING_DIR``
    A same-host SDK client: opens a shared-memory session (2 credits), cues a full 7-chunk shot,
    takes the first chunk (the SDK acks it), prints ``{"session_id", "ring_path", "chunk_seq"}`` and
    then holds everything (channel, stream, ring mapping) until it is killed or stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CAPTION, SEED = "A lighthouse on a stormy coast.", 5


def _server(ring_dir: str) -> None:
    from engine_core import TINY, ShotStreamEngine
    from service.server import ShotStreamServer
    from service.settings import ServerSettings

    async def main() -> None:
        engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
        settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, ring_dir=Path(ring_dir))
        server = ShotStreamServer(engine, settings)
        await server.start()
        print(json.dumps({"grpc_port": server.grpc_port, "pid": os.getpid()}), flush=True)
        await server.wait()

    asyncio.run(main())


def _client(address: str, ring_dir: str) -> None:
    from service.sdk import Chunk, ShotStreamClient

    client = ShotStreamClient(address)
    session = client.open_session(CAPTION, seed=SEED, transport="shared_memory", chunks_in_flight=2,
                                  client_name="doomed")
    assert Path(session.info.ring_path).parent == Path(ring_dir), session.info.ring_path
    session.cue("The keeper climbs the endless stairs.", num_chunks=7, event_id="doomed-shot")
    for event in session:
        if isinstance(event, Chunk):
            print(json.dumps({"session_id": session.session_id, "ring_path": session.info.ring_path,
                              "chunk_seq": event.chunk_seq}), flush=True)
            break
    sys.stdin.read()  # hold the session (and its unacked chunks) until killed


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    {"server": _server, "client": _client}[role](*rest)
