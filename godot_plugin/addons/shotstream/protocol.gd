@tool
class_name ShotStreamProtocol
extends RefCounted
## The [code]shotstream.v1[/code] messages as the WebSocket engine gateway carries them.
##
## Client messages are written as proto3 JSON text (lowerCamelCase keys, enum names, 64-bit integers
## as strings, default values left out), byte for byte what Python's
## [code]json_format.MessageToJson[/code] writes (compact). Server messages are read from JSON text
## frames and from binary [code]SSC1[/code] chunk frames (magic, u32 little-endian header length,
## FrameChunk JSON header, raw pixels).[br][br] [b]Decoded messages[/b] are Dictionaries keyed by
## the proto field names (snake_case) holding [b]every[/b] field of the message: a key missing from
## the JSON reads as its default (0, 0.0, false, "", an empty PackedStringArray / PackedByteArray,
## an empty Array for a repeated message field such as CueLog.entries, whose items are
## Dictionaries), enums are ints (see the enums below), and a message-typed field that is not set is
## [code]null[/code]. [code]bytes[/code] fields travel as base64 (as json_format writes them) and
## read as PackedByteArray. Unknown keys and unknown message kinds are ignored (a newer server stays
## readable).[br][br] [b]uint64[/b] fields (seed, chunk_seq, story_frame, bytes, ...) are Godot ints
## holding the same 64 bits. Values of 2^63 and above (never reached in practice: they count chunks,
## frames or bytes) read as negative ints; [method u64_to_string] prints them unsigned and the
## encoder writes them back unsigned, so a [code]chunk_seq[/code] always round-trips exactly into
## its [code]ack[/code]. Values above 2^64 - 1, negative values and inexact JSON numbers are
## errors.[br][br] [b]Errors[/b]: decoders return a Dictionary whose [code]"error"[/code] key is ""
## on success and says what is wrong otherwise. Encoders return "" (and [method
## @GlobalScope.push_error]) for a field that does not exist or has the wrong type.[br][br]
## [b]Keeping up with the proto[/b]: [constant MESSAGES] and [constant ENUMS] list every field of
## every message and every value of every enum a Direct session carries, in proto order. The tests
## compare their names and order with the list the Python side derives from
## [code]proto/shotstream/v1/shotstream.proto[/code], so a proto change the addon does not follow
## fails the tests. Types are not compared: the proto's rules forbid changing a field's type within
## v1 (a new type means a new field).

## FrameFormat values.
enum FrameFormat { UNSPECIFIED = 0, RGB8 = 1, RGBA8 = 2 }
## Transport values (GDScript can only use INLINE: no shared memory).
enum Transport { UNSPECIFIED = 0, INLINE = 1, SHARED_MEMORY = 2 }
## Decoder values: what turns the model's latents into frames (UNSPECIFIED: the server's default;
## WAN: the Wan2.1 VAE, exact; TAE: a tiny preview decoder, much faster, somewhat lower quality).
enum Decoder { UNSPECIFIED = 0, WAN = 1, TAE = 2 }
## TakeQuality values (UNSPECIFIED reads as LIVE: the frames as the session saw them; FULL: also
## the recorded shots re-decoded with the Wan VAE after the take stops).
enum TakeQuality { UNSPECIFIED = 0, LIVE = 1, FULL = 2 }
## CueMode values.
enum CueMode { UNSPECIFIED = 0, WAIT = 1, CUT = 2 }

## The only protocol version this addon speaks (OpenSession.protocol_version).
const PROTOCOL_VERSION := 1
## Magic of a binary chunk frame (its first 4 bytes, ASCII).
const CHUNK_MAGIC := "SSC1"
## Bytes before the JSON header of a binary chunk frame: magic + u32 length.
const CHUNK_PREFIX_BYTES := 8

## Proto enum value names, index = number.
const ENUMS := {
	"FrameFormat": ["FRAME_FORMAT_UNSPECIFIED", "FRAME_FORMAT_RGB8", "FRAME_FORMAT_RGBA8"],
	"Transport": ["TRANSPORT_UNSPECIFIED", "TRANSPORT_INLINE", "TRANSPORT_SHARED_MEMORY"],
	"Decoder": ["DECODER_UNSPECIFIED", "DECODER_WAN", "DECODER_TAE"],
	"TakeQuality": ["TAKE_QUALITY_UNSPECIFIED", "TAKE_QUALITY_LIVE", "TAKE_QUALITY_FULL"],
	"CueMode": ["CUE_MODE_UNSPECIFIED", "CUE_MODE_WAIT", "CUE_MODE_CUT"],
}

## Every message of a Direct session: name -> [[proto field name, type], ...] in proto order.
## A type is "uint32", "uint64", "double", "bool", "string" or "bytes", an enum of [constant ENUMS],
## a message of this table, or one of those after "repeated ".
const MESSAGES := {
	"ClientMessage":
	[
		["open", "OpenSession"],
		["cue", "Cue"],
		["ack", "Ack"],
		["pause", "Pause"],
		["resume", "Resume"],
		["close", "Close"],
		["start_take", "StartTake"],
		["stop_take", "StopTake"],
		["snapshot", "SnapshotRequest"],
		["snapshot_part", "SnapshotPart"],
		["cue_log", "CueLogRequest"],
	],
	"OpenSession":
	[
		["protocol_version", "uint32"],
		["client_name", "string"],
		["global_caption", "string"],
		["seed", "uint64"],
		["frame_format", "FrameFormat"],
		["transport", "Transport"],
		["max_chunks_in_flight", "uint32"],
		["decoder", "Decoder"],
		["snapshot", "SnapshotPart"],
		["fork", "Fork"],
	],
	"SnapshotPart":
	[
		["data", "bytes"],
		["total_bytes", "uint64"],
		["index", "uint32"],
		["count", "uint32"],
		["next_shot_index", "uint32"],
	],
	"SnapshotRequest": [["wait_for_boundary", "bool"]],
	"Fork": [["session_id", "string"], ["wait_for_boundary", "bool"]],
	"CueLogRequest": [["from_shot", "uint32"]],
	"Cue":
	[
		["event_id", "string"],
		["prompt", "string"],
		["tags", "repeated string"],
		["num_chunks", "uint32"],
		["mode", "CueMode"],
		["at_chunk", "uint32"],
	],
	"Ack": [["chunk_seq", "uint64"]],
	"Pause": [],
	"Resume": [],
	"Close": [],
	"StartTake": [["name", "string"], ["quality", "TakeQuality"]],
	"StopTake": [],
	"ServerMessage":
	[
		["opened", "SessionOpened"],
		["cue_accepted", "CueAccepted"],
		["shot_started", "ShotStarted"],
		["chunk", "FrameChunk"],
		["shot_finished", "ShotFinished"],
		["stats", "Stats"],
		["error", "Error"],
		["closed", "SessionClosed"],
		["take_started", "TakeStarted"],
		["take_saved", "TakeSaved"],
		["snapshot", "SnapshotPart"],
		["restored", "SnapshotRestored"],
		["cue_log", "CueLog"],
	],
	"SessionOpened":
	[
		["session_id", "string"],
		["protocol_version", "uint32"],
		["width", "uint32"],
		["height", "uint32"],
		["fps", "uint32"],
		["frames_first_chunk", "uint32"],
		["frames_per_chunk", "uint32"],
		["max_chunks_per_shot", "uint32"],
		["frame_format", "FrameFormat"],
		["transport", "Transport"],
		["max_chunks_in_flight", "uint32"],
		["ring", "RingLayout"],
		["model", "string"],
		["random_weights", "bool"],
		["decoder", "Decoder"],
	],
	"RingLayout":
	[
		["path", "string"],
		["layout_version", "uint32"],
		["slot_count", "uint32"],
		["slot_bytes", "uint64"],
		["header_bytes", "uint32"],
		["slot_header_bytes", "uint32"],
	],
	"CueAccepted": [["event_id", "string"], ["queue_position", "uint32"]],
	"ShotStarted":
	[
		["event_id", "string"],
		["tags", "repeated string"],
		["shot_index", "uint32"],
		["num_chunks", "uint32"],
		["num_frames", "uint32"],
		["prompt_tokens", "uint32"],
		["truncated_tokens", "uint32"],
		["setup_ms", "double"],
	],
	"FrameChunk":
	[
		["chunk_seq", "uint64"],
		["event_id", "string"],
		["shot_index", "uint32"],
		["chunk_index", "uint32"],
		["first_frame", "uint32"],
		["story_frame", "uint64"],
		["num_frames", "uint32"],
		["width", "uint32"],
		["height", "uint32"],
		["frame_format", "FrameFormat"],
		["last_in_shot", "bool"],
		["pixels", "bytes"],
		["ring_slot", "RingSlot"],
		["timing", "ChunkTiming"],
	],
	"RingSlot":
	[
		["slot", "uint32"],
		["sequence", "uint64"],
		["offset", "uint64"],
		["length", "uint64"],
	],
	"ChunkTiming":
	[
		["commit_ms", "double"],
		["denoise_ms", "double"],
		["decode_ms", "double"],
		["queue_ms", "double"],
		["since_shot_start_ms", "double"],
	],
	"ShotFinished":
	[
		["event_id", "string"],
		["shot_index", "uint32"],
		["chunks", "uint32"],
		["frames", "uint32"],
		["cut", "bool"],
	],
	"Stats":
	[
		["chunks_sent", "uint64"],
		["frames_sent", "uint64"],
		["chunk_ms_mean", "double"],
		["fps", "double"],
		["queued_cues", "uint32"],
		["chunks_in_flight", "uint32"],
		["paused", "bool"],
		["sessions", "uint32"],
		["gpu_memory_used_bytes", "uint64"],
	],
	"Error":
	[
		["code", "uint32"],
		["message", "string"],
		["event_id", "string"],
		["fatal", "bool"],
	],
	"SnapshotRestored": [["next_shot_index", "uint32"], ["story_frames", "uint64"]],
	"CueLog":
	[
		["global_caption", "string"],
		["seed", "uint64"],
		["decoder", "Decoder"],
		["first_shot_index", "uint32"],
		["entries", "repeated CueLogEntry"],
		["next_shot", "uint32"],
		["dropped_shots", "uint32"],
	],
	"CueLogEntry":
	[
		["cue", "Cue"],
		["shot_index", "uint32"],
		["chunks", "uint32"],
		["cut", "bool"],
		["finished", "bool"],
	],
	"SessionClosed": [["reason", "string"]],
	"TakeStarted":
	[
		["name", "string"],
		["path", "string"],
		["quality", "TakeQuality"],
		["full_path", "string"],
	],
	"TakeSaved":
	[
		["name", "string"],
		["path", "string"],
		["frames", "uint32"],
		["bytes", "uint64"],
		["duration_s", "double"],
		["full_path", "string"],
		["full_bytes", "uint64"],
	],
}

## grpc.StatusCode names of the error codes a server sends.
const STATUS_NAMES := {
	0: "OK",
	1: "CANCELLED",
	2: "UNKNOWN",
	3: "INVALID_ARGUMENT",
	4: "DEADLINE_EXCEEDED",
	5: "NOT_FOUND",
	6: "ALREADY_EXISTS",
	7: "PERMISSION_DENIED",
	8: "RESOURCE_EXHAUSTED",
	9: "FAILED_PRECONDITION",
	10: "ABORTED",
	11: "OUT_OF_RANGE",
	12: "UNIMPLEMENTED",
	13: "INTERNAL",
	14: "UNAVAILABLE",
	15: "DATA_LOSS",
	16: "UNAUTHENTICATED",
}

const _U32_MAX := 4294967295
const _TWO_POW_32 := 4294967296
const _TWO_POW_53 := 9007199254740992

# message name -> {json key or proto name -> [proto name, type, repeated]}, built on first use
static var _lookup: Dictionary = {}

# -- client messages (encoding) ---------------------------------------------------------------


## The [code]open[/code] message: [param seed] is a uint64 (see the class notes on negative ints);
## [param decoder] a [enum Decoder] (UNSPECIFIED, left out of the message: the server's default).
static func open_message(
	global_caption: String,
	seed: int,
	client_name: String,
	frame_format: int = FrameFormat.RGBA8,
	max_chunks_in_flight: int = 0,
	transport: int = Transport.INLINE,
	decoder: int = Decoder.UNSPECIFIED
) -> String:
	return encode_client(
		"open",
		{
			"protocol_version": PROTOCOL_VERSION,
			"client_name": client_name,
			"global_caption": global_caption,
			"seed": seed,
			"frame_format": frame_format,
			"transport": transport,
			"max_chunks_in_flight": max_chunks_in_flight,
			"decoder": decoder,
		}
	)


## A [code]cue[/code]: a shot for [param prompt]; [param num_chunks] 0 = the server's full shot;
## [param mode] a [enum CueMode]; [param at_chunk] (CUT only): the cut lands after that many
## chunks of the shot in progress (0 = at its next chunk boundary).
static func cue_message(
	event_id: String,
	prompt: String,
	num_chunks: int = 0,
	mode: int = CueMode.WAIT,
	tags: PackedStringArray = PackedStringArray(),
	at_chunk: int = 0
) -> String:
	return encode_client(
		"cue",
		{
			"event_id": event_id,
			"prompt": prompt,
			"tags": tags,
			"num_chunks": num_chunks,
			"mode": mode,
			"at_chunk": at_chunk,
		}
	)


## An [code]ack[/code] for the chunk [param chunk_seq] (exactly as decoded, even if negative).
static func ack_message(chunk_seq: int) -> String:
	return encode_client("ack", {"chunk_seq": chunk_seq})


## [code]pause[/code]: the server stops generating after the chunk in progress.
static func pause_message() -> String:
	return encode_client("pause")


## [code]resume[/code].
static func resume_message() -> String:
	return encode_client("resume")


## [code]close[/code]: the server answers [code]closed[/code] and ends the session.
static func close_message() -> String:
	return encode_client("close")


## [code]start_take[/code]: record an MP4 on the server's host ("" = a name chosen by the server);
## [param quality] a [enum TakeQuality] (UNSPECIFIED, left out of the message, reads as LIVE).
static func start_take_message(
	take_name: String = "", quality: int = TakeQuality.UNSPECIFIED
) -> String:
	return encode_client("start_take", {"name": take_name, "quality": quality})


## [code]stop_take[/code]: finish the take; the server answers [code]take_saved[/code].
static func stop_take_message() -> String:
	return encode_client("stop_take")


## One ClientMessage of [param kind] ("open", "cue", ...) with [param fields] (proto field names),
## as the compact proto3 JSON text a WebSocket text frame carries. "" on bad input.
static func encode_client(kind: String, fields: Dictionary = {}) -> String:
	return encode_message("ClientMessage", {kind: fields})


## Any message of [constant MESSAGES] as compact proto3 JSON (fields in proto order, defaults left
## out). [param fields] uses proto field names; a missing key is the default. "" on bad input.
static func encode_message(type_name: String, fields: Dictionary) -> String:
	var errors: Array[String] = []
	var out := _write_message(type_name, fields, type_name, errors)
	if not errors.is_empty():
		push_error("ShotStreamProtocol: cannot encode %s: %s" % [type_name, errors[0]])
		return ""
	return out


## The binary SSC1 frame of a chunk (header = the chunk without pixels; pixels after it).
static func encode_chunk_frame(chunk: Dictionary) -> PackedByteArray:
	var header := chunk.duplicate()
	var pixels: PackedByteArray = header.get("pixels", PackedByteArray())
	header.erase("pixels")
	var text := encode_message("FrameChunk", header)
	var json := text.to_utf8_buffer()
	var out := CHUNK_MAGIC.to_ascii_buffer()
	out.resize(CHUNK_PREFIX_BYTES)
	out.encode_u32(4, json.size())
	out.append_array(json)
	out.append_array(pixels)
	return out


# -- server messages (decoding) -----------------------------------------------------------------


## Decodes one text frame from the server:
## [code]{"kind": "shot_started", "message": {...}, "error": ""}[/code]. [code]kind[/code] is the
## ServerMessage field that is set and [code]message[/code] its content; kind is "" (and message
## {}) when the message holds only kinds this addon does not know (skip it). [code]error[/code] is
## "" unless the text is malformed.
static func decode_server_text(text: String) -> Dictionary:
	return _decode_root("ServerMessage", text)


## Decodes a ClientMessage from JSON text (the same shape as [method decode_server_text]).
static func decode_client_text(text: String) -> Dictionary:
	return _decode_root("ClientMessage", text)


## Decodes one binary frame from the server. An SSC1 frame gives
## [code]{"kind": "chunk", "message": {... "pixels": PackedByteArray}, "error": ""}[/code]; a frame
## with another magic (reserved for future versions) gives kind "" and no error (skip it). A
## malformed SSC1 frame gives an error, and still kind "chunk" with its header as the message
## (empty pixels) when the header itself was readable, so its chunk_seq can be acked.
## [param copy_pixels] and [param message_size]: see [method decode_chunk_frame].
static func decode_server_binary(
	data: PackedByteArray, copy_pixels: bool = true, message_size: int = -1
) -> Dictionary:
	if data.size() >= 4 and not has_chunk_magic(data):
		return {"kind": "", "message": {}, "error": ""}
	var r := decode_chunk_frame(data, copy_pixels, message_size)
	var chunk: Dictionary = r["chunk"]
	return {"kind": "" if chunk.is_empty() else "chunk", "message": chunk, "error": r["error"]}


## True when [param data] starts with the SSC1 magic.
static func has_chunk_magic(data: PackedByteArray) -> bool:
	return data.size() >= 4 and data.slice(0, 4).get_string_from_ascii() == CHUNK_MAGIC


## Decodes a binary SSC1 chunk frame strictly: [code]{"chunk": Dictionary, "error": String}[/code].
## The pixel byte count must equal num_frames * height * width * channels. On an error,
## [code]chunk[/code] is the decoded header (with empty pixels) when the header was readable, else
## {}.[br][br] [param copy_pixels] true: [code]pixels[/code] is a copy of the frames' bytes. False
## (what [ShotStreamClient] does, to spare a copy of the whole chunk, 19 MB for the 1.3B model):
## [code]pixels[/code] is [param data] itself, by reference, and the extra key
## [code]pixels_offset[/code] says where the frames start in it; [method chunk_pixels] and
## [method pixel_bytes] read either form.[br][br] [param message_size] >= 0: [param data] holds only
## the frame's prefix and header, and the whole frame (kept elsewhere: a browser's buffer, see
## [ShotStreamClient]) has that many bytes; [code]pixels[/code] is then empty, and
## [code]pixels_offset[/code] and [code]pixels_size[/code] say where the frames are in it.
static func decode_chunk_frame(
	data: PackedByteArray, copy_pixels: bool = true, message_size: int = -1
) -> Dictionary:
	var size := data.size() if message_size < 0 else message_size
	if size < CHUNK_PREFIX_BYTES:
		return _chunk_error(
			(
				"binary frame of %d bytes is shorter than the %d-byte SSC1 prefix"
				% [size, CHUNK_PREFIX_BYTES]
			)
		)
	if not has_chunk_magic(data):
		return _chunk_error(
			"unknown binary frame magic %s (expected SSC1)" % data.slice(0, 4).hex_encode()
		)
	var n := data.decode_u32(4)
	if CHUNK_PREFIX_BYTES + n > size:
		return _chunk_error(
			"JSON header length %d runs past the end of a %d-byte frame" % [n, size]
		)
	if CHUNK_PREFIX_BYTES + n > data.size():
		return _chunk_error("JSON header length %d runs past the header's bytes" % n)
	var parsed := _parse_json(data.slice(CHUNK_PREFIX_BYTES, CHUNK_PREFIX_BYTES + n))
	if parsed["error"] != "":
		return _chunk_error("chunk header: " + parsed["error"])
	if typeof(parsed["value"]) != TYPE_DICTIONARY:
		return _chunk_error("chunk header: expected a JSON object")
	var errors: Array[String] = []
	var chunk := _read_message("FrameChunk", parsed["value"], "chunk", errors)
	if not errors.is_empty():
		return _chunk_error(errors[0])
	if chunk["ring_slot"] != null:
		return _chunk_error("a binary chunk frame must not have a ringSlot", chunk)
	var expected := expected_pixel_bytes(chunk)
	var got := size - CHUNK_PREFIX_BYTES - n
	if got != expected:
		return _chunk_error(
			(
				(
					"chunk %s carries %d pixel bytes; numFrames * height * width * channels"
					+ " = %d * %d * %d * %d = %d"
				)
				% [
					u64_to_string(chunk["chunk_seq"]),
					got,
					chunk["num_frames"],
					chunk["height"],
					chunk["width"],
					channels(chunk["frame_format"]),
					expected
				]
			),
			chunk
		)
	if message_size >= 0:
		chunk["pixels"] = PackedByteArray()
		chunk["pixels_offset"] = CHUNK_PREFIX_BYTES + n
		chunk["pixels_size"] = got
	elif copy_pixels:
		chunk["pixels"] = data.slice(CHUNK_PREFIX_BYTES + n)
	else:
		chunk["pixels"] = data
		chunk["pixels_offset"] = CHUNK_PREFIX_BYTES + n
	return {"chunk": chunk, "error": ""}


## Decodes [param value] (parsed JSON, e.g. from [method JSON.parse_string]) as the message
## [param type_name]: [code]{"message": Dictionary, "error": String}[/code].
static func decode_message(type_name: String, value: Variant) -> Dictionary:
	if not MESSAGES.has(type_name):
		return {"message": {}, "error": "unknown message type " + type_name}
	var errors: Array[String] = []
	var msg := _read_message(type_name, value, type_name, errors)
	return {"message": msg, "error": "" if errors.is_empty() else errors[0]}


## A message of [param type_name] with every field at its default.
static func default_message(type_name: String) -> Dictionary:
	var out := {}
	for field: Array in MESSAGES[type_name]:
		out[field[0]] = _default(field[1])
	return out


# -- helpers ------------------------------------------------------------------------------------


## Bytes per pixel: 4 for RGBA8, else 3 (UNSPECIFIED is RGB8).
static func channels(frame_format: int) -> int:
	return 4 if frame_format == FrameFormat.RGBA8 else 3


## The frames' bytes of a decoded FrameChunk: [code]pixels[/code], or when it was decoded by
## reference (a [code]pixels_offset[/code] key) a copy of the part from that offset on, or when
## its frames are in a browser's buffer (a [code]pixels_js[/code] key, see [ShotStreamClient]) a
## copy of them.
static func chunk_pixels(chunk: Dictionary) -> PackedByteArray:
	var offset: int = chunk.get("pixels_offset", 0)
	if chunk.get("pixels_js") is JavaScriptObject:
		var BrowserSocket := preload("res://addons/shotstream/browser_socket.gd")
		return BrowserSocket.frame_bytes(chunk["pixels_js"], offset, pixel_bytes(chunk))
	var pixels: PackedByteArray = chunk.get("pixels", PackedByteArray())
	return pixels if offset == 0 else pixels.slice(offset)


## How many bytes of frames a decoded FrameChunk carries (any form; see [method chunk_pixels]).
static func pixel_bytes(chunk: Dictionary) -> int:
	if chunk.has("pixels_size"):
		return chunk["pixels_size"]
	var pixels: PackedByteArray = chunk.get("pixels", PackedByteArray())
	return pixels.size() - int(chunk.get("pixels_offset", 0))


## num_frames * height * width * channels of a decoded FrameChunk.
static func expected_pixel_bytes(chunk: Dictionary) -> int:
	return (
		int(chunk["num_frames"])
		* int(chunk["height"])
		* int(chunk["width"])
		* channels(chunk["frame_format"])
	)


## The proto name of an enum value, e.g. enum_name("CueMode", 2) == "CUE_MODE_CUT".
static func enum_name(enum_type: String, value: int) -> String:
	var names: Array = ENUMS[enum_type]
	return names[value] if value >= 0 and value < names.size() else str(value)


## A grpc status code with its name, e.g. "9 FAILED_PRECONDITION".
static func status_name(code: int) -> String:
	return "%d %s" % [code, STATUS_NAMES.get(code, "UNKNOWN")]


## A uint64 held in an int, in decimal, unsigned (-1 -> "18446744073709551615").
static func u64_to_string(value: int) -> String:
	if value >= 0:
		return str(value)
	var lo := value & 0xFFFFFFFF
	var hi := (value - lo) / _TWO_POW_32 + _TWO_POW_32  # exact: value - lo is a multiple of 2^32
	var digits := PackedStringArray()
	while hi > 0 or lo > 0:
		var cur := (hi % 10) * _TWO_POW_32 + lo
		hi /= 10
		lo = cur / 10
		digits.append(str(cur % 10))
	digits.reverse()
	return "".join(digits)


## Parses an unsigned decimal of at most 2^64 - 1 into an int holding the same 64 bits:
## [code]{"value": int, "error": String}[/code].
static func parse_u64(text: String) -> Dictionary:
	if text.is_empty() or text.length() > 20:
		return {"value": 0, "error": "%s is not a uint64" % JSON.stringify(text)}
	var hi := 0
	var lo := 0
	for i in text.length():
		var d := text.unicode_at(i) - 48
		if d < 0 or d > 9:
			return {"value": 0, "error": "%s is not a uint64" % JSON.stringify(text)}
		lo = lo * 10 + d
		hi = hi * 10 + (lo >> 32)
		lo &= 0xFFFFFFFF
		if hi > 0xFFFFFFFF:
			return {"value": 0, "error": "%s is larger than 2^64 - 1" % text}
	return {"value": (hi << 32) | lo, "error": ""}


static func _chunk_error(message: String, header: Dictionary = {}) -> Dictionary:
	return {"chunk": header, "error": message}


static func _parse_json(data: Variant) -> Dictionary:
	var text: String = data.get_string_from_utf8() if data is PackedByteArray else data
	var json := JSON.new()
	var err := json.parse(text)
	if err != OK:
		return {
			"value": null,
			"error":
			"invalid JSON (line %d: %s)" % [json.get_error_line(), json.get_error_message()]
		}
	return {"value": json.data, "error": ""}


static func _decode_root(type_name: String, text: String) -> Dictionary:
	var parsed := _parse_json(text)
	if parsed["error"] != "":
		return {"kind": "", "message": {}, "error": parsed["error"]}
	var value: Variant = parsed["value"]
	if typeof(value) != TYPE_DICTIONARY:
		return {"kind": "", "message": {}, "error": "%s: expected a JSON object" % type_name}
	var errors: Array[String] = []
	var msg := _read_message(type_name, value, type_name, errors)
	if not errors.is_empty():
		return {"kind": "", "message": {}, "error": errors[0]}
	var kind := ""
	for field: Array in MESSAGES[type_name]:
		if msg[field[0]] == null:
			continue
		if kind != "":
			return {
				"kind": "",
				"message": {},
				"error":
				"%s sets both %s and %s (one kind per message)" % [type_name, kind, field[0]]
			}
		kind = field[0]
	return {"kind": kind, "message": msg[kind] if kind != "" else {}, "error": ""}


static func _fields(type_name: String) -> Dictionary:
	if _lookup.has(type_name):
		return _lookup[type_name]
	var table := {}
	for field: Array in MESSAGES[type_name]:
		var proto_name: String = field[0]
		var type: String = field[1]
		var repeated := type.begins_with("repeated ")
		var entry := [proto_name, type.trim_prefix("repeated "), repeated]
		table[proto_name] = entry
		table[json_name(proto_name)] = entry
	_lookup[type_name] = table
	return table


## lowerCamelCase JSON name of a proto field ("chunk_seq" -> "chunkSeq").
static func json_name(proto_name: String) -> String:
	var parts := proto_name.split("_")
	var out := parts[0]
	for i in range(1, parts.size()):
		out += parts[i].substr(0, 1).to_upper() + parts[i].substr(1)
	return out


static func _default(type: String) -> Variant:
	if type.begins_with("repeated "):  # strings: a PackedStringArray; messages: an Array
		return [] if MESSAGES.has(type.trim_prefix("repeated ")) else PackedStringArray()
	match type:
		"uint32", "uint64":
			return 0
		"double":
			return 0.0
		"bool":
			return false
		"string":
			return ""
		"bytes":
			return PackedByteArray()
	if ENUMS.has(type):
		return 0
	return null


static func _read_message(
	type_name: String, value: Variant, path: String, errors: Array[String]
) -> Dictionary:
	var out := default_message(type_name)
	if value == null:
		return out
	if typeof(value) != TYPE_DICTIONARY:
		errors.append("%s: expected a JSON object, got %s" % [path, type_string(typeof(value))])
		return out
	var table := _fields(type_name)
	var obj: Dictionary = value
	for key: Variant in obj:
		var v: Variant = obj[key]
		if typeof(key) != TYPE_STRING or not table.has(key) or v == null:
			continue  # unknown field (a newer server) or null (= default)
		var entry: Array = table[key]
		var where: String = path + "." + entry[0]
		if entry[2]:
			if typeof(v) != TYPE_ARRAY:
				errors.append("%s: expected a JSON array" % where)
				continue
			var items: Variant = _default("repeated " + entry[1])
			for item: Variant in v:
				var r: Variant = _read_value(entry[1], item, where, errors)
				if r != null:
					items.append(r)
			out[entry[0]] = items
		else:
			var r: Variant = _read_value(entry[1], v, where, errors)
			if r != null:
				out[entry[0]] = r
	return out


static func _read_value(type: String, v: Variant, where: String, errors: Array[String]) -> Variant:
	var t := typeof(v)
	match type:
		"string":
			if t == TYPE_STRING:
				return v
		"bool":
			if t == TYPE_BOOL:
				return v
		"double":
			if t == TYPE_FLOAT or t == TYPE_INT:
				return float(v)
			if t == TYPE_STRING:
				match v:
					"NaN":
						return NAN
					"Infinity":
						return INF
					"-Infinity":
						return -INF
				if String(v).is_valid_float():
					return String(v).to_float()
		"bytes":
			if t == TYPE_STRING:
				return Marshalls.base64_to_raw(v)
		"uint32", "uint64":
			return _read_uint(type, v, where, errors)
		_:
			if ENUMS.has(type):
				return _read_enum(type, v, where, errors)
			if MESSAGES.has(type):
				return _read_message(type, v, where, errors)
	errors.append("%s: expected a %s, got %s" % [where, type, type_string(t)])
	return null


static func _read_uint(type: String, v: Variant, where: String, errors: Array[String]) -> Variant:
	var value := 0
	var t := typeof(v)
	if t == TYPE_STRING:
		var r := parse_u64(v)
		if r["error"] != "":
			errors.append("%s: %s" % [where, r["error"]])
			return null
		value = r["value"]
		if type == "uint32" and (value < 0 or value > _U32_MAX):
			errors.append("%s: %s is out of range for a uint32" % [where, v])
			return null
		return value
	if t == TYPE_INT:
		value = v
	elif t == TYPE_FLOAT:
		var f: float = v
		if f != floorf(f) or absf(f) > _TWO_POW_53:
			errors.append("%s: %s is not an exact integer" % [where, v])
			return null
		value = int(f)
	else:
		errors.append("%s: expected a %s, got %s" % [where, type, type_string(t)])
		return null
	if value < 0 or (type == "uint32" and value > _U32_MAX):
		errors.append("%s: %d is out of range for a %s" % [where, value, type])
		return null
	return value


static func _read_enum(type: String, v: Variant, where: String, errors: Array[String]) -> Variant:
	var names: Array = ENUMS[type]
	var t := typeof(v)
	if t == TYPE_STRING:
		var i := names.find(v)
		return i if i >= 0 else 0  # a value this addon does not know (newer server): the default
	if t == TYPE_FLOAT or t == TYPE_INT:
		var r: Variant = _read_uint("uint32", v, where, errors)
		if r == null:
			return null
		return r if r < names.size() else 0
	errors.append("%s: expected a %s name or number, got %s" % [where, type, type_string(t)])
	return null


static func _write_message(
	type_name: String, fields: Dictionary, path: String, errors: Array[String]
) -> String:
	if not MESSAGES.has(type_name):
		errors.append("unknown message type " + type_name)
		return ""
	var table := _fields(type_name)
	for key: Variant in fields:
		if not table.has(key) or table[key][0] != key:
			errors.append("%s has no field %s" % [path, key])
			return ""
	var parts := PackedStringArray()
	for field: Array in MESSAGES[type_name]:
		var proto_name: String = field[0]
		if not fields.has(proto_name):
			continue
		var v: Variant = fields[proto_name]
		var type: String = field[1]
		var where := path + "." + proto_name
		var text := ""
		if type.begins_with("repeated "):
			text = _write_repeated(type.trim_prefix("repeated "), v, where, errors)
		else:
			text = _write_value(type, v, where, errors)
		if not errors.is_empty():
			return ""
		if text != "":
			parts.append(quote(json_name(proto_name)) + ":" + text)
	return "{" + ",".join(parts) + "}"


static func _write_repeated(
	type: String, v: Variant, where: String, errors: Array[String]
) -> String:
	if not (v is PackedStringArray or v is Array):
		errors.append("%s: expected an array" % where)
		return ""
	var items := PackedStringArray()
	for item: Variant in v:
		var text := _write_value(type, item, where, errors, true)
		if not errors.is_empty():
			return ""
		items.append(text)
	return "" if items.is_empty() else "[" + ",".join(items) + "]"


# "" = leave the field out (default value), unless keep_default (an item of a repeated field).
static func _write_value(
	type: String, v: Variant, where: String, errors: Array[String], keep_default: bool = false
) -> String:
	var t := typeof(v)
	match type:
		"string":
			if t == TYPE_STRING or t == TYPE_STRING_NAME:
				return quote(v) if keep_default or v != "" else ""
		"bool":
			if t == TYPE_BOOL:
				return "true" if v else ("false" if keep_default else "")
		"uint32":
			if t == TYPE_INT and v >= 0 and v <= _U32_MAX:
				return str(v) if keep_default or v != 0 else ""
		"uint64":
			if t == TYPE_INT:
				return quote(u64_to_string(v)) if keep_default or v != 0 else ""
		"double":
			if t == TYPE_FLOAT or t == TYPE_INT:
				var f := float(v)
				if is_nan(f):
					return quote("NaN")
				if is_inf(f):
					return quote("Infinity" if f > 0 else "-Infinity")
				return JSON.stringify(f, "", false, true) if keep_default or f != 0.0 else ""
		"bytes":
			if t == TYPE_PACKED_BYTE_ARRAY:
				return quote(Marshalls.raw_to_base64(v)) if keep_default or not v.is_empty() else ""
		_:
			if ENUMS.has(type):
				var names: Array = ENUMS[type]
				if t == TYPE_INT and v >= 0 and v < names.size():
					return quote(names[v]) if keep_default or v != 0 else ""
				errors.append("%s: %s is not a %s value" % [where, v, type])
				return ""
			if MESSAGES.has(type):
				if v == null:
					return ""
				if t == TYPE_DICTIONARY:
					return _write_message(type, v, where, errors)
	errors.append("%s: %s is not a valid %s" % [where, type_string(t), type])
	return ""


## A JSON string literal as Python's json.dumps(ensure_ascii=False) writes it.
static func quote(s: String) -> String:
	var out := '"'
	var start := 0
	var n := s.length()
	for i in n:
		var c := s.unicode_at(i)
		if c >= 0x20 and c != 0x22 and c != 0x5C:
			continue
		out += s.substr(start, i - start)
		start = i + 1
		match c:
			0x22:
				out += '\\"'
			0x5C:
				out += "\\\\"
			0x0A:
				out += "\\n"
			0x0D:
				out += "\\r"
			0x09:
				out += "\\t"
			0x08:
				out += "\\b"
			0x0C:
				out += "\\f"
			_:
				out += "\\u%04x" % c
	out += s.substr(start)
	return out + '"'
