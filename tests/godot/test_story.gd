extends "res://tests/test_base.gd"
## Story snapshots without a server: splitting a snapshot into the parts a client sends (each
## message within the gateway's 64 KiB), putting together the parts a server sends (and refusing
## parts that break the rules), merging cue log pages, ShotStreamSnapshot saved and loaded through
## ResourceSaver (.tres, .res) and plain files under user://, and the client's open message for a
## snapshot or a fork, and its at_chunk cues; then a client against the scripted gateway
## (tests/test_godot_addon.py, scenario "story"): opened from a snapshot sent in 3 parts and
## restored, a snapshot received in 3 parts (then a stray part, refused), a cue log in 2 pages;
## and a session from a snapshot whose connection drops: the new session continues it again; and
## a 2 MiB snapshot through a WebSocketPeer (1 MiB outbound buffer): sent over several polls.
## args: {"url": the scripted gateway's ws://.../v1/direct} (optional)

const P := preload("res://addons/shotstream/protocol.gd")
const T := preload("res://addons/shotstream/snapshot_transfer.gd")


func run_tests() -> void:
	_test_split()
	_test_assemble()
	_test_assemble_refusals()
	_test_cue_log_pages()
	_test_snapshot_files()
	_test_client_messages()
	_test_director_at_chunk()
	if args().has("url"):
		await _scripted_story(args()["url"] + "?s=story")
		await _scripted_reopen(args()["url"] + "?s=story_reopen")
		await _scripted_big(args()["url"] + "?s=story_big")


## [param n] bytes, byte i = (i * 31 + 7) mod 256.
static func blob(n: int) -> PackedByteArray:
	var out := PackedByteArray()
	out.resize(n)
	for i in n:
		out[i] = (i * 31 + 7) % 256
	return out


func _test_split() -> void:
	var data := blob(70000)
	eq(3, T.part_count(data), "70000 bytes in 32 KiB parts: 3")
	eq(1, T.part_count(blob(5)), "a small snapshot: one part")
	eq(2, T.part_count(blob(65536)), "exactly two parts")
	eq(0, T.part_count(PackedByteArray()), "an empty snapshot cannot be sent")
	eq(0, T.part_count(data, 0), "part size 0 refused")
	eq(0, T.part_count(data, T.MAX_UPLOAD_PART_BYTES + 1), "parts over 32 KiB refused")
	var first := T.part(data, 0)
	eq(T.MAX_UPLOAD_PART_BYTES, first["data"].size(), "first part is 32 KiB")
	eq(70000, first["total_bytes"], "first part announces the total")
	eq(0, first["index"], "first part index")
	var open := T.open_message({"client_name": "godot/Test"}, first)
	check(open.to_utf8_buffer().size() <= ShotStreamClient.MAX_CLIENT_MESSAGE_BYTES, "open fits")
	var rest := T.rest_messages(data)
	eq(2, rest.size(), "two snapshot_part messages follow the open")
	var joined: PackedByteArray = first["data"].duplicate()
	var indices: Array[int] = []
	for text in rest:
		check(text.to_utf8_buffer().size() <= ShotStreamClient.MAX_CLIENT_MESSAGE_BYTES, "fits")
		var m := P.decode_client_text(text)
		eq("snapshot_part", m["kind"], "a snapshot_part message")
		joined.append_array(m["message"]["data"])
		indices.append(m["message"]["index"])
		eq(70000, m["message"]["total_bytes"], "each part announces the total")
	eq([1, 2], indices, "parts in order")
	eq(data, joined, "the parts put back together are the snapshot")
	eq(6, T.rest_messages(data, 10000).size(), "10 000-byte parts: open + 6 more")
	eq(PackedStringArray(), T.rest_messages(blob(10)), "one part: nothing follows the open")


## The parts a server would send for [param data] ([param part_bytes] each, count set).
static func server_parts(data: PackedByteArray, part_bytes: int, next_shot: int) -> Array:
	var count := ceili(data.size() / float(part_bytes))
	var out := []
	for i in count:
		var part := T.part(data, i, -1, part_bytes)
		part["count"] = count
		part["next_shot_index"] = next_shot
		out.append(part)
	return out


func _test_assemble() -> void:
	var data := blob(10001)
	var t := T.new()
	var parts := server_parts(data, 4096, 3)
	eq(3, parts.size(), "3 parts")
	var got := PackedByteArray()
	for i in parts.size():
		var r := t.add(parts[i])
		eq("", r["error"], "part %d accepted" % i)
		if i < parts.size() - 1:
			check(r["data"].is_empty(), "part %d: not complete yet" % i)
			check(t.in_progress(), "in progress after part %d" % i)
		else:
			got = r["data"]
	eq(data, got, "the whole snapshot once the last part is in")
	check(not t.in_progress(), "nothing in progress after it")
	# the same assembler takes the next snapshot; clients may leave count 0
	var again := T.new()
	var small := blob(7)
	var one := T.part(small, 0)
	eq(small, again.add(one)["data"], "a one-part snapshot, count 0")
	# the snapshot travels through the wire format (base64) unchanged
	var wire: Dictionary = (
		P.decode_server_text(P.encode_message("ServerMessage", {"snapshot": parts[0]}))["message"]
	)
	eq(parts[0]["data"], wire["data"], "a part's bytes survive base64")


func _test_assemble_refusals() -> void:
	var data := blob(9000)
	var parts := server_parts(data, 4096, 1)
	var cases := {
		"part 1 came without its part 0": [parts[1]],
		"came where part 1 was due": [parts[0], parts[2]],
		"a new snapshot began": [parts[0], parts[0]],
	}
	var other_total: Dictionary = parts[1].duplicate()
	other_total["total_bytes"] = 9001
	cases["announces 9001 bytes in all"] = [parts[0], other_total]
	var other_count: Dictionary = parts[1].duplicate()
	other_count["count"] = 4
	cases["says 4 parts; part 0 said 3"] = [parts[0], other_count]
	var too_long: Dictionary = parts[1].duplicate()
	too_long["data"] = blob(6000)
	cases["goes past the 9000 bytes"] = [parts[0], too_long]
	var short_last: Dictionary = parts[2].duplicate()
	short_last["data"] = blob(10)
	cases["left it short"] = [parts[0], parts[1], short_last]
	var zero: Dictionary = parts[0].duplicate()
	zero["total_bytes"] = 0
	cases["a total of 0 bytes"] = [zero]
	var early: Dictionary = parts[1].duplicate()
	early["data"] = blob(9000 - 4096)
	cases["were in after part 1 of 3"] = [parts[0], early]
	for want: String in cases:
		var t := T.new()
		var error := ""
		for part: Dictionary in cases[want]:
			var r := t.add(part)
			check(r["data"].is_empty(), want + ": no snapshot")
			error = r["error"]
			if not error.is_empty():
				break
		check(want in error, "%s: refused (%s)" % [want, error])
		check(not t.in_progress(), want + ": the snapshot in progress is dropped")
		eq(data, _assemble(t, parts), want + ": the next snapshot still goes through")
	var capped := T.new()
	capped.max_bytes = 8999
	var r := capped.add(parts[0])
	check("more than this client takes" in r["error"], "over max_bytes: " + r["error"])
	var huge: Dictionary = parts[0].duplicate()
	huge["total_bytes"] = -1  # 2^64 - 1 as read from the wire
	check("18446744073709551615" in T.new().add(huge)["error"], "a uint64 total is refused")


func _assemble(t: ShotStreamSnapshotTransfer, parts: Array) -> PackedByteArray:
	var out := PackedByteArray()
	for part: Dictionary in parts:
		out = t.add(part)["data"]
	return out


static func entry(shot: int, event_id: String) -> Dictionary:
	var cue := P.default_message("Cue")
	cue["event_id"] = event_id
	cue["prompt"] = "shot " + event_id
	var e := P.default_message("CueLogEntry")
	e["cue"] = cue
	e["shot_index"] = shot
	e["chunks"] = 2
	e["finished"] = true
	return e


static func page(entries: Array, next_shot: int) -> Dictionary:
	var p := P.default_message("CueLog")
	p["global_caption"] = "A lighthouse."
	p["seed"] = 5
	p["first_shot_index"] = 1
	p["entries"] = entries
	p["next_shot"] = next_shot
	return p


func _test_cue_log_pages() -> void:
	var log := {}
	var r := T.merge_cue_log_page(log, page([entry(1, "a"), entry(2, "b")], 3))
	eq({"next_shot": 3, "error": ""}, r, "first page: ask from shot 3")
	r = T.merge_cue_log_page(log, page([entry(3, "c")], 0))
	eq({"next_shot": 0, "error": ""}, r, "last page")
	eq("A lighthouse.", log["global_caption"], "the first page's caption")
	eq(1, log["first_shot_index"], "first shot")
	eq(0, log["next_shot"], "merged: next_shot 0")
	var ids := []
	for e: Dictionary in log["entries"]:
		ids.append(e["cue"]["event_id"])
	eq(["a", "b", "c"], ids, "every page's entries in order")
	var back := T.merge_cue_log_page({}, page([entry(2, "b")], 0))
	eq("", back["error"], "one page")
	var stuck := {}
	T.merge_cue_log_page(stuck, page([entry(2, "b")], 3))
	r = T.merge_cue_log_page(stuck, page([entry(2, "b")], 0))
	check("must move forward" in r["error"], "a page going back: " + r["error"])
	r = T.merge_cue_log_page({}, page([entry(4, "d")], 4))
	check("does not move past" in r["error"], "a page asking for itself again: " + r["error"])
	r = T.merge_cue_log_page({}, page([], 2))
	check("does not move past" in r["error"], "an empty page asking for more: " + r["error"])


func _test_snapshot_files() -> void:
	var data := blob(20000)
	var snap := ShotStreamSnapshot.of(data, 4)
	for path: String in ["user://saves/story.tres", "user://saves/story.res"]:
		eq(OK, snap.save_to(path), "saved " + path)
		check(snap.saved_at.ends_with("Z") and snap.saved_at.length() == 20, snap.saved_at)
		var back := ShotStreamSnapshot.load_from(path)
		check(back != null, "loaded " + path)
		if back != null:
			eq(data, back.data, path + ": the same bytes")
			eq(4, back.next_shot_index, path + ": next shot")
			eq(snap.saved_at, back.saved_at, path + ": saved_at")
	# a save over an older one replaces it whole
	var newer := ShotStreamSnapshot.of(blob(300), 7)
	eq(OK, newer.save_to("user://saves/story.res"), "saved over")
	var again := ShotStreamSnapshot.load_from("user://saves/story.res")
	eq(7, again.next_shot_index if again != null else -1, "the newer save is read (not a cache)")
	eq(OK, ShotStreamSnapshot.save_file("user://saves/deep/story.snap", data), "plain file")
	eq(data, ShotStreamSnapshot.load_file("user://saves/deep/story.snap"), "plain file read")
	eq(OK, ShotStreamSnapshot.save_file("user://saves/deep/story.snap", blob(3)), "overwritten")
	eq(blob(3), ShotStreamSnapshot.load_file("user://saves/deep/story.snap"), "the new bytes")
	var left := (
		Array(DirAccess.get_files_at("user://saves"))
		+ Array(DirAccess.get_files_at("user://saves/deep"))
	)
	eq(["story.res", "story.tres", "story.snap"], left, "no temporary file left")
	# refused, loudly (the errors are declared by the Python side)
	eq(ERR_INVALID_PARAMETER, snap.save_to("res://story.tres"), "only under user://")
	eq(ERR_INVALID_PARAMETER, snap.save_to("user://a/../../story.tres"), "no ..")
	eq(ERR_INVALID_PARAMETER, snap.save_to("user://story.json"), ".tres or .res")
	eq(ERR_INVALID_DATA, ShotStreamSnapshot.new().save_to("user://empty.res"), "no data")
	eq(ERR_INVALID_DATA, ShotStreamSnapshot.save_file("user://e.snap", PackedByteArray()), "empty")
	check(ShotStreamSnapshot.load_from("user://missing.res") == null, "missing .res")
	eq(PackedByteArray(), ShotStreamSnapshot.load_file("user://missing.snap"), "missing file")
	eq(PackedByteArray(), ShotStreamSnapshot.load_file("user://saves/deep/story.snap", 2), "max")


func _test_client_messages() -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.log_errors = false
	client.global_caption = "ignored with a snapshot"
	client.story_seed = 9
	client.decoder = P.Decoder.TAE
	client.client_name = "godot/Test"
	add_child(client)
	var plain: Dictionary = P.decode_client_text(client._open_message())["message"]
	eq("ignored with a snapshot", plain["global_caption"], "a new story: its caption")
	eq(P.Decoder.TAE, plain["decoder"], "a new story: its decoder")
	client.snapshot = blob(40000)
	var m: Dictionary = P.decode_client_text(client._open_message())["message"]
	var first: Dictionary = m["snapshot"] if m["snapshot"] != null else {}
	eq(blob(40000).slice(0, T.MAX_UPLOAD_PART_BYTES), first.get("data"), "open: the first part")
	eq(40000, first.get("total_bytes"), "open: the total")
	eq(P.Decoder.UNSPECIFIED, m["decoder"], "a snapshot's story keeps its own decoder")
	eq("", m["global_caption"], "no caption sent with a snapshot")
	eq(null, m["fork"], "no fork")
	client.snapshot = PackedByteArray()
	client.fork_session_id = "s-9"
	m = P.decode_client_text(client._open_message())["message"]
	eq({"session_id": "s-9", "wait_for_boundary": true}, m["fork"], "open: the fork")
	eq(null, m["snapshot"], "a fork: no snapshot")
	client.fork_session_id = ""
	var errors: Array[String] = []
	client.error_received.connect(
		func(_c: int, message: String, _f: bool) -> void: errors.append(message)
	)
	eq("", client.cue("p", "w", 0, "wait", PackedStringArray(), 2), "at_chunk on a wait cue")
	eq("", client.cut("p", "n", 0, PackedStringArray(), -1), "negative at_chunk")
	eq("x", client.cut("p", "x", 2, PackedStringArray(), 3), "a cut at chunk 3 (queued)")
	var queued: Dictionary = P.decode_client_text(client.queued_messages()[0])["message"]
	eq([P.CueMode.CUT, 3, 2], [queued["mode"], queued["at_chunk"], queued["num_chunks"]], "cut")
	eq(2, errors.size(), "two cues refused: %s" % [errors])
	client.snapshot = blob(10)
	client.max_snapshot_bytes = 5
	eq(ERR_INVALID_PARAMETER, client.open_session(), "a snapshot over max_snapshot_bytes")
	eq(ERR_INVALID_PARAMETER, client.connect_to_story(PackedByteArray()), "an empty snapshot")
	eq(blob(10), client.snapshot, "an empty snapshot changes nothing")
	client.request_snapshot()
	client.request_cue_log()
	check(errors.size() == 6 and "no open session" in errors[-1], "no session: %s" % [errors])
	eq(ShotStreamClient.State.DISCONNECTED, client.state, "nothing opened")
	client.queue_free()


## A shot map's CUT cue with at_chunk: resolved and sent with it; a WAIT cue's at_chunk is ignored.
func _test_director_at_chunk() -> void:
	var map := ShotStreamShotMap.new()
	map.add("ambush", "Bandits attack!", 2, ShotStreamCue.Mode.CUT)
	map.find_cue("ambush").at_chunk = 3
	map.add("calm", "Rain falls.", 1)
	map.find_cue("calm").at_chunk = 4
	eq(3, map.resolve("ambush").get("at_chunk"), "a cut's at_chunk")
	eq(0, map.resolve("calm").get("at_chunk"), "a wait cue has none")
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	var director := ShotStreamDirector.new()
	director.client = client
	director.shot_map = map
	add_child(client)
	add_child(director)
	check(director.fire("ambush") != "", "ambush fired")
	check(director.fire("calm") != "", "calm fired")
	var sent := []
	for text in client.queued_messages():
		var m: Dictionary = P.decode_client_text(text)["message"]
		sent.append([m["prompt"], m["mode"], m["at_chunk"]])
	eq([["Bandits attack!", P.CueMode.CUT, 3], ["Rain falls.", P.CueMode.WAIT, 0]], sent, "sent")
	director.queue_free()
	client.queue_free()


func _scripted_story(url: String) -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.log_errors = false
	client.auto_reconnect = false
	client.server_url = url
	client._story.part_bytes = 2048
	add_child(client)
	var got := {"restored": [], "snapshots": [], "logs": [], "errors": [], "closed": []}
	client.restored.connect(func(n: int, f: int) -> void: got["restored"].append([n, f]))
	client.snapshot_ready.connect(
		func(d: PackedByteArray, n: int) -> void: got["snapshots"].append([d, n])
	)
	client.cue_log_ready.connect(func(log: Dictionary) -> void: got["logs"].append(log))
	client.error_received.connect(
		func(_c: int, message: String, _f: bool) -> void: got["errors"].append(message)
	)
	client.disconnected.connect(func(reason: String) -> void: got["closed"].append(reason))
	eq(OK, client.connect_to_story(blob(5000)), "opened from a snapshot")
	if not await _wait(func() -> bool: return not got["restored"].is_empty(), "restored"):
		return
	eq([2, 30], got["restored"][0], "restored at shot 2 after 30 frames")
	client.request_snapshot()
	if not await _wait(func() -> bool: return not got["errors"].is_empty(), "the stray part"):
		return
	eq(1, got["snapshots"].size(), "one snapshot")
	if got["snapshots"].size() == 1:
		eq(blob(5120), got["snapshots"][0][0], "the snapshot's 3 parts put together")
		eq(2, got["snapshots"][0][1], "it continues with shot 2")
	eq(
		["snapshot dropped: snapshot part 1 came without its part 0"],
		got["errors"].map(func(e: String) -> String: return e.trim_prefix("ShotStreamClient: ")),
		"a stray part is refused"
	)
	client.request_cue_log()
	if not await _wait(func() -> bool: return not got["logs"].is_empty(), "the cue log"):
		return
	var log: Dictionary = got["logs"][0]
	var shots := []
	for e: Dictionary in log["entries"]:
		shots.append("%d %s" % [e["shot_index"], e["cue"]["event_id"]])
	eq(["2 a", "3 b", "4 c"], shots, "two pages merged")
	eq(
		[2, 0, "A lighthouse."],
		[log["first_shot_index"], log["next_shot"], log["global_caption"]],
		""
	)
	client.close()
	await _wait(func() -> bool: return not got["closed"].is_empty(), "the session to end")
	eq(["client"], got["closed"], "closed by the client")
	client.queue_free()


func _scripted_reopen(url: String) -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.log_errors = false
	client.server_url = url
	client.reconnect_initial_s = 0.05
	client._story.part_bytes = 2048
	add_child(client)
	var got := {"sessions": [], "restored": [], "errors": [], "closed": []}
	client.connected.connect(func(s: Dictionary) -> void: got["sessions"].append(s["session_id"]))
	client.restored.connect(func(n: int, f: int) -> void: got["restored"].append([n, f]))
	client.error_received.connect(
		func(_c: int, message: String, _f: bool) -> void: got["errors"].append(message)
	)
	client.disconnected.connect(func(reason: String) -> void: got["closed"].append(reason))
	eq(OK, client.connect_to_story(blob(5000)), "opened from a snapshot")
	if not await _wait(func() -> bool: return not got["restored"].is_empty(), "restored"):
		return
	eq(["story_reopen-1", "story_reopen-2"], got["sessions"], "a new session after the drop")
	eq([[2, 30]], got["restored"], "the new session is restored from the snapshot")
	eq(1, got["errors"].size(), "the drop is reported: %s" % [got["errors"]])
	if got["errors"].size() == 1:
		check(got["errors"][0].ends_with("(from the snapshot)."), got["errors"][0])
	client.close()
	await _wait(func() -> bool: return got["closed"].size() == 2, "the session to end")
	eq(["connection lost", "client"], got["closed"], "lost, then closed by the client")
	client.queue_free()


func _scripted_big(url: String) -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.auto_reconnect = false
	client.browser_socket = false  # a WebSocketPeer, which refuses what its buffer cannot hold
	client.server_url = url
	add_child(client)
	var got := {"restored": [], "closed": []}
	client.restored.connect(func(n: int, f: int) -> void: got["restored"].append([n, f]))
	client.error_received.connect(
		func(_c: int, message: String, _f: bool) -> void: check(false, "big: " + message)
	)
	client.disconnected.connect(func(reason: String) -> void: got["closed"].append(reason))
	var data := PackedByteArray()
	var base := blob(4096)
	for i in 512:
		data.append_array(base)  # blob(2 MiB): (i * 31 + 7) mod 256 repeats every 256 bytes
	eq(OK, client.connect_to_story(data), "opened from a 2 MiB snapshot")
	if not await _wait(func() -> bool: return not got["restored"].is_empty(), "restored"):
		return
	eq([[1, 9]], got["restored"], "every part arrived")
	client.close()
	await _wait(func() -> bool: return not got["closed"].is_empty(), "the session to end")
	eq(["client"], got["closed"], "closed by the client")
	client.queue_free()
