"""Golden ``Direct`` messages for the plugins' protocol code (Unity's C# core, Godot's GDScript).

Server frames are exactly what the WebSocket gateway sends (``encode_server_message``); each plugin's tests
decode them and check their fields against the values below (kept in sync by hand with the plugin tests).
Client messages are what the plugin tests build; the gateway must parse what they write back to exactly
these. ``fields.txt`` lists the proto field names of every message and enum a ``Direct`` session can
carry (everything reachable from ``ClientMessage`` and ``ServerMessage``), so a proto change that a plugin
does not follow fails that plugin's tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.gateway import encode_server_message, parse_client_message, to_json  # noqa: E402
from service.protocol import pb  # noqa: E402

UNICODE = "Caf\u00e9 \u2014 \U0001F409 \"q\" back\\slash\nnew\ttab \u0001"
U64_MAX = 18_446_744_073_709_551_615
ABOVE_DOUBLE = 9_007_199_254_740_993  # 2**53 + 1: not exact as a double


def pixels(n: int, h: int, w: int, c: int) -> bytes:
    return bytes((i * 7 + 3) % 256 for i in range(n * h * w * c))


# Snapshot bytes: every byte value (0x00 and 0xFF included; base64 with "+" and "/"), then 0xFF 0x00 0xFB.
SNAPSHOT_DATA = bytes(range(256)) + b"\xff\x00\xfb"
SNAPSHOT_TOTAL = 5_000_000_000  # a uint64 above 2**32


def server_messages() -> dict[str, pb.ServerMessage]:
    ring = pb.RingLayout(path="/tmp/shotstream-ring-abc", layout_version=1, slot_count=3, slot_bytes=12_345_678_901,
                         header_bytes=4096, slot_header_bytes=64)
    timing = pb.ChunkTiming(commit_ms=1.5, denoise_ms=20.25, decode_ms=3.0, queue_ms=0.125, since_shot_start_ms=100.5)
    return {
        "opened_inline": pb.ServerMessage(opened=pb.SessionOpened(
            session_id="s-1", protocol_version=1, width=64, height=32, fps=16, frames_first_chunk=9, frames_per_chunk=12,
            max_chunks_per_shot=7, frame_format=pb.FRAME_FORMAT_RGBA8, transport=pb.TRANSPORT_INLINE,
            max_chunks_in_flight=2, model="tiny", random_weights=True)),
        "opened_shm": pb.ServerMessage(opened=pb.SessionOpened(
            session_id="s-2", protocol_version=1, width=832, height=480, fps=16, frames_first_chunk=9, frames_per_chunk=12,
            max_chunks_per_shot=7, frame_format=pb.FRAME_FORMAT_RGB8, transport=pb.TRANSPORT_SHARED_MEMORY,
            max_chunks_in_flight=3, ring=ring, model="wan2.1-t2v-1.3b")),
        "opened_tae": pb.ServerMessage(opened=pb.SessionOpened(
            session_id="s-3", protocol_version=1, width=832, height=480, fps=16, frames_first_chunk=9, frames_per_chunk=12,
            max_chunks_per_shot=7, frame_format=pb.FRAME_FORMAT_RGBA8, transport=pb.TRANSPORT_INLINE,
            max_chunks_in_flight=2, model="wan2.1-t2v-1.3b", decoder=pb.DECODER_TAE)),
        "cue_accepted": pb.ServerMessage(cue_accepted=pb.CueAccepted(event_id="boss", queue_position=2)),
        "cue_accepted_next": pb.ServerMessage(cue_accepted=pb.CueAccepted(event_id="next")),
        "shot_started": pb.ServerMessage(shot_started=pb.ShotStarted(
            event_id=UNICODE, tags=["boss", "act2"], shot_index=4, num_chunks=3, num_frames=33, prompt_tokens=17,
            truncated_tokens=2, setup_ms=12.75)),
        "chunk_shm": pb.ServerMessage(chunk=pb.FrameChunk(
            chunk_seq=U64_MAX, event_id="boss", shot_index=1, chunk_index=2, first_frame=21,
            story_frame=ABOVE_DOUBLE, num_frames=12, width=832, height=480, frame_format=pb.FRAME_FORMAT_RGB8,
            last_in_shot=True, ring_slot=pb.RingSlot(slot=2, sequence=7, offset=4096 + 64, length=14_376_960),
            timing=timing)),
        "chunk_shm_slot0": pb.ServerMessage(chunk=pb.FrameChunk(chunk_seq=1, event_id="a", num_frames=9, width=8,
                                                                height=8, ring_slot=pb.RingSlot())),
        "shot_finished": pb.ServerMessage(shot_finished=pb.ShotFinished(event_id="boss", shot_index=4, chunks=2,
                                                                        frames=21, cut=True)),
        "stats": pb.ServerMessage(stats=pb.Stats(chunks_sent=5, frames_sent=57, chunk_ms_mean=33.5, fps=120.25,
                                                 queued_cues=1, chunks_in_flight=2, paused=True, sessions=3,
                                                 gpu_memory_used_bytes=8_000_000_000)),
        "error_fatal": pb.ServerMessage(error=pb.Error(code=8, message="too many sessions", fatal=True)),
        "error_soft": pb.ServerMessage(error=pb.Error(code=3, message="bad cue", event_id="x")),
        "closed": pb.ServerMessage(closed=pb.SessionClosed(reason="client")),
        "take_started": pb.ServerMessage(take_started=pb.TakeStarted(name="boss-fight",
                                                                     path="/srv/takes/boss-fight.mp4")),
        "take_saved": pb.ServerMessage(take_saved=pb.TakeSaved(name="boss-fight", path="/srv/takes/boss-fight.mp4",
                                                               frames=45, bytes=6_000_000_000, duration_s=2.8125)),
        "take_started_full": pb.ServerMessage(take_started=pb.TakeStarted(
            name="boss-fight", path="/srv/takes/boss-fight.mp4", quality=pb.TAKE_QUALITY_FULL,
            full_path="/srv/takes/boss-fight.full.mp4")),
        "take_saved_full": pb.ServerMessage(take_saved=pb.TakeSaved(
            name="boss-fight", path="/srv/takes/boss-fight.mp4", frames=45, bytes=6_000_000_000, duration_s=2.8125,
            full_path="/srv/takes/boss-fight.full.mp4", full_bytes=U64_MAX)),
        # issue 12: story snapshots (parts of the story's bytes), a restore's answer, and the cue log (one page)
        "snapshot": pb.ServerMessage(snapshot=pb.SnapshotPart(
            data=SNAPSHOT_DATA, total_bytes=SNAPSHOT_TOTAL, index=1, count=3, next_shot_index=4)),
        "restored": pb.ServerMessage(restored=pb.SnapshotRestored(next_shot_index=3, story_frames=ABOVE_DOUBLE)),
        "cue_log": pb.ServerMessage(cue_log=pb.CueLog(
            global_caption=UNICODE, seed=U64_MAX, decoder=pb.DECODER_TAE, first_shot_index=2, next_shot=4,
            dropped_shots=1, entries=[
                pb.CueLogEntry(cue=pb.Cue(event_id="walk", prompt="The keeper climbs.", tags=["a", "b"], num_chunks=3,
                                          mode=pb.CUE_MODE_WAIT),
                               shot_index=2, chunks=1, cut=True, finished=True),
                pb.CueLogEntry(cue=pb.Cue(event_id="boom", prompt="A wave \U0001F30A hits.", num_chunks=2,
                                          mode=pb.CUE_MODE_CUT, at_chunk=1),
                               shot_index=3, chunks=1),
            ])),
    }


def chunk_messages() -> dict[str, pb.ServerMessage]:
    """Inline chunks, sent as binary SSC1 frames: 2 frames of 5x3 pixels, byte i = (7i + 3) mod 256."""
    out = {}
    for name, fmt, c in (("chunk_rgb", pb.FRAME_FORMAT_RGB8, 3), ("chunk_rgba", pb.FRAME_FORMAT_RGBA8, 4)):
        out[name] = pb.ServerMessage(chunk=pb.FrameChunk(
            chunk_seq=3, event_id="e\u00e9", shot_index=1, chunk_index=0, first_frame=0, story_frame=9, num_frames=2,
            width=5, height=3, frame_format=fmt, last_in_shot=False, pixels=pixels(2, 3, 5, c),
            timing=pb.ChunkTiming(denoise_ms=2.5)))
    return out


UNKNOWN_FIELDS = (b'{"futureKind": {"x": [1, {"y": null}]}, '
                  b'"cueAccepted": {"eventId": "f", "newField": "z", "queuePosition": 1}}')


def client_messages(client_name: str) -> dict[str, pb.ClientMessage]:
    """What a plugin's tests build; the gateway must parse what they write back to exactly these."""
    return {
        "open": pb.ClientMessage(open=pb.OpenSession(protocol_version=1, client_name=client_name, global_caption=UNICODE,
                                                     seed=U64_MAX, frame_format=pb.FRAME_FORMAT_RGBA8,
                                                     transport=pb.TRANSPORT_SHARED_MEMORY, max_chunks_in_flight=3)),
        "open_defaults": pb.ClientMessage(open=pb.OpenSession(protocol_version=1)),
        "open_decoder": pb.ClientMessage(open=pb.OpenSession(protocol_version=1, client_name=client_name, seed=7,
                                                             frame_format=pb.FRAME_FORMAT_RGBA8,
                                                             transport=pb.TRANSPORT_INLINE, max_chunks_in_flight=2,
                                                             decoder=pb.DECODER_TAE)),
        "cue": pb.ClientMessage(cue=pb.Cue(event_id="boss", prompt="A dragon \U0001F409 lands.", tags=["a", "b"],
                                           num_chunks=2, mode=pb.CUE_MODE_CUT)),
        "cue_wait": pb.ClientMessage(cue=pb.Cue(prompt="p", mode=pb.CUE_MODE_WAIT)),
        "ack": pb.ClientMessage(ack=pb.Ack(chunk_seq=ABOVE_DOUBLE)),
        "pause": pb.ClientMessage(pause=pb.Pause()),
        "resume": pb.ClientMessage(resume=pb.Resume()),
        "close": pb.ClientMessage(close=pb.Close()),
        "start_take": pb.ClientMessage(start_take=pb.StartTake(name="boss-fight")),
        "start_take_default": pb.ClientMessage(start_take=pb.StartTake()),
        "start_take_full": pb.ClientMessage(start_take=pb.StartTake(name="boss-fight", quality=pb.TAKE_QUALITY_FULL)),
        "stop_take": pb.ClientMessage(stop_take=pb.StopTake()),
        # issue 12: continue a saved story (its first part, then the rest), fork a session, a cut at a chunk, ask for a
        # snapshot and for the cue log
        "open_snapshot": pb.ClientMessage(open=pb.OpenSession(
            protocol_version=1, client_name=client_name, frame_format=pb.FRAME_FORMAT_RGBA8,
            transport=pb.TRANSPORT_INLINE, max_chunks_in_flight=2,
            snapshot=pb.SnapshotPart(data=SNAPSHOT_DATA, total_bytes=70_000))),
        "open_fork": pb.ClientMessage(open=pb.OpenSession(protocol_version=1, client_name=client_name,
                                                          fork=pb.Fork(session_id="s-1", wait_for_boundary=True))),
        "cue_at_chunk": pb.ClientMessage(cue=pb.Cue(event_id="boom", prompt="A wave hits.", num_chunks=2,
                                                    mode=pb.CUE_MODE_CUT, at_chunk=3)),
        "snapshot_request": pb.ClientMessage(snapshot=pb.SnapshotRequest(wait_for_boundary=True)),
        "snapshot_part": pb.ClientMessage(snapshot_part=pb.SnapshotPart(data=SNAPSHOT_DATA, total_bytes=70_000,
                                                                        index=2)),
        "cue_log_request": pb.ClientMessage(cue_log=pb.CueLogRequest(from_shot=5)),
    }


def direct_types() -> tuple[list[str], list[str]]:
    """Names of every message and enum reachable from ClientMessage and ServerMessage, in proto order."""
    messages: list[str] = []
    enums: list[str] = []
    todo = [pb.ClientMessage.DESCRIPTOR, pb.ServerMessage.DESCRIPTOR]
    while todo:
        desc = todo.pop(0)
        if desc.name in messages:
            continue
        messages.append(desc.name)
        for field in desc.fields:
            if field.message_type is not None:
                todo.append(field.message_type)
            if field.enum_type is not None and field.enum_type.name not in enums:
                enums.append(field.enum_type.name)
    order = list(pb.DESCRIPTOR.message_types_by_name)
    enum_order = list(pb.DESCRIPTOR.enum_types_by_name)
    return sorted(messages, key=order.index), sorted(enums, key=enum_order.index)


def field_lines() -> list[str]:
    """``Message field,field,...`` and ``enum:Enum VALUE,VALUE,...`` lines, proto field names in proto order."""
    messages, enums = direct_types()
    lines = [name + " " + ",".join(f.name for f in pb.DESCRIPTOR.message_types_by_name[name].fields)
             for name in messages]
    lines += ["enum:" + name + " " + ",".join(v.name for v in pb.DESCRIPTOR.enum_types_by_name[name].values)
              for name in enums]
    return lines


def write(out: Path, client_name: str) -> None:
    """Writes OUT/server/*.json|*.bin, OUT/client/*.json and OUT/fields.txt."""
    (out / "server").mkdir(parents=True, exist_ok=True)
    (out / "client").mkdir(parents=True, exist_ok=True)
    for name, msg in server_messages().items():
        frame = encode_server_message(msg)
        assert isinstance(frame, str), name
        (out / "server" / f"{name}.json").write_bytes(frame.encode("utf-8"))
    for name, msg in chunk_messages().items():
        frame = encode_server_message(msg)
        assert isinstance(frame, bytes) and frame[:4] == b"SSC1", name
        (out / "server" / f"{name}.bin").write_bytes(frame)
    # forward compatibility: a newer server's unknown fields (and an unknown kind next to a known one)
    (out / "server" / "unknown_fields.json").write_bytes(UNKNOWN_FIELDS)
    for name, msg in client_messages(client_name).items():
        (out / "client" / f"{name}.json").write_bytes(to_json(msg).encode("utf-8"))
    (out / "fields.txt").write_text("\n".join(field_lines()) + "\n", encoding="utf-8")


def check(got_dir: Path, client_name: str, strict_names: tuple[str, ...] = ()) -> int:
    """A plugin wrote GOT_DIR/NAME.json for every client message: the gateway must parse each to the same message.

    Messages named in ``strict_names`` must also be byte-identical to the canonical compact JSON.
    Returns how many were checked; raises AssertionError naming the first difference.
    """
    expected = client_messages(client_name)
    names = sorted(p.stem for p in got_dir.glob("*.json"))
    assert names == sorted(expected), f"the plugin wrote {names}, expected {sorted(expected)}"
    for name, want in expected.items():
        text = (got_dir / f"{name}.json").read_bytes().decode("utf-8")
        got = parse_client_message(text)
        assert got == want, f"{name}: the plugin wrote {text!r}, which parses to {got}, expected {want}"
        canonical = to_json(want).replace(", ", ",").replace(": ", ":")
        assert name not in strict_names or text == canonical, f"{name}: {text!r} differs from {canonical!r}"
    return len(expected)
