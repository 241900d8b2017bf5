"""Checks on what clients send, shared by both doors and RenderStory: each raises the ProtocolError a client
gets, with a message that says what to change (and the setting behind every limit)."""

from __future__ import annotations

import errno

import grpc

from .protocol import ProtocolError, check_protocol_version, pb
from .settings import ServerSettings

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def check_cue_labels(cue: pb.Cue, settings: ServerSettings) -> None:
    """Bounds on a cue's echoed labels (event id, tags), which the server keeps while the cue is queued."""
    eid = cue.event_id[:settings.max_event_id_chars]
    if len(cue.event_id) > settings.max_event_id_chars:
        raise ProtocolError(INVALID, f"event_id has {len(cue.event_id)} characters; the limit is "
                                     f"{settings.max_event_id_chars} (max_event_id_chars)", event_id=eid)
    if len(cue.tags) > settings.max_tags:
        raise ProtocolError(INVALID, f"the cue has {len(cue.tags)} tags; the limit is {settings.max_tags} (max_tags)",
                            event_id=eid)
    longest = max((len(t) for t in cue.tags), default=0)
    if longest > settings.max_tag_chars:
        raise ProtocolError(INVALID, f"a tag has {longest} characters; the limit is {settings.max_tag_chars} "
                                     "(max_tag_chars)", event_id=eid)


def check_prompt(prompt: str, num_chunks: int, max_chars: int, max_chunks: int, event_id: str = "") -> None:
    """The checks a shot's prompt and length pass before a shot is queued (Direct cues and RenderStory shots)."""
    if not prompt.strip():
        raise ProtocolError(INVALID, "the prompt is empty: describe the shot", event_id=event_id)
    if len(prompt) > max_chars:
        raise ProtocolError(INVALID, f"the prompt has {len(prompt)} characters; the limit is {max_chars}",
                            event_id=event_id)
    if num_chunks > max_chunks:
        raise ProtocolError(INVALID, f"num_chunks {num_chunks} is out of range 1..{max_chunks} (0 = full shot)",
                            event_id=event_id)


def engine_failure(what: str, exc: BaseException) -> ProtocolError:
    """The fatal error a client gets when the engine fails for its session: out of memory is RESOURCE_EXHAUSTED."""
    oom = "out of memory" in str(exc).lower() or getattr(exc, "errno", None) in (errno.ENOSPC, errno.ENOMEM)
    code = grpc.StatusCode.RESOURCE_EXHAUSTED if oom else grpc.StatusCode.INTERNAL
    return ProtocolError(code, f"{what}: {type(exc).__name__}: {exc}", fatal=True)


def check_open(msg: pb.OpenSession, settings: ServerSettings) -> None:
    check_protocol_version(msg.protocol_version)
    if len(msg.client_name) > settings.max_client_name_chars:
        raise ProtocolError(INVALID, f"client_name has {len(msg.client_name)} characters; the limit is "
                                     f"{settings.max_client_name_chars} (max_client_name_chars)", fatal=True)
    if len(msg.global_caption) > settings.max_caption_chars:
        raise ProtocolError(INVALID, f"global caption has {len(msg.global_caption)} characters; the limit is "
                                     f"{settings.max_caption_chars}", fatal=True)
    if msg.frame_format not in (pb.FRAME_FORMAT_UNSPECIFIED, pb.FRAME_FORMAT_RGB8, pb.FRAME_FORMAT_RGBA8):
        raise ProtocolError(INVALID, f"unknown frame format {msg.frame_format}", fatal=True)
    if msg.transport not in (pb.TRANSPORT_UNSPECIFIED, pb.TRANSPORT_INLINE, pb.TRANSPORT_SHARED_MEMORY):
        raise ProtocolError(INVALID, f"unknown transport {msg.transport}", fatal=True)
    if msg.max_chunks_in_flight > settings.max_chunks_in_flight:
        raise ProtocolError(INVALID, f"max_chunks_in_flight {msg.max_chunks_in_flight} exceeds the server limit "
                                     f"{settings.max_chunks_in_flight}", fatal=True)
