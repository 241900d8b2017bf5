extends "res://tests/test_base.gd"
## Story snapshots live, against the real service (tiny engine) over the WebSocket gateway.
##
## Session A: caption "A lighthouse on a stormy coast.", seed 11, 1 chunk in flight; shot "one"
## (2 chunks), then request_snapshot() (the server sends it in several parts), kept in a
## ShotStreamSnapshot saved to user:// (.res through ResourceSaver, and a plain file) and loaded
## back; the cue log (one entry: "one", 2 chunks); a fork of A (session C) opens from A's story;
## then shot "two" (2 chunks) in A and in C. Session B, after A closes: opens from the loaded
## snapshot (sent in 2 KiB parts), is restored at shot 1 after shot one's 21 frames, and plays
## the same shot "two". Prints "CHUNK <session> <eventId> <sha256 of the pixels> <story_frame>"
## per chunk of "two" (the Python side plays the uninterrupted story with its SDK and compares),
## "SNAPSHOT <bytes> <next_shot_index>" and "RESTORED <session> <next_shot_index> <story_frames>".
## args: {"url": gateway URL}

const P := preload("res://addons/shotstream/protocol.gd")
const CAPTION := "A lighthouse on a stormy coast."
const ONE := "The keeper climbs the stairs."
const TWO := "A wave hits the rocks."
const TIMEOUT_MS := 150000


func run_tests() -> void:
	var url: String = args().get("url", "")
	check(url.begins_with("ws://"), "gateway URL given")
	await _story(url)


func _sha256(data: PackedByteArray) -> String:
	var ctx := HashingContext.new()
	ctx.start(HashingContext.HASH_SHA256)
	ctx.update(data)
	return ctx.finish().hex_encode()


func wait_limit_ms() -> int:
	return TIMEOUT_MS


## A client for [param url] named [param name], and what it received: "chunks" (one line per
## chunk of "two"), "frames" (frames per event), "finished" (event ids), "snapshots",
## "restored", "logs", "closed".
func _client(url: String, name: String) -> Array:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.auto_reconnect = false
	client.server_url = url
	client.max_chunks_in_flight = 1
	client.client_name = "godot/Live" + name
	add_child(client)
	var got := {
		"chunks": [],
		"frames": {},
		"finished": [],
		"snapshots": [],
		"restored": [],
		"logs": [],
		"closed": [],
	}
	client.chunk_received.connect(
		func(c: Dictionary) -> void:
			var id: String = c["event_id"]
			got["frames"][id] = got["frames"].get(id, 0) + int(c["num_frames"])
			if id == "two":
				var sha := _sha256(P.chunk_pixels(c))
				got["chunks"].append("%s %s %s" % [id, sha, P.u64_to_string(c["story_frame"])])
				print("CHUNK %s %s %s %s" % [name, id, sha, P.u64_to_string(c["story_frame"])])
	)
	client.shot_finished.connect(func(f: Dictionary) -> void: got["finished"].append(f["event_id"]))
	client.snapshot_ready.connect(
		func(data: PackedByteArray, next: int) -> void: got["snapshots"].append([data, next])
	)
	client.restored.connect(
		func(next: int, frames: int) -> void:
			print("RESTORED %s %d %d" % [name, next, frames])
			got["restored"].append([next, frames])
	)
	client.cue_log_ready.connect(func(log: Dictionary) -> void: got["logs"].append(log))
	client.error_received.connect(
		func(code: int, message: String, _fatal: bool) -> void:
			check(false, "%s: no error expected: %d %s" % [name, code, message])
	)
	client.disconnected.connect(func(reason: String) -> void: got["closed"].append(reason))
	return [client, got]


func _story(url: String) -> void:
	var pair := _client(url, "A")
	var a: ShotStreamClient = pair[0]
	var got_a: Dictionary = pair[1]
	a.global_caption = CAPTION
	a.story_seed = 11
	eq("one", a.cue(ONE, "one", 2), "A: shot one queued")
	eq(OK, a.open_session(), "A: open")
	if not await _wait(func() -> bool: return "one" in got_a["finished"], "A's shot one"):
		return
	a.request_snapshot()
	if not await _wait(func() -> bool: return not got_a["snapshots"].is_empty(), "A's snapshot"):
		return
	var data: PackedByteArray = got_a["snapshots"][0][0]
	var next: int = got_a["snapshots"][0][1]
	print("SNAPSHOT %d %d" % [data.size(), next])
	eq(1, next, "the story continues with shot 1")
	check(data.size() > 2 * 2048, "a snapshot of 3+ server parts (%d bytes)" % data.size())
	# kept with a game save and read back: through ResourceSaver and as a plain file
	eq(OK, ShotStreamSnapshot.of(data, next).save_to("user://saves/live.res"), "saved .res")
	eq(OK, ShotStreamSnapshot.save_file("user://saves/live.snap", data), "saved plain file")
	var saved := ShotStreamSnapshot.load_from("user://saves/live.res")
	var loaded := saved.data if saved != null else PackedByteArray()
	eq(data, loaded, "the .res holds the snapshot's bytes")
	eq(data, ShotStreamSnapshot.load_file("user://saves/live.snap"), "so does the plain file")
	a.request_cue_log()
	if not await _wait(func() -> bool: return not got_a["logs"].is_empty(), "A's cue log"):
		return
	var log: Dictionary = got_a["logs"][0]
	var story := [log["global_caption"], log["seed"], log["first_shot_index"], log["next_shot"]]
	eq([CAPTION, 11, 0, 0], story, "the cue log's story")
	var entries: Array = log["entries"]
	eq(1, entries.size(), "one shot in the log")
	if entries.size() == 1:
		eq(["one", ONE, 0, 2, true], _entry(entries[0]), "the log's shot")
	# a fork of A opens from A's story (A is between shots)
	var fork_pair := _client(url, "C")
	var c: ShotStreamClient = fork_pair[0]
	var got_c: Dictionary = fork_pair[1]
	eq(OK, c.fork_story(a.session["session_id"]), "C: fork A")
	if not await _wait(func() -> bool: return not got_c["restored"].is_empty(), "C restored"):
		return
	eq([1, 21], got_c["restored"][0], "C continues at shot 1 after 21 frames")
	eq("two", a.cue(TWO, "two", 2), "A: shot two")
	eq("two", c.cue(TWO, "two", 2), "C: shot two")
	await _wait(
		func() -> bool: return "two" in got_a["finished"] and "two" in got_c["finished"],
		"shot two in A and C"
	)
	a.close()
	c.close()
	await _wait(
		func() -> bool: return not got_a["closed"].is_empty() and not got_c["closed"].is_empty(),
		"A and C to close"
	)
	# a new session from the saved snapshot, sent in 2 KiB parts
	var b_pair := _client(url, "B")
	var b: ShotStreamClient = b_pair[0]
	var got_b: Dictionary = b_pair[1]
	b.global_caption = "not used: the snapshot's caption is"
	b._story.part_bytes = 2048
	eq(OK, b.connect_to_story(loaded), "B: open from the snapshot")
	if not await _wait(func() -> bool: return not got_b["restored"].is_empty(), "B restored"):
		return
	eq([1, 21], got_b["restored"][0], "B continues at shot 1 after 21 frames")
	eq("two", b.cue(TWO, "two", 2), "B: shot two")
	if not await _wait(func() -> bool: return "two" in got_b["finished"], "B's shot two"):
		return
	b.close()
	await _wait(func() -> bool: return not got_b["closed"].is_empty(), "B to close")
	eq(["client"], got_b["closed"], "B closed by the client")
	eq(2, got_a["chunks"].size(), "A: two chunks of shot two")
	eq(got_a["chunks"], got_b["chunks"], "B (from the saved snapshot) = A, frame for frame")
	eq(got_a["chunks"], got_c["chunks"], "C (the fork) = A, frame for frame")
	eq({"one": 21, "two": 21}, got_a["frames"], "A's frames")
	eq({"two": 21}, got_b["frames"], "B's frames: only shot two")
	for client: ShotStreamClient in [a, b, c]:
		client.queue_free()


static func _entry(e: Dictionary) -> Array:
	var cue: Dictionary = e["cue"] if e["cue"] is Dictionary else {}
	return [cue.get("event_id"), cue.get("prompt"), e["shot_index"], e["chunks"], e["finished"]]
