"""The generated ``shotstream.v1`` messages, plus the few helpers every door (gRPC, WebSocket) shares.

The generated modules come from ``proto/`` via ``scripts/gen_proto.sh`` (run by ``scripts/setup.sh``).
"""

from __future__ import annotations

import grpc
import numpy as np

try:
    from shotstream.v1 import shotstream_pb2 as pb
    from shotstream.v1 import shotstream_pb2_grpc as pb_grpc
except ImportError as exc:  # pragma: no cover - only when setup was skipped
    raise ImportError("generated protocol code is missing: run `bash scripts/gen_proto.sh` (or scripts/setup.sh)") from exc

PROTOCOL_VERSION = pb.PROTOCOL_VERSION_CURRENT

__all__ = ["pb", "pb_grpc", "PROTOCOL_VERSION", "channels", "pack_frames", "error_message", "ProtocolError"]


class ProtocolError(Exception):
    """A client mistake with the gRPC status it maps to; ``fatal`` ends the session."""

    def __init__(self, code: grpc.StatusCode, message: str, *, event_id: str = "", fatal: bool = False):
        super().__init__(message)
        self.code, self.message, self.event_id, self.fatal = code, message, event_id, fatal


def channels(frame_format: int) -> int:
    return 4 if frame_format == pb.FRAME_FORMAT_RGBA8 else 3


def pack_frames(frames: np.ndarray, frame_format: int, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``[n, H, W, 3]`` -> ``[n, H, W, C]`` in the wire format (RGBA gets alpha 255)."""
    if frame_format != pb.FRAME_FORMAT_RGBA8:
        if out is None:
            return frames
        out[...] = frames
        return out
    n, h, w, _ = frames.shape
    out = np.empty((n, h, w, 4), np.uint8) if out is None else out
    out[..., :3] = frames
    out[..., 3] = 255
    return out


def error_message(exc: ProtocolError) -> pb.ServerMessage:
    return pb.ServerMessage(error=pb.Error(code=exc.code.value[0], message=exc.message, event_id=exc.event_id,
                                           fatal=exc.fatal))
