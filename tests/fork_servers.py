"""Start N `shotstream serve` processes that share one interpreter start-up (tests only).

    python tests/fork_servers.py N LOG_DIR [serve options ...]

Imports what `serve` needs once (torch, transformers, grpc: most of a server's start-up on a small
CPU), then forks N children; child i runs exactly `shotstream serve [options] --takes-dir
LOG_DIR/gpu{i}-takes` (service.cli.main) with its output in LOG_DIR/gpu{i}.log. Nothing runs a
torch operation or opens a gRPC channel before the fork. Prints one JSON line with the children's
pids, then one JSON line {"pid", "rc"} as each child exits; exits when all have. SIGINT/SIGTERM to
this process are passed on to the children that are still running.
"""

from __future__ import annotations

import json
import os
import signal
import sys

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import engine_core  # noqa: E402,F401 - the heavy imports, once
import engine_core.fast_path  # noqa: E402,F401
import service.server  # noqa: E402,F401
from service.cli import main  # noqa: E402


def run(n: int, log_dir: str, options: list[str]) -> int:
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            fd = os.open(os.path.join(log_dir, f"gpu{i}.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = 1
            try:
                code = main(["serve", *options, "--takes-dir", os.path.join(log_dir, f"gpu{i}-takes")])
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
    left = set(pids)

    def forward(sig, _frame):
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    print(json.dumps({"pids": pids}), flush=True)
    while left:
        pid, status = os.wait()
        left.discard(pid)
        print(json.dumps({"pid": pid, "rc": os.waitstatus_to_exitcode(status)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(int(sys.argv[1]), sys.argv[2], sys.argv[3:]))
