extends "res://tests/test_base.gd"
## ShotStreamProtocol against the golden messages the Python side writes (tests/wire_goldens.py):
## every server frame decoded and checked field by field, every client message built and printed
## ("CLIENT <name> <base64 of the UTF-8 JSON>") for the gateway's parser to check, the SSC1 binary
## frame, malformed input, uint64 edge cases, and the proto field list (fields.txt).
## args: {"goldens": "res://goldens"}

const P := preload("res://addons/shotstream/protocol.gd")
const U64_MAX := -1  # 2^64 - 1 as the same 64 bits
const U64_MAX_STRING := "18446744073709551615"
const ABOVE_DOUBLE := 9007199254740993  # 2^53 + 1

var _dir := ""


func run_tests() -> void:
	_dir = args().get("goldens", "res://goldens")
	_test_server_goldens()
	_test_malformed()
	_test_server_roundtrip()
	_test_chunk_frames()
	_test_client_goldens()
	_test_u64()
	_test_field_list()


static func unicode_text() -> String:
	return (
		"Caf"
		+ char(0xE9)
		+ " "
		+ char(0x2014)
		+ " "
		+ char(0x1F409)
		+ ' "q" back\\slash\nnew\ttab '
		+ char(1)
	)


func _server(name: String) -> Dictionary:
	var m := P.decode_server_text(read_text(_dir + "/server/" + name + ".json"))
	eq("", m["error"], name + " decodes")
	if m["kind"] != "":
		var type_name := ""
		for f: Array in P.MESSAGES["ServerMessage"]:
			if f[0] == m["kind"]:
				type_name = f[1]
		var bad := _type_errors(type_name, m["message"])
		check(bad.is_empty(), "%s: every field has its Godot type: %s" % [name, bad])
	return m


## Fields of a decoded message whose Variant type does not fit the proto type ([] = all fit).
func _type_errors(type_name: String, msg: Dictionary) -> Array[String]:
	var out: Array[String] = []
	var want := {
		"uint32": TYPE_INT,
		"uint64": TYPE_INT,
		"double": TYPE_FLOAT,
		"bool": TYPE_BOOL,
		"string": TYPE_STRING,
		"bytes": TYPE_PACKED_BYTE_ARRAY,
	}
	if msg.size() != P.MESSAGES[type_name].size():
		out.append("%s has %d keys" % [type_name, msg.size()])
	for f: Array in P.MESSAGES[type_name]:
		var v: Variant = msg.get(f[0])
		var t: String = f[1]
		if t.begins_with("repeated ") and P.MESSAGES.has(t.trim_prefix("repeated ")):
			if typeof(v) != TYPE_ARRAY:
				out.append(f[0])
				continue
			for item: Variant in v:
				if typeof(item) != TYPE_DICTIONARY:
					out.append(f[0] + " item")
				else:
					out.append_array(_type_errors(t.trim_prefix("repeated "), item))
		elif t.begins_with("repeated "):
			if typeof(v) != TYPE_PACKED_STRING_ARRAY:
				out.append(f[0])
		elif want.has(t):
			if typeof(v) != want[t]:
				out.append(f[0])
		elif P.ENUMS.has(t):
			if typeof(v) != TYPE_INT:
				out.append(f[0])
		elif v != null:
			if typeof(v) != TYPE_DICTIONARY:
				out.append(f[0])
			else:
				out.append_array(_type_errors(t, v))
	return out


func _body(name: String, kind: String) -> Dictionary:
	var m := _server(name)
	eq(kind, m["kind"], name + " kind")
	if m["kind"] == kind:
		return m["message"]
	for f: Array in P.MESSAGES["ServerMessage"]:
		if f[0] == kind:
			return P.default_message(f[1])
	return {}


func _test_server_goldens() -> void:
	var o := _body("opened_inline", "opened")
	eq("s-1", o["session_id"], "opened id")
	eq(1, o["protocol_version"], "opened pv")
	eq(64, o["width"], "opened w")
	eq(32, o["height"], "opened h")
	eq(16, o["fps"], "opened fps")
	eq(9, o["frames_first_chunk"], "opened ffc")
	eq(12, o["frames_per_chunk"], "opened fpc")
	eq(7, o["max_chunks_per_shot"], "opened mcps")
	eq(P.FrameFormat.RGBA8, o["frame_format"], "opened fmt")
	eq(P.Transport.INLINE, o["transport"], "opened transport")
	eq(2, o["max_chunks_in_flight"], "opened credits")
	eq(null, o["ring"], "opened: no ring")
	eq("tiny", o["model"], "opened model")
	eq(true, o["random_weights"], "opened random weights")
	eq(P.Decoder.UNSPECIFIED, o["decoder"], "opened: no decoder (an older server) = UNSPECIFIED")

	var s := _body("opened_shm", "opened")
	eq(P.Transport.SHARED_MEMORY, s["transport"], "shm transport")
	eq(P.FrameFormat.RGB8, s["frame_format"], "shm fmt")
	eq(false, s["random_weights"], "shm: random_weights omitted = false")
	var ring: Dictionary = s["ring"] if s["ring"] != null else {}
	eq("/tmp/shotstream-ring-abc", ring.get("path"), "ring path")
	eq(1, ring.get("layout_version"), "ring layout")
	eq(3, ring.get("slot_count"), "ring slots")
	eq(12345678901, ring.get("slot_bytes"), "ring slot bytes (uint64 string)")
	eq(4096, ring.get("header_bytes"), "ring header")
	eq(64, ring.get("slot_header_bytes"), "ring slot header")
	eq(3, s["max_chunks_in_flight"], "shm credits")
	eq("wan2.1-t2v-1.3b", s["model"], "shm model")

	var d := _body("opened_tae", "opened")
	eq("s-3", d["session_id"], "tae id")
	eq(P.Decoder.TAE, d["decoder"], "tae decoder")
	eq("DECODER_TAE", P.enum_name("Decoder", d["decoder"]), "tae decoder name")
	eq(P.Transport.INLINE, d["transport"], "tae transport")
	eq(null, d["ring"], "tae: no ring")
	eq(P.Decoder.WAN, P.decode_server_text('{"opened": {"decoder": 1}}')["message"]["decoder"], "1")
	var future_decoder := P.decode_server_text('{"opened": {"decoder": "DECODER_FUTURE"}}')
	eq(P.Decoder.UNSPECIFIED, future_decoder["message"]["decoder"], "unknown decoder = 0")

	var c := _body("cue_accepted", "cue_accepted")
	eq("boss", c["event_id"], "cue accepted id")
	eq(2, c["queue_position"], "queue position")
	eq(0, _body("cue_accepted_next", "cue_accepted")["queue_position"], "omitted = 0")

	var st := _body("shot_started", "shot_started")
	eq(unicode_text(), st["event_id"], "unicode event id")
	eq(PackedStringArray(["boss", "act2"]), st["tags"], "tags")
	eq(4, st["shot_index"], "shot index")
	eq(3, st["num_chunks"], "num chunks")
	eq(33, st["num_frames"], "num frames")
	eq(17, st["prompt_tokens"], "prompt tokens")
	eq(2, st["truncated_tokens"], "truncated tokens")
	eq(12.75, st["setup_ms"], "setup ms")

	var k := _body("chunk_shm", "chunk")
	eq(U64_MAX, k["chunk_seq"], "chunk seq 2^64-1 keeps its 64 bits")
	eq(U64_MAX_STRING, P.u64_to_string(k["chunk_seq"]), "chunk seq prints unsigned")
	eq('{"ack":{"chunkSeq":"18446744073709551615"}}', P.ack_message(k["chunk_seq"]), "ack it")
	eq("boss", k["event_id"], "chunk event")
	eq(1, k["shot_index"], "chunk shot")
	eq(2, k["chunk_index"], "chunk index")
	eq(21, k["first_frame"], "first frame")
	eq(ABOVE_DOUBLE, k["story_frame"], "story frame 2^53+1 exact")
	eq(12, k["num_frames"], "chunk frames")
	eq(832, k["width"], "chunk w")
	eq(480, k["height"], "chunk h")
	eq(P.FrameFormat.RGB8, k["frame_format"], "chunk fmt")
	eq(true, k["last_in_shot"], "last in shot")
	eq(PackedByteArray(), k["pixels"], "no pixels")
	var slot: Dictionary = k["ring_slot"] if k["ring_slot"] != null else {}
	eq(2, slot.get("slot"), "slot")
	eq(7, slot.get("sequence"), "slot sequence")
	eq(4160, slot.get("offset"), "slot offset")
	eq(14376960, slot.get("length"), "slot length")
	var t: Dictionary = k["timing"] if k["timing"] != null else {}
	eq(1.5, t.get("commit_ms"), "commit ms")
	eq(20.25, t.get("denoise_ms"), "denoise ms")
	eq(3.0, t.get("decode_ms"), "decode ms")
	eq(0.125, t.get("queue_ms"), "queue ms")
	eq(100.5, t.get("since_shot_start_ms"), "since shot start ms")
	eq(4160 + 14376960 - 14376960, slot.get("offset"), "offset arithmetic on ints")

	var z := _body("chunk_shm_slot0", "chunk")
	check(z["ring_slot"] is Dictionary, "an empty ringSlot object still selects the oneof")
	if z["ring_slot"] is Dictionary:
		eq(0, z["ring_slot"]["slot"], "slot 0")
	eq(0, z["chunk_index"], "chunk index default")
	eq(null, z["timing"], "no timing")

	var f := _body("shot_finished", "shot_finished")
	eq("boss", f["event_id"], "finished id")
	eq(4, f["shot_index"], "finished shot")
	eq(2, f["chunks"], "finished chunks")
	eq(21, f["frames"], "finished frames")
	eq(true, f["cut"], "finished cut")

	var sx := _body("stats", "stats")
	eq(5, sx["chunks_sent"], "stats chunks")
	eq(57, sx["frames_sent"], "stats frames")
	eq(33.5, sx["chunk_ms_mean"], "stats mean")
	eq(120.25, sx["fps"], "stats fps")
	eq(1, sx["queued_cues"], "stats queued")
	eq(2, sx["chunks_in_flight"], "stats in flight")
	eq(true, sx["paused"], "stats paused")
	eq(3, sx["sessions"], "stats sessions")
	eq(8000000000, sx["gpu_memory_used_bytes"], "stats gpu memory")

	var ef := _body("error_fatal", "error")
	eq(8, ef["code"], "fatal code")
	eq("too many sessions", ef["message"], "fatal message")
	eq(true, ef["fatal"], "fatal")
	eq("", ef["event_id"], "fatal: no event")
	var es := _body("error_soft", "error")
	eq(3, es["code"], "soft code")
	eq("x", es["event_id"], "soft event")
	eq(false, es["fatal"], "soft: fatal omitted = false")
	eq("client", _body("closed", "closed")["reason"], "closed reason")

	var ts := _body("take_started", "take_started")
	eq("boss-fight", ts["name"], "take started name")
	eq("/srv/takes/boss-fight.mp4", ts["path"], "take started path")
	var tv := _body("take_saved", "take_saved")
	eq("boss-fight", tv["name"], "take saved name")
	eq("/srv/takes/boss-fight.mp4", tv["path"], "take saved path")
	eq(45, tv["frames"], "take frames")
	eq(6000000000, tv["bytes"], "take bytes (uint64 > 2^32)")
	eq(2.8125, tv["duration_s"], "take duration")
	eq(P.TakeQuality.UNSPECIFIED, ts["quality"], "live take: no quality (an older server)")
	eq("", ts["full_path"], "live take: no full path")
	eq("", tv["full_path"], "live take saved: no full path")
	eq(0, tv["full_bytes"], "live take saved: no full bytes")

	var fs := _body("take_started_full", "take_started")
	eq("boss-fight", fs["name"], "full take started name")
	eq("/srv/takes/boss-fight.mp4", fs["path"], "full take started path")
	eq(P.TakeQuality.FULL, fs["quality"], "full take quality")
	eq("TAKE_QUALITY_FULL", P.enum_name("TakeQuality", fs["quality"]), "full take quality name")
	eq("/srv/takes/boss-fight.full.mp4", fs["full_path"], "full take started full path")
	var fv := _body("take_saved_full", "take_saved")
	eq("/srv/takes/boss-fight.mp4", fv["path"], "full take saved path")
	eq(45, fv["frames"], "full take frames")
	eq(6000000000, fv["bytes"], "full take bytes")
	eq("/srv/takes/boss-fight.full.mp4", fv["full_path"], "full take saved full path")
	eq(U64_MAX, fv["full_bytes"], "full bytes 2^64-1 keeps its 64 bits")
	eq(U64_MAX_STRING, P.u64_to_string(fv["full_bytes"]), "full bytes print unsigned")

	var u := _body("unknown_fields", "cue_accepted")
	eq("f", u["event_id"], "unknown fields ignored: id")
	eq(1, u["queue_position"], "unknown fields ignored: position")
	_test_story_goldens()


## Snapshot bytes of the goldens: every byte value, then 0xFF 0x00 0xFB.
static func snapshot_data() -> PackedByteArray:
	var out := PackedByteArray()
	for i in 256:
		out.append(i)
	out.append_array(PackedByteArray([0xFF, 0x00, 0xFB]))
	return out


func _test_story_goldens() -> void:
	var sp := _body("snapshot", "snapshot")
	eq(snapshot_data(), sp["data"], "snapshot part bytes (base64, every byte value)")
	eq(5000000000, sp["total_bytes"], "snapshot total bytes (uint64 > 2^32)")
	eq(1, sp["index"], "snapshot part index")
	eq(3, sp["count"], "snapshot part count")
	eq(4, sp["next_shot_index"], "snapshot next shot")
	var r := _body("restored", "restored")
	eq(3, r["next_shot_index"], "restored next shot")
	eq(ABOVE_DOUBLE, r["story_frames"], "restored story frames 2^53+1 exact")
	var log := _body("cue_log", "cue_log")
	eq(unicode_text(), log["global_caption"], "cue log caption")
	eq(U64_MAX, log["seed"], "cue log seed 2^64-1")
	eq(P.Decoder.TAE, log["decoder"], "cue log decoder")
	eq(2, log["first_shot_index"], "cue log first shot")
	eq(4, log["next_shot"], "cue log next shot")
	eq(1, log["dropped_shots"], "cue log dropped shots")
	var entries: Array = log["entries"] if log["entries"] is Array else []
	eq(2, entries.size(), "cue log entries")
	if entries.size() != 2:
		return
	var walk: Dictionary = entries[0]
	var walk_cue: Dictionary = walk["cue"] if walk["cue"] is Dictionary else {}
	eq("walk", walk_cue.get("event_id"), "entry 0 event")
	eq("The keeper climbs.", walk_cue.get("prompt"), "entry 0 prompt")
	eq(PackedStringArray(["a", "b"]), walk_cue.get("tags"), "entry 0 tags")
	eq(3, walk_cue.get("num_chunks"), "entry 0 planned chunks")
	eq(P.CueMode.WAIT, walk_cue.get("mode"), "entry 0 mode")
	eq(0, walk_cue.get("at_chunk"), "entry 0 at_chunk")
	eq([2, 1, true, true], [walk["shot_index"], walk["chunks"], walk["cut"], walk["finished"]], "0")
	var boom: Dictionary = entries[1]
	var boom_cue: Dictionary = boom["cue"] if boom["cue"] is Dictionary else {}
	eq("boom", boom_cue.get("event_id"), "entry 1 event")
	eq("A wave " + char(0x1F30A) + " hits.", boom_cue.get("prompt"), "entry 1 prompt (emoji)")
	eq(PackedStringArray(), boom_cue.get("tags"), "entry 1 no tags")
	eq(P.CueMode.CUT, boom_cue.get("mode"), "entry 1 mode")
	eq(1, boom_cue.get("at_chunk"), "entry 1 at_chunk")
	eq(
		[3, 1, false, false],
		[boom["shot_index"], boom["chunks"], boom["cut"], boom["finished"]],
		"1"
	)
	var empty: Dictionary = P.decode_server_text('{"cueLog": {}}')["message"]
	eq([], empty.get("entries"), "no entries: an empty Array")
	var bad := P.decode_server_text('{"cueLog": {"entries": [3]}}')
	check(bad["error"] != "", "an entry that is not an object is an error: " + bad["error"])
	var bad_bytes := P.decode_server_text('{"snapshot": {"data": 3}}')
	check(bad_bytes["error"] != "", "bytes that are not a base64 string: " + bad_bytes["error"])


func _test_malformed() -> void:
	var only_unknown := P.decode_server_text('{"future": {}}')
	eq("", only_unknown["error"], "only an unknown kind: no error")
	eq("", only_unknown["kind"], "only an unknown kind: skipped")
	eq("", P.decode_server_text("{}")["kind"], "no kind")
	for bad: String in [
		"",
		"{",
		"[]",
		"42",
		'{"closed": {}, "stats": {}}',
		'{"stats": {"paused": 1}}',
		'{"chunk": {"chunkSeq": "-1"}}',
		'{"chunk": {"chunkSeq": "18446744073709551616"}}',
		'{"chunk": {"chunkSeq": 1.5}}',
		'{"chunk": {"numFrames": 4294967296}}',
		'{"chunk": {"numFrames": -1}}',
		'{"chunk": {"eventId": 7}}',
		'{"chunk": {"timing": []}}',
		'{"shotStarted": {"tags": "a"}}',
		'{"opened": {"frameFormat": true}}',
		'{"opened": 3}',
	]:
		var m := P.decode_server_text(bad)
		check(m["error"] != "" and m["kind"] == "", "malformed %s is an error (got %s)" % [bad, m])
	# proto3 JSON also allows proto field names, numbers as strings, enum numbers, null = default
	var alt := P.decode_server_text(
		(
			'{"chunk": {"chunk_seq": 5, "numFrames": "3", "frameFormat": 2, "eventId": null,'
			+ ' "timing": {"denoiseMs": "NaN", "decode_ms": "1.5"}}}'
		)
	)
	eq("", alt["error"], "alternative spellings decode")
	if alt["error"] == "":
		var c: Dictionary = alt["message"]
		eq(5, c["chunk_seq"], "proto name + number")
		eq(3, c["num_frames"], "uint32 as string")
		eq(P.FrameFormat.RGBA8, c["frame_format"], "enum number")
		eq("", c["event_id"], "null = default")
		check(is_nan(c["timing"]["denoise_ms"]), "NaN double")
		eq(1.5, c["timing"]["decode_ms"], "double as string")
	var future := P.decode_server_text('{"opened": {"frameFormat": "FRAME_FORMAT_HDR10"}}')
	eq(P.FrameFormat.UNSPECIFIED, future["message"]["frame_format"], "unknown enum name = 0")


func _test_server_roundtrip() -> void:
	# decode -> encode gives the same JSON as json_format.MessageToJson (compared parsed)
	for file: String in DirAccess.get_files_at(_dir + "/server"):
		if not file.ends_with(".json") or file == "unknown_fields.json":
			continue
		var src := read_text(_dir + "/server/" + file)
		var m := P.decode_server_text(src)
		var again := P.encode_message("ServerMessage", {m["kind"]: m["message"]})
		eq(JSON.parse_string(src), JSON.parse_string(again), "re-encode " + file)


func _test_chunk_frames() -> void:
	for fmt: String in ["rgb", "rgba"]:
		var frame := read_bytes(_dir + "/server/chunk_" + fmt + ".bin")
		var ch := 3 if fmt == "rgb" else 4
		var m := P.decode_server_binary(frame)
		eq("", m["error"], "ssc1 " + fmt + " decodes")
		eq("chunk", m["kind"], "ssc1 " + fmt + " kind")
		if m["kind"] != "chunk":
			continue
		var c: Dictionary = m["message"]
		eq(P.FrameFormat.RGB8 if ch == 3 else P.FrameFormat.RGBA8, c["frame_format"], fmt + " fmt")
		eq(3, c["chunk_seq"], fmt + " seq")
		eq("e" + char(0xE9), c["event_id"], fmt + " event id")
		eq(1, c["shot_index"], fmt + " shot")
		eq(0, c["chunk_index"], fmt + " chunk index")
		eq(9, c["story_frame"], fmt + " story frame")
		eq(2, c["num_frames"], fmt + " frames")
		eq(5, c["width"], fmt + " w")
		eq(3, c["height"], fmt + " h")
		eq(false, c["last_in_shot"], fmt + " last")
		eq(2.5, c["timing"]["denoise_ms"], fmt + " timing")
		var pixels: PackedByteArray = c["pixels"]
		eq(2 * 3 * 5 * ch, pixels.size(), fmt + " pixel count")
		eq(2 * 3 * 5 * ch, P.expected_pixel_bytes(c), fmt + " expected pixel bytes")
		var ok := true
		for i in pixels.size():
			if pixels[i] != (i * 7 + 3) % 256:
				ok = false
				break
		check(ok, fmt + " pixel values")
		var again := P.encode_chunk_frame(c)
		var c2: Dictionary = P.decode_chunk_frame(again)["chunk"]
		eq(c, c2, fmt + " encode/decode")
		# malformed frames: errors that say what is wrong
		var e := P.decode_chunk_frame(frame.slice(0, frame.size() - 1))
		check("pixel bytes" in e["error"], fmt + " short pixels: " + e["error"])
		eq(3, e["chunk"].get("chunk_seq"), fmt + " short pixels: the header is still there")
		var short := P.decode_server_binary(frame.slice(0, frame.size() - 1))
		check("pixel bytes" in short["error"], fmt + " short pixels via decode_server_binary")
		eq("chunk", short["kind"], fmt + " short pixels: still a chunk (its seq can be acked)")
		eq(3, short["message"].get("chunk_seq"), fmt + " short pixels: chunk seq")
		eq(PackedByteArray(), short["message"].get("pixels"), fmt + " short pixels: no pixels")
		var longer := frame.duplicate()
		longer.append(0)
		check("pixel bytes" in P.decode_chunk_frame(longer)["error"], fmt + " extra pixels")
		check("shorter" in P.decode_chunk_frame(frame.slice(0, 7))["error"], fmt + " short prefix")
		var bad_magic := frame.duplicate()
		bad_magic[3] = 0x32
		check(not P.has_chunk_magic(bad_magic), fmt + " unknown magic")
		check("magic" in P.decode_chunk_frame(bad_magic)["error"], fmt + " bad magic strict")
		var skipped := P.decode_server_binary(bad_magic)
		eq(["", ""], [skipped["kind"], skipped["error"]], fmt + " unknown magic is skipped")
		var bad_len := frame.duplicate()
		bad_len[7] = 0x7f
		check("runs past" in P.decode_chunk_frame(bad_len)["error"], fmt + " header length")
		var bad_json := frame.duplicate()
		bad_json[8] = 0x5B  # '['
		check("JSON" in P.decode_chunk_frame(bad_json)["error"], fmt + " bad JSON header")
		var m2 := P.decode_server_binary(bad_json)
		check(m2["error"] != "" and m2["kind"] == "", fmt + " bad JSON via decode_server_binary")
		eq({}, m2["message"], fmt + " bad JSON: no header")
		eq(frame.slice(0, 4), P.CHUNK_MAGIC.to_ascii_buffer(), fmt + " starts with CHUNK_MAGIC")


func client_messages() -> Dictionary:
	return {
		"open":
		(
			P
			. open_message(
				unicode_text(),
				U64_MAX,
				"godot/Test",
				P.FrameFormat.RGBA8,
				3,
				P.Transport.SHARED_MEMORY,
			)
		),
		"open_defaults":
		P.open_message("", 0, "", P.FrameFormat.UNSPECIFIED, 0, P.Transport.UNSPECIFIED),
		"open_decoder":
		P.open_message(
			"", 7, "godot/Test", P.FrameFormat.RGBA8, 2, P.Transport.INLINE, P.Decoder.TAE
		),
		"cue":
		P.cue_message(
			"boss",
			"A dragon " + char(0x1F409) + " lands.",
			2,
			P.CueMode.CUT,
			PackedStringArray(["a", "b"])
		),
		"cue_wait": P.cue_message("", "p", 0, P.CueMode.WAIT),
		"ack": P.ack_message(ABOVE_DOUBLE),
		"pause": P.pause_message(),
		"resume": P.resume_message(),
		"close": P.close_message(),
		"start_take": P.start_take_message("boss-fight"),
		"start_take_default": P.start_take_message(),
		"start_take_full": P.start_take_message("boss-fight", P.TakeQuality.FULL),
		"stop_take": P.stop_take_message(),
		"open_snapshot":
		(
			ShotStreamSnapshotTransfer
			. open_message(
				{
					"client_name": "godot/Test",
					"frame_format": P.FrameFormat.RGBA8,
					"max_chunks_in_flight": 2,
					"transport": P.Transport.INLINE,
				},
				ShotStreamSnapshotTransfer.part(snapshot_data(), 0, 70000)
			)
		),
		"open_fork":
		ShotStreamSnapshotTransfer.open_message(
			{"client_name": "godot/Test"}, {}, {"session_id": "s-1", "wait_for_boundary": true}
		),
		"cue_at_chunk": P.cue_message("boom", "A wave hits.", 2, P.CueMode.CUT, [], 3),
		"snapshot_request": P.encode_client("snapshot", {"wait_for_boundary": true}),
		"snapshot_part":
		P.encode_client(
			"snapshot_part", {"data": snapshot_data(), "total_bytes": 70000, "index": 2}
		),
		"cue_log_request": P.encode_client("cue_log", {"from_shot": 5}),
	}


func _test_client_goldens() -> void:
	var mine := client_messages()
	for name: String in mine:
		var text: String = mine[name]
		check(text != "", "client " + name + " encodes")
		print("CLIENT %s %s" % [name, Marshalls.raw_to_base64(text.to_utf8_buffer())])
		var golden := read_text(_dir + "/client/" + name + ".json")
		eq(JSON.parse_string(golden), JSON.parse_string(text), "client " + name + " = golden")
		var back := P.decode_client_text(golden)
		eq("", back["error"], "client golden " + name + " decodes")
		if back["error"] == "":
			eq(
				text,
				P.encode_client(back["kind"], back["message"]),
				"client " + name + " round trip"
			)
	check(P.decode_client_text('{"open": {}, "close": {}}')["error"] != "", "two client kinds")
	# encoder input errors are refused, not sent
	eq("", P.encode_client("cue", {"no_such_field": 1}), "unknown field refused")
	eq("", P.encode_client("cue", {"num_chunks": -1}), "negative uint32 refused")
	eq("", P.encode_client("cue", {"mode": 7}), "unknown enum value refused")
	eq("", P.encode_client("ack", {"chunk_seq": "3"}), "wrong type refused")
	eq("", P.encode_client("open", {"decoder": 3}), "unknown decoder refused")
	eq(
		'{"startTake":{"quality":"TAKE_QUALITY_LIVE"}}',
		P.start_take_message("", P.TakeQuality.LIVE),
		"an explicit LIVE is written"
	)
	var q := P.decode_client_text('{"start_take": {"quality": 2}}')
	eq(P.TakeQuality.FULL, q["message"].get("quality"), "quality as a number, proto field name")


func _test_u64() -> void:
	eq("0", P.u64_to_string(0), "u64 0")
	eq("9223372036854775807", P.u64_to_string(9223372036854775807), "u64 2^63-1")
	eq("9223372036854775808", P.u64_to_string(-9223372036854775807 - 1), "u64 2^63")
	eq("18446744073709551614", P.u64_to_string(-2), "u64 2^64-2")
	eq(-1, P.parse_u64("18446744073709551615")["value"], "parse 2^64-1")
	eq(-9223372036854775807 - 1, P.parse_u64("9223372036854775808")["value"], "parse 2^63")
	eq(1234567890123, P.parse_u64("1234567890123")["value"], "parse small")
	for bad: String in [
		"", "-1", "1e3", " 1", "18446744073709551616", "99999999999999999999", "0x10"
	]:
		check(P.parse_u64(bad)["error"] != "", 'parse_u64 rejects "%s"' % bad)
	var rng := RandomNumberGenerator.new()
	rng.seed = 11
	var ok := true
	for i in 500:
		var v := (rng.randi() << 32) | rng.randi()
		if P.parse_u64(P.u64_to_string(v))["value"] != v:
			ok = false
			print("u64 round trip failed for ", v)
			break
	check(ok, "u64 string round trip of 500 random 64-bit values")


func _test_field_list() -> void:
	var seen := {}
	for line: String in read_text(_dir + "/fields.txt").split("\n", false):
		var sp := line.find(" ")
		var name := line if sp < 0 else line.substr(0, sp)
		var fields := "" if sp < 0 else line.substr(sp + 1)
		seen[name] = true
		var mine := ""
		if name.begins_with("enum:"):
			var e := name.trim_prefix("enum:")
			check(P.ENUMS.has(e), "the proto enum %s is modeled in protocol.gd" % e)
			if P.ENUMS.has(e):
				mine = ",".join(PackedStringArray(P.ENUMS[e]))
		else:
			check(P.MESSAGES.has(name), "the proto message %s is modeled in protocol.gd" % name)
			if P.MESSAGES.has(name):
				var names := PackedStringArray()
				for f: Array in P.MESSAGES[name]:
					names.append(f[0])
				mine = ",".join(names)
		eq(fields, mine, "protocol.gd field list of %s (update it when the proto changes)" % name)
	var extra := PackedStringArray()
	for name: String in P.MESSAGES:
		if not seen.has(name):
			extra.append(name)
	for name: String in P.ENUMS:
		if not seen.has("enum:" + name):
			extra.append("enum:" + name)
	eq("", ",".join(extra), "modeled in protocol.gd but not in the proto")
