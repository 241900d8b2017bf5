"""Golden wire messages for the Unity plugin's C# core (tests/unity/CoreTests.cs); see tests/wire_goldens.py.

    python tests/unity/make_goldens.py write DIR     # server frames, client expectations, proto field lists
    python tests/unity/make_goldens.py check DIR     # parse the client messages C# wrote to DIR/csharp_client
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wire_goldens  # noqa: E402

CLIENT_NAME = "unity/Test"
# Client messages C# writes in the canonical compact form (the others may order or quote fields differently).
STRICT = ("open_defaults", "open_decoder", "cue_wait", "ack", "pause", "resume", "close", "start_take",
          "start_take_default", "start_take_full", "stop_take", "open_snapshot", "open_fork", "cue_at_chunk",
          "snapshot_request", "snapshot_part", "cue_log_request")

if __name__ == "__main__":
    mode, directory = sys.argv[1], Path(sys.argv[2])
    if mode == "write":
        wire_goldens.write(directory, CLIENT_NAME)
    elif mode == "check":
        print(f"checked {wire_goldens.check(directory / 'csharp_client', CLIENT_NAME, STRICT)} client messages")
    else:
        sys.exit(f"unknown mode {mode!r}: use write or check")
